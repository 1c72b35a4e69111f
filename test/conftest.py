"""Shared fixtures: DDS isolation, an rclpy context, and small ONNX models made in place.

Run from the repository root, `autopilot_ros` must still be the colcon-installed package
(the source folder has no generated `msg` module): pytest's importlib mode keeps the
root off sys.path, and the check below says what to do if something put it back.
"""

import importlib.util
import pathlib
import threading

import pytest

from autopilot_ros.isolation import isolate_dds

REPO = pathlib.Path(__file__).resolve().parents[1]
DOMAIN_ID = isolate_dds()  # before any rclpy import initialises a context

_spec = importlib.util.find_spec('autopilot_ros')
if _spec is None or pathlib.Path(_spec.origin).resolve().parent == REPO / 'autopilot_ros':
    raise pytest.UsageError(
        'autopilot_ros resolves to the source tree, which lacks the generated msg module: '
        'run `make test` (or `source install/setup.bash` and `pytest` from the repo root)')


# -- ONNX model builders (onnx.helper; no torch) -------------------------------------------
def make_onnx_model(path: pathlib.Path, *, feature: str = 'heading_error', gain: float = 1.0,
                    op: str = 'tanh', window: int | None = None, features: int | None = None,
                    metadata: dict | None = None, bias: float = 0.0) -> pathlib.Path:
    """A model whose output is op(gain * last_row[feature] + bias).

    op: 'tanh', 'sqrt_neg' (sqrt(-x): NaN for x > 0), 'constant' (bias only).
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
    """Spins nodes on a MultiThreadedExecutor in a background thread."""

    def __init__(self, context) -> None:
        from rclpy.executors import MultiThreadedExecutor
        self.executor = MultiThreadedExecutor(num_threads=3, context=context)
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
