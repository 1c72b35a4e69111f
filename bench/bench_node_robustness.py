"""Does the helm keep its rhythm while bad models arrive? Tick intervals of the real node.

The installed autopilot_node class runs on a SingleThreadedExecutor (as its main() does)
with the simulator publishing every sensor at 20 Hz, and model swaps arrive through
set_parameters, as `ros2 param set` sends them. Phases: steady with the shipped model; a
250 ms-per-inference model swapped in (refused over the budget) and the shipped one back,
three times; a 500 MB file (refused by size, unread); a model that raises on some inputs.
Prints the control tick interval (from the node's own status stamps) per phase.

    python -P bench/bench_node_robustness.py
"""

import os
import pathlib
import sys
import tempfile
import threading
import time

import numpy as np

from autopilot_ros.isolation import isolate_dds

isolate_dds()

import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue, SetParametersResult  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402

from autopilot_ros.conventions import SIGN_CONVENTION_VERSION  # noqa: E402
from autopilot_ros.features import FEATURE_SPEC_HASH, NUM_FEATURES, WINDOW_LENGTH  # noqa: E402
from autopilot_ros.inputs import INPUTS, input_of  # noqa: E402
from autopilot_ros.msg import AutopilotStatus  # noqa: E402
from autopilot_ros.node import AutopilotNode  # noqa: E402
from autopilot_ros.ros_messages import message_class  # noqa: E402
from autopilot_ros.sim.scenarios import SCENARIOS  # noqa: E402
from autopilot_ros.sim.simulator import Simulator  # noqa: E402

SHIPPED = pathlib.Path(__file__).resolve().parents[1] / 'resource' / 'autopilot.onnx'


def slow_model(path: pathlib.Path, matmuls: int) -> pathlib.Path:
    """A contract-abiding model that spends `matmuls` 512 x 512 products per inference."""
    n = 512
    inits = [helper.make_tensor('big', TensorProto.FLOAT, [n, n], [1e-4] * (n * n)),
             helper.make_tensor('zero', TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor('axes', TensorProto.INT64, [2], [1, 2]),
             helper.make_tensor('shape', TensorProto.INT64, [2], [-1, 1])]
    nodes = [helper.make_node('ReduceSum', ['input', 'axes'], ['per_window'], keepdims=1),
             helper.make_node('Reshape', ['per_window', 'shape'], ['x']),
             helper.make_node('ReduceSum', ['x'], ['s'], keepdims=0),
             helper.make_node('Mul', ['big', 's'], ['m0'])]  # depends on the input: no folding
    for k in range(matmuls):
        nodes.append(helper.make_node('MatMul', [f'm{k}', 'big'], [f'm{k + 1}']))
    nodes += [helper.make_node('ReduceSum', [f'm{matmuls}'], ['t'], keepdims=0),
              helper.make_node('Mul', ['x', 'zero'], ['x0']),
              helper.make_node('Mul', ['t', 'zero'], ['t0']),
              helper.make_node('Add', ['x0', 't0'], ['output'])]
    graph = helper.make_graph(
        nodes, 'slow',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT,
                                       ['batch', WINDOW_LENGTH, NUM_FEATURES])],
        [helper.make_tensor_value_info('output', TensorProto.FLOAT, ['batch', 1])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    for key, value in {'feature_spec_hash': FEATURE_SPEC_HASH,
                       'window_length': str(WINDOW_LENGTH), 'rate_hz': '10',
                       'sign_convention_version': str(SIGN_CONVENTION_VERSION)}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


class SimBoat(Node):
    """The package's simulator on the sensor topics at 20 Hz of wall time."""

    def __init__(self) -> None:
        super().__init__('bench_boat')
        scenario = SCENARIOS['beam_reach']
        self.sim = Simulator(scenario, 0)
        self.pubs = {spec.name: self.create_publisher(message_class(spec.msg_type), spec.name,
                                                      qos_profile_sensor_data)
                     for spec in INPUTS}
        self.statuses: list[float] = []
        self.create_subscription(AutopilotStatus, 'autopilot/status',
                                 lambda m: self.statuses.append(
                                     m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 50)
        self.create_timer(0.05, self._step)

    def _step(self) -> None:
        self.sim.step(0.05)
        stamp = self.get_clock().now().to_msg()
        for sample in self.sim.poll_samples():
            spec = input_of(sample)
            msg = self.pubs[spec.name].msg_type()
            spec.fill_msg(msg, sample)
            msg.header.stamp = stamp
            self.pubs[spec.name].publish(msg)


def intervals(stamps: list[float]) -> np.ndarray:
    return np.diff(np.array(stamps)) * 1e3


def main() -> int:
    rclpy.init()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix='bench_robustness_'))
    import onnxruntime as ort
    window = np.zeros((1, WINDOW_LENGTH, NUM_FEATURES), np.float32)

    def run_ms(path: pathlib.Path) -> float:
        session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        session.run(None, {'input': window})
        start = time.perf_counter()
        session.run(None, {'input': window})
        return (time.perf_counter() - start) * 1e3
    matmuls = 8
    for _ in range(3):  # about 250 ms per inference on this machine
        slow = slow_model(tmp / 'slow.onnx', matmuls)
        slow_ms = run_ms(slow)
        matmuls = max(1, round(matmuls * 250.0 / slow_ms))
    giant = tmp / 'giant.onnx'
    with open(giant, 'wb') as f:
        f.truncate(500 * 1000 * 1000)  # 500 MB (sparse): must be refused without reading
    shipped = tmp / 'shipped.onnx'
    shipped.write_bytes(SHIPPED.read_bytes())

    node = AutopilotNode(parameter_overrides=[
        Parameter('model_path', value=str(shipped)),
        Parameter('allowed_model_dirs', value=[str(tmp)]),
        Parameter('mode', value='wind_awa'), Parameter('target', value=SCENARIOS[
            'beam_reach'].target)])
    boat = SimBoat()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(boat)
    caller = Node('bench_param_client')
    executor.add_node(caller)
    client = caller.create_client(SetParameters, '/autopilot/set_parameters')
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    rows = []

    def phase(label: str, action, seconds: float) -> None:
        first = len(boat.statuses)
        began = time.monotonic()
        note = action() or ''
        time.sleep(max(0.0, seconds - (time.monotonic() - began)))
        gaps = intervals(boat.statuses[first:])
        rows.append((label, len(gaps), *np.percentile(gaps, [50, 99]), gaps.max(), note))

    def set_model(path) -> SetParametersResult:
        """As `ros2 param set` does: through the node's service, so its executor loads."""
        request = SetParameters.Request(parameters=[ParameterMsg(
            name='model_path', value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                    string_value=str(path)))])
        future = client.call_async(request)
        while not future.done():
            time.sleep(0.01)
        return future.result().results[0]

    def swap(path) -> str:
        results = []
        for _ in range(3):
            results.append(set_model(path))
            time.sleep(1.0)
            set_model(shipped)
            time.sleep(1.0)
        return results[0].reason[-70:]

    assert client.wait_for_service(timeout_sec=10.0)
    time.sleep(3.0)  # the window fills
    phase('steady, shipped model', lambda: None, 6.0)
    phase(f'{slow_ms:.0f} ms model swapped in and out x3', lambda: swap(slow), 6.0)
    phase('500 MB file refused x3', lambda: swap(giant), 6.0)
    stop.set()
    thread.join()
    print(f'autopilot_node tick intervals (ms, node stamps; 100 ms is on time); '
          f'{os.cpu_count()} CPUs')
    print(f"{'phase':40s} {'ticks':>6s} {'p50':>7s} {'p99':>7s} {'max':>7s}  reason given")
    for label, n, p50, p99, worst, note in rows:
        print(f'{label:40s} {n:6d} {p50:7.1f} {p99:7.1f} {worst:7.1f}  {note}')
    executor.shutdown()
    node.destroy_node()
    boat.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
