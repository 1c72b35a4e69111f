"""Shared fixtures: DDS isolation, an rclpy context, and small ONNX models made in place.

Two routes run these tests, both against an installed `autopilot_ros`, never the source
folder (pytest's importlib mode keeps the repository root off sys.path, and the check
below says what to do if something put it back):
- colcon (`make test`): the package installed next to its generated `msg` module, with
  ROS; every test runs, and a test that skips there for want of an import fails instead.
- pip (`make test-core`): setup.py's ROS-free package, no ROS at all; only the tests not
  marked `dds`, and the modules that need ROS skip with `pytest.importorskip`.
`make mutation` runs the tests that need no DDS against mutmut's mutated copies of the
sources instead, and says so with AUTOPILOT_ROS_MUTATION=1 (docs/mutation.md).
A test needs DDS (marker `dds`, pyproject.toml) when it creates an rclpy context or nodes,
or starts the installed node executables; tests that use the `rclpy_context` or `spinner`
fixtures get the marker here, the others say it themselves.
"""

import importlib.util
import os
import pathlib
import threading

import pytest

from autopilot_ros.isolation import isolate_dds

REPO = pathlib.Path(__file__).resolve().parents[1]
DOMAIN_ID = isolate_dds()  # before any rclpy import initialises a context

_spec = importlib.util.find_spec('autopilot_ros')
PACKAGE_DIR = pathlib.Path(_spec.origin).resolve().parent if _spec else REPO / 'autopilot_ros'
# The one exception: mutmut's mutants/autopilot_ros is a source tree by design.
MUTATION_RUN = os.environ.get('AUTOPILOT_ROS_MUTATION') == '1'
if PACKAGE_DIR == REPO / 'autopilot_ros' and not MUTATION_RUN:
    raise pytest.UsageError(
        'autopilot_ros resolves to the source tree, not to an installed package: run '
        '`make test` (or `source install/setup.bash` and `pytest` from the repo root), or '
        '`make test-core` for the tests that need no DDS on the pip route')
# The colcon install has the generated messages beside the sources; setup.py's has none.
COLCON_ROUTE = (PACKAGE_DIR / 'msg' / '__init__.py').is_file()
DDS_FIXTURES = frozenset({'rclpy_context', 'spinner'})


def pytest_report_header(config) -> str:
    route = 'colcon (make test)' if COLCON_ROUTE else 'pip, no ROS (make test-core)'
    return f'autopilot_ros: {PACKAGE_DIR}, {route} route; ROS_DOMAIN_ID {DOMAIN_ID}'


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if DDS_FIXTURES.intersection(getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.dds)


def _import_skip_fails_on_colcon(report):
    """On the colcon route everything is installed: a `could not import` skip is a failure."""
    if (COLCON_ROUTE and report.skipped and isinstance(report.longrepr, tuple)
            and 'could not import' in report.longrepr[2]):
        path, line, message = report.longrepr
        report.outcome = 'failed'
        report.longrepr = f'{path}:{line}: the colcon route runs every test: {message}'
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    return _import_skip_fails_on_colcon((yield))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    return _import_skip_fails_on_colcon((yield))


# -- ONNX model builders (onnx.helper; no torch) -------------------------------------------
def make_onnx_model(path: pathlib.Path, *, feature: str = 'heading_error', gain: float = 1.0,
                    op: str = 'tanh', window: int | None = None, features: int | None = None,
                    metadata: dict | None = None, bias: float = 0.0,
                    band: tuple[float, float] = (0.25, 0.35), work: int = 8) -> pathlib.Path:
    """A model whose output is op(gain * last_row[feature] + bias).

    op: 'tanh', 'sqrt_neg' (sqrt(-x): NaN for x > 0), 'constant' (bias only),
    'raise_in_band': 0.1, but a Gather index out of range (ONNX Runtime raises) while
    lo < x < hi for band=(lo, hi) - a model that fails only on some inputs;
    'slow_in_band': tanh(x), after `work` 384 x 384 matrix products while lo < x < hi - a
    model that is slow only on some inputs.
    """
    import onnx
    from onnx import TensorProto, helper

    from autopilot_ros.conventions import SIGN_CONVENTION_VERSION
    from autopilot_ros.features import FEATURE_SPEC_HASH, INDEX, NUM_FEATURES, WINDOW_LENGTH

    window = window or WINDOW_LENGTH
    features = features or NUM_FEATURES
    idx = INDEX[feature]
    inits = [
        helper.make_tensor('starts', TensorProto.INT64, [1], [window - 1]),
        helper.make_tensor('ends', TensorProto.INT64, [1], [window]),
        helper.make_tensor('axes', TensorProto.INT64, [1], [1]),
        helper.make_tensor('fidx', TensorProto.INT64, [1], [idx]),
        helper.make_tensor('gain', TensorProto.FLOAT, [], [gain]),
        helper.make_tensor('bias', TensorProto.FLOAT, [], [bias]),
        helper.make_tensor('zero', TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor('shape', TensorProto.INT64, [2], [-1, 1]),
    ]
    nodes = [
        helper.make_node('Slice', ['input', 'starts', 'ends', 'axes'], ['last']),
        helper.make_node('Gather', ['last', 'fidx'], ['picked'], axis=2),
        helper.make_node('Reshape', ['picked', 'shape'], ['x']),
        helper.make_node('Mul', ['x', 'gain'], ['gx']),
        helper.make_node('Add', ['gx', 'bias'], ['y']),
    ]
    if op == 'tanh':
        nodes.append(helper.make_node('Tanh', ['y'], ['output']))
    elif op == 'sqrt_neg':
        nodes.append(helper.make_node('Neg', ['y'], ['neg']))
        nodes.append(helper.make_node('Sqrt', ['neg'], ['output']))
    elif op == 'raise_in_band':
        inits += [helper.make_tensor('lo', TensorProto.FLOAT, [], [band[0]]),
                  helper.make_tensor('hi', TensorProto.FLOAT, [], [band[1]]),
                  helper.make_tensor('five', TensorProto.INT64, [], [5]),
                  helper.make_tensor('table', TensorProto.FLOAT, [2], [0.1, 0.1])]
        nodes += [helper.make_node('Greater', ['y', 'lo'], ['above']),
                  helper.make_node('Less', ['y', 'hi'], ['below']),
                  helper.make_node('And', ['above', 'below'], ['inside']),
                  helper.make_node('Cast', ['inside'], ['inside_i'], to=TensorProto.INT64),
                  helper.make_node('Mul', ['inside_i', 'five'], ['index']),
                  helper.make_node('Gather', ['table', 'index'], ['output'], axis=0)]
    elif op == 'slow_in_band':
        n = 384  # a chain of `work` n x n matrix products that ONNX Runtime cannot fold
        inits += [helper.make_tensor('lo', TensorProto.FLOAT, [], [band[0]]),
                  helper.make_tensor('hi', TensorProto.FLOAT, [], [band[1]]),
                  helper.make_tensor('big', TensorProto.FLOAT, [n, n], [1e-3] * (n * n))]
        heavy = [helper.make_node('Mul', ['big', 'ymax'], ['m0'])]
        for k in range(work):
            heavy.append(helper.make_node('MatMul', [f'm{k}', 'big'], [f'm{k + 1}']))
        heavy += [helper.make_node('ReduceSum', [f'm{work}'], ['total'], keepdims=0),
                  helper.make_node('Mul', ['total', 'zero'], ['nothing']),
                  helper.make_node('Add', ['y', 'nothing'], ['slow_out'])]
        out_info = helper.make_tensor_value_info
        slow = helper.make_graph(heavy, 'slow', [], [out_info('slow_out', TensorProto.FLOAT,
                                                              None)])
        fast = helper.make_graph([helper.make_node('Identity', ['y'], ['fast_out'])], 'fast',
                                 [], [out_info('fast_out', TensorProto.FLOAT, None)])
        nodes += [helper.make_node('ReduceMax', ['y'], ['ymax'], keepdims=0),
                  helper.make_node('Greater', ['ymax', 'lo'], ['above']),
                  helper.make_node('Less', ['ymax', 'hi'], ['below']),
                  helper.make_node('And', ['above', 'below'], ['inside']),
                  helper.make_node('If', ['inside'], ['raw'], then_branch=slow,
                                   else_branch=fast),
                  helper.make_node('Tanh', ['raw'], ['output'])]
    elif op == 'constant':
        nodes.append(helper.make_node('Mul', ['y', 'zero'], ['y0']))
        nodes.append(helper.make_node('Add', ['y0', 'bias'], ['output']))
    else:
        raise ValueError(op)
    graph = helper.make_graph(
        nodes, 'fixture',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['batch', window, features])],
        [helper.make_tensor_value_info('output', TensorProto.FLOAT, ['batch', 1])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    md = {
        'feature_spec_hash': FEATURE_SPEC_HASH,
        'window_length': str(window),
        'rate_hz': '10',
        'sign_convention_version': str(SIGN_CONVENTION_VERSION),
        'model_version': 'fixture',
    }
    md.update(metadata or {})
    for key, value in md.items():
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def model_factory(tmp_path):
    counter = iter(range(1000))

    def make(**kwargs) -> pathlib.Path:
        return make_onnx_model(tmp_path / f'model{next(counter)}.onnx', **kwargs)
    return make


# -- ROS -------------------------------------------------------------------------------------
@pytest.fixture(scope='session')
def rclpy_context():
    import rclpy
    context = rclpy.context.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


class Spinner:
    """Spins nodes on a SingleThreadedExecutor in a background thread, as the node's main().

    Not rclpy's MultiThreadedExecutor: while a mutually exclusive callback group is busy
    its executor thread re-polls the ready entity in a tight loop and holds the GIL, and in
    one process with the fake boat that collapsed the node's tick rate (measured: 43-60
    ticks instead of 120 in 12 s, 10 s of CPU, in 3 of 5 runs).
    """

    def __init__(self, context) -> None:
        from rclpy.executors import SingleThreadedExecutor
        self.executor = SingleThreadedExecutor(context=context)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self._stop = threading.Event()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def add(self, node):
        self.executor.add_node(node)
        return node

    def start(self) -> 'Spinner':
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for node in list(self.executor.get_nodes()):
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()


@pytest.fixture
def spinner(rclpy_context):
    s = Spinner(rclpy_context).start()
    yield s
    s.stop()


def wait_for(predicate, timeout: float = 10.0, period: float = 0.02) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


@pytest.fixture
def wait():
    return wait_for
