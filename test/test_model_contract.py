"""The model contract, refusal by refusal: each says which rule, with the file's name.

A model reaches the helm only through OnnxPolicy. Every way a file can break the contract
(where it lies, its size and hash, its graph's signature and metadata, what it does on the
load-time windows, how long it takes) must be refused at load with a message that names
the file and the rule; at sea a failing or slow model must say what went wrong.
"""

import hashlib
import math
import os
import threading

import numpy as np
import onnx
from onnx import TensorProto, helper
import pytest

from autopilot_ros import policy as policy_module
from autopilot_ros.conventions import SIGN_CONVENTION_VERSION
from autopilot_ros.features import FEATURE_SPEC_HASH, INDEX, NUM_FEATURES, WINDOW_LENGTH
from autopilot_ros.policy import (
    ModelError,
    ModelTimeout,
    OnnxPolicy,
    _dim_ok,
    check_model_path,
    exercise_windows,
    file_sha256,
    one_line,
)

METADATA = {'feature_spec_hash': FEATURE_SPEC_HASH, 'window_length': str(WINDOW_LENGTH),
            'rate_hz': '10', 'sign_convention_version': str(SIGN_CONVENTION_VERSION)}
FLOAT, DOUBLE = TensorProto.FLOAT, TensorProto.DOUBLE


def graph_model(path, *, inputs=(('input', FLOAT, ['batch', WINDOW_LENGTH, NUM_FEATURES]),),
                outputs=(('output', FLOAT, ['batch', 1]),), width: int = 1,
                wide_in_band: tuple[float, float] | None = None):
    """A model answering the mean of the window's first input, `width` values wide.

    wide_in_band=(lo, hi): one value, but two while the last row's heading error is in
    (lo, hi), a shape ONNX Runtime cannot tell from the graph: (0.25, 0.35) makes a model
    whose output is malformed only at sea, never on the load-time windows.
    """
    name, in_type, _ = inputs[0]
    inits = [helper.make_tensor('axes', TensorProto.INT64, [2], [1, 2]),
             helper.make_tensor('one', TensorProto.INT64, [1], [1])]
    nodes = [helper.make_node('ReduceMean', [name, 'axes'], ['mean'], keepdims=0),
             helper.make_node('Unsqueeze', ['mean', 'one'], ['col'])]
    last = 'col'
    if wide_in_band is not None:
        idx = INDEX['heading_error']
        inits += [helper.make_tensor('starts', TensorProto.INT64, [2], [WINDOW_LENGTH - 1, idx]),
                  helper.make_tensor('ends', TensorProto.INT64, [2], [WINDOW_LENGTH, idx + 1]),
                  helper.make_tensor('sl_axes', TensorProto.INT64, [2], [1, 2]),
                  helper.make_tensor('lo', FLOAT, [], [wide_in_band[0]]),
                  helper.make_tensor('hi', FLOAT, [], [wide_in_band[1]])]
        nodes += [helper.make_node('Slice', [name, 'starts', 'ends', 'sl_axes'], ['he']),
                  helper.make_node('ReduceMax', ['he'], ['x'], keepdims=0),
                  helper.make_node('Greater', ['x', 'lo'], ['above']),
                  helper.make_node('Less', ['x', 'hi'], ['below']),
                  helper.make_node('And', ['above', 'below'], ['inside']),
                  helper.make_node('Cast', ['inside'], ['extra'], to=TensorProto.INT64),
                  helper.make_node('Add', ['extra', 'one'], ['reps_w']),
                  helper.make_node('Concat', ['one', 'reps_w'], ['reps'], axis=0),
                  helper.make_node('Tile', ['col', 'reps'], ['tiled'])]
        last = 'tiled'
    if width > 1:
        nodes.append(helper.make_node('Concat', [last] * width, ['wide'], axis=1))
        last = 'wide'
    if len(outputs[0][2]) == 3:  # [batch, 1, 1]
        inits.append(helper.make_tensor('two', TensorProto.INT64, [1], [2]))
        nodes.append(helper.make_node('Unsqueeze', [last, 'two'], ['deep']))
        last = 'deep'
    out_name, out_type, _ = outputs[0]
    if out_type != in_type:
        nodes.append(helper.make_node('Cast', [last], [out_name], to=out_type))
    else:
        nodes.append(helper.make_node('Identity', [last], [out_name]))
    for extra, _, _ in outputs[1:]:
        nodes.append(helper.make_node('Identity', [last], [extra]))
    graph = helper.make_graph(
        nodes, 'contract',
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)])
    model.ir_version = 8
    for key, value in METADATA.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return str(path)


SHAPE = ['batch', WINDOW_LENGTH, NUM_FEATURES]


# -- where the file lies, its size and hash -------------------------------------------------
def test_a_model_path_must_be_absolute_and_inside_an_allowed_folder(tmp_path, monkeypatch):
    boat = tmp_path / 'boat'
    boat.mkdir(mode=0o755)
    model = boat / 'm.onnx'
    model.write_bytes(b'x')
    model.chmod(0o644)
    assert check_model_path(str(model), ['', str(boat)]) == str(model)
    monkeypatch.setenv('HOME', str(tmp_path))
    assert check_model_path(str(model), ['~/boat']) == str(model)
    with pytest.raises(ModelError, match=r'^m\.onnx: give the model as an absolute path$'):
        check_model_path('m.onnx', [str(boat)])
    other, third = tmp_path / 'other', tmp_path / 'third'
    other.mkdir(mode=0o755)
    third.mkdir(mode=0o755)
    with pytest.raises(ModelError, match=rf'^{model}: not inside an allowed model folder '
                                         rf'\({other}, {third}\); copy it there or add its '
                                         r'folder to allowed_model_dirs$'):
        check_model_path(str(model), [str(other), str(third)])
    # A link inside the allowed folder to a file outside it is the file outside it.
    link = other / 'link.onnx'
    link.symlink_to(model)
    with pytest.raises(ModelError, match='not inside an allowed model folder'):
        check_model_path(str(link), [str(other)])


def test_a_model_anyone_may_write_is_refused(tmp_path):
    folder = tmp_path / 'models'
    folder.mkdir()
    folder.chmod(0o755)
    model = folder / 'm.onnx'
    model.write_bytes(b'x')
    model.chmod(0o666)
    with pytest.raises(ModelError, match=rf'^{model}: {model} is writable by anyone; '
                                         'refusing to load from it$'):
        check_model_path(str(model), [str(folder)])
    model.chmod(0o644)
    folder.chmod(0o777)
    with pytest.raises(ModelError, match=rf'{folder} is writable by anyone'):
        check_model_path(str(model), [str(folder)])
    folder.chmod(0o755)
    # A file not there yet is the loader's to report ('no such model file').
    assert check_model_path(str(folder / 'new.onnx'), [str(folder)]) == str(folder / 'new.onnx')


def test_the_size_limit_is_checked_before_reading_and_a_file_at_it_is_read(tmp_path):
    junk = tmp_path / 'big.onnx'
    junk.write_bytes(b'\0' * 2_500_000)
    with pytest.raises(ModelError, match=rf'^{junk}: 2\.5 MB, over the 2\.0 MB limit for a '
                                         r'model \(not read\)$'):
        OnnxPolicy(str(junk), max_bytes=2_000_000)
    with pytest.raises(ModelError, match='cannot load it'):
        OnnxPolicy(str(junk), max_bytes=2_500_000)


def test_an_unreadable_file_is_refused_with_the_first_line_of_the_reason(tmp_path):
    junk = tmp_path / 'junk.onnx'
    junk.write_bytes(b'not a model at all')
    with pytest.raises(ModelError) as refused:
        OnnxPolicy(str(junk))
    text = str(refused.value)
    assert text.startswith(f'{junk}: ONNX Runtime cannot load it: [ONNXRuntimeError]')
    assert '\n' not in text


def test_a_loader_error_without_text_is_named_by_its_type(tmp_path, monkeypatch):
    import onnxruntime

    def refuse(*args, **kwargs):
        raise RuntimeError('  ')

    path = graph_model(tmp_path / 'm.onnx')
    monkeypatch.setattr(onnxruntime, 'InferenceSession', refuse)
    with pytest.raises(ModelError, match=rf'^{path}: ONNX Runtime cannot load it: RuntimeError$'):
        OnnxPolicy(path)


def test_a_pinned_hash_refusal_shows_both_hashes_short(tmp_path):
    path = graph_model(tmp_path / 'm.onnx')
    digest = hashlib.sha256(open(path, 'rb').read()).hexdigest()
    assert file_sha256(path) == digest
    with pytest.raises(ModelError, match=rf'^{path}: sha256 {digest[:12]}\.\.\. is not the '
                                         r'pinned model_sha256 abcdef012345\.\.\.$'):
        OnnxPolicy(path, 10.0, expected_sha256='abcdef0123456789' * 4)


def test_a_file_hash_covers_every_byte_of_a_large_file(tmp_path):
    big = tmp_path / 'big.bin'
    data = os.urandom(3 << 20) + b'tail'
    big.write_bytes(data)
    assert file_sha256(str(big)) == hashlib.sha256(data).hexdigest()
    assert OnnxPolicy(graph_model(tmp_path / 'm.onnx')).identity.startswith('m.onnx sha256:')


# -- the graph's signature ------------------------------------------------------------------
def test_dimension_rules_any_named_or_positive_batch_and_exact_fixed_dims():
    for batch in (None, 'batch', 'N', 1, 4):
        assert _dim_ok(batch, None), batch
    assert not _dim_ok(0, None) and not _dim_ok(-1, None)
    assert _dim_ok(WINDOW_LENGTH, WINDOW_LENGTH)
    assert not _dim_ok('L', WINDOW_LENGTH) and not _dim_ok(None, WINDOW_LENGTH)
    assert not _dim_ok(WINDOW_LENGTH + 1, WINDOW_LENGTH)


@pytest.mark.parametrize('kwargs, message', [
    (dict(inputs=(('x', FLOAT, SHAPE),)), "expected one input named 'input', got ['x']"),
    (dict(inputs=(('input', FLOAT, SHAPE), ('extra', FLOAT, SHAPE))),
     "expected one input named 'input', got ['input', 'extra']"),
    (dict(outputs=(('y', FLOAT, ['batch', 1]),)), "expected one output named 'output', got ['y']"),
    (dict(outputs=(('output', FLOAT, ['batch', 1]), ('more', FLOAT, ['batch', 1]))),
     "expected one output named 'output', got ['output', 'more']"),
    (dict(inputs=(('input', DOUBLE, SHAPE),), outputs=(('output', DOUBLE, ['batch', 1]),)),
     "input 'input' is tensor(double), expected float32"),
    (dict(outputs=(('output', DOUBLE, ['batch', 1]),)),
     "output 'output' is tensor(double), expected float32"),
    (dict(inputs=(('input', FLOAT, [0, WINDOW_LENGTH, NUM_FEATURES]),)),
     f'input shape [0, {WINDOW_LENGTH}, {NUM_FEATURES}], expected [batch, {WINDOW_LENGTH}, '
     f'{NUM_FEATURES}] (window length x features)'),
    (dict(outputs=(('output', FLOAT, [0, 1]),)), 'output shape [0, 1], expected [batch, 1]'),
    (dict(outputs=(('output', FLOAT, ['batch', 2]),), width=2),
     "output shape ['batch', 2], expected [batch, 1]"),
    (dict(outputs=(('output', FLOAT, ['batch', 1, 1]),)),
     "output shape ['batch', 1, 1], expected [batch, 1]"),
])
def test_a_signature_off_the_contract_is_refused_saying_how(tmp_path, kwargs, message):
    path = tmp_path / 'm.onnx'
    graph_model(path, **kwargs)
    with pytest.raises(ModelError) as refused:
        OnnxPolicy(str(path), 10.0)
    assert str(refused.value) == f'{path}: {message}'


def test_a_fixed_batch_of_one_is_accepted(tmp_path):
    path = graph_model(tmp_path / 'm.onnx', inputs=(('input', FLOAT, [1, WINDOW_LENGTH,
                                                                     NUM_FEATURES]),),
                       outputs=(('output', FLOAT, [1, 1]),))
    assert OnnxPolicy(path, 10.0).infer(np.ones((1, WINDOW_LENGTH, NUM_FEATURES),
                                                np.float32)) == pytest.approx(1.0)


# -- metadata -------------------------------------------------------------------------------
@pytest.mark.parametrize('metadata, message', [
    ({'window_length': '10'}, f'window_length 10, this node uses {WINDOW_LENGTH}'),
    ({'rate_hz': 'fast'},
     'metadata window_length/rate_hz/sign_convention_version are not numbers'),
    ({'sign_convention_version': None}, "metadata lacks ['sign_convention_version']; export "
                                        'models with autopilot-train so they carry the '
                                        'feature spec'),
])
def test_metadata_off_the_contract_is_refused_saying_how(model_factory, metadata, message):
    path = model_factory(metadata=metadata)
    with pytest.raises(ModelError) as refused:
        OnnxPolicy(str(path), 10.0)
    assert str(refused.value) == f'{path}: {message}'


def test_the_model_rate_must_be_the_node_rate_unless_the_node_names_none(model_factory):
    path = model_factory()
    with pytest.raises(ModelError, match=r'model made for 10 Hz, node runs at 10\.5 Hz; set '
                                         r'rate_hz to 10$'):
        OnnxPolicy(str(path), 10.5)
    assert OnnxPolicy(str(path), 10.0).rate_hz == 10.0
    assert OnnxPolicy(str(path)).rate_hz == 10.0


# -- how it runs ----------------------------------------------------------------------------
def test_inference_is_one_thread_without_spinning_on_the_cpu(model_factory):
    """The Pi's other cores belong to the sensors and DDS."""
    policy = OnnxPolicy(str(model_factory()), 10.0)
    options = policy.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry('session.intra_op.allow_spinning') == '0'
    assert policy.session.get_providers() == ['CPUExecutionProvider']


def test_load_time_windows_are_seeded_unit_normal_rows_and_each_feature_alone():
    windows = exercise_windows()
    again = exercise_windows(seed=0)
    assert [w for w, _ in windows] == [w for w, _ in again]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(windows, again, strict=True))
    random = np.concatenate([w.ravel() for name, w in windows if name.startswith('random')])
    assert abs(random.mean()) < 0.1 and abs(random.std() - 1.0) < 0.1
    assert len(windows) == 4 + 2 * NUM_FEATURES


def test_latency_is_the_last_thousand_inferences_not_the_warm_up(model_factory, monkeypatch):
    policy = OnnxPolicy(str(model_factory()), 10.0)
    p50, p99 = policy.latency_percentiles()
    assert math.isnan(p50) and math.isnan(p99) and math.isnan(policy.last_inference_time)
    clock = iter(())

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            return next(clock)

    monkeypatch.setattr(policy_module, 'time', Clock)
    window = np.zeros((1, WINDOW_LENGTH, NUM_FEATURES), np.float32)
    for k in range(2000):  # 1000 runs of 1 s, then 1000 of 1, 2, ... 1000 us
        clock = iter([10.0 * k, 10.0 * k + (1.0 if k < 1000 else (k - 999) * 1e-6)])
        policy.infer(window)
    assert policy.last_inference_time == pytest.approx(1e-3)
    p50, p99 = policy.latency_percentiles()  # of the last 1000 only: numpy's linear rule
    assert p50 == pytest.approx(500.5e-6) and p99 == pytest.approx(990.01e-6)


def test_an_exception_text_becomes_one_line_or_its_type():
    assert one_line(RuntimeError('first\n   second  third')) == 'first second third'
    assert one_line(KeyError()) == 'KeyError'


def test_a_model_that_fails_on_a_zero_window_is_refused_with_or_without_a_budget(
        model_factory):
    path = model_factory(op='raise_in_band', band=(-1.0, 1.0))
    for budget in (None, 0.5):
        with pytest.raises(ModelError, match=rf'^{path}: fails to run on a zero window: .+'):
            OnnxPolicy(str(path), 10.0, budget=budget)


def test_a_model_failing_on_a_load_time_window_is_refused_with_the_runtime_reason(
        model_factory):
    path = model_factory(op='raise_in_band', band=(0.5, 1.5))  # heading_error at +1 (5 x 0.2)
    with pytest.raises(ModelError) as refused:
        OnnxPolicy(str(path), 10.0)
    text = str(refused.value)
    assert text.startswith(f'{path}: fails to run on a window with ')
    assert 'Gather' in text or 'indices' in text  # ONNX Runtime's own words


def test_a_model_answering_two_values_is_refused_at_load(tmp_path):
    path = graph_model(tmp_path / 'm.onnx', wide_in_band=(-0.1, 0.1))  # two on zeros
    with pytest.raises(ModelError, match=rf'^{path}: returned shape \(1, 2\) for one window, '
                                         r'expected \(1, 1\)$'):
        OnnxPolicy(path, 10.0)


def test_a_model_malformed_on_a_load_time_window_is_refused_naming_it(tmp_path):
    path = graph_model(tmp_path / 'm.onnx', wide_in_band=(4.0, 6.0))  # heading_error = +5
    with pytest.raises(ModelError, match=rf'^{path}: returned shape \(1, 2\) for a window '
                                         r'with heading_error = \+5, expected \(1, 1\)$'):
        OnnxPolicy(path, 10.0)


def test_a_model_malformed_only_at_sea_raises_each_tick(tmp_path):
    policy = OnnxPolicy(graph_model(tmp_path / 'm.onnx', wide_in_band=(0.25, 0.35)), 10.0)
    window = np.zeros((1, WINDOW_LENGTH, NUM_FEATURES), np.float32)
    window[0, -1, INDEX['heading_error']] = 0.3
    with pytest.raises(ModelError, match=r'^output shape \(1, 2\), expected \(1, 1\)$'):
        policy.infer(window)


def test_a_model_too_slow_at_load_is_refused_on_its_first_run(model_factory):
    path = model_factory(op='slow_in_band', band=(-1.0, 1.0), work=40)
    with pytest.raises(ModelError) as refused:
        OnnxPolicy(str(path), 10.0, budget=0.002)
    text = str(refused.value)
    assert text.startswith(f'{path}: no answer in ')
    assert text.endswith(' ms at load (run 1), over the 2 ms inference budget')
    took = int(text.split('no answer in ')[1].split(' ms')[0])
    assert 6 <= took < 60_000


def test_at_sea_a_budgeted_model_reports_timeouts_and_its_own_errors(model_factory, tmp_path):
    slow = OnnxPolicy(str(model_factory(op='slow_in_band', work=40)), 10.0, budget=0.005)
    window = np.zeros((1, WINDOW_LENGTH, NUM_FEATURES), np.float32)
    window[0, -1, INDEX['heading_error']] = 0.3
    with pytest.raises(ModelTimeout, match=r'^no answer within the 5 ms budget$'):
        slow.infer(window)
    with pytest.raises(ModelTimeout, match='^still busy with an inference that missed its '
                                           'budget$'):
        slow.infer(window)
    failing = OnnxPolicy(str(model_factory(op='raise_in_band')), 10.0, budget=0.5)
    with pytest.raises(Exception) as raised:
        failing.infer(window)
    assert not isinstance(raised.value, TypeError)  # ONNX Runtime's error, handed over
    names = [t.name for t in threading.enumerate() if t.name == 'onnx-inference']
    assert names and all(t.daemon for t in threading.enumerate() if t.name == 'onnx-inference')


def test_a_closed_policy_still_answers_on_a_new_thread(model_factory):
    policy = OnnxPolicy(str(model_factory()), 10.0, budget=0.5)
    policy.close()
    window = np.zeros((1, WINDOW_LENGTH, NUM_FEATURES), np.float32)
    assert policy.infer(window) == pytest.approx(0.0)
