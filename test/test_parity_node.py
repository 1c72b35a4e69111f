"""Training sees the windows the node sees: the real node over DDS against the dataset builder.

test_training's parity test replays a recording through the same Pilot the dataset
builder uses, so it cannot see a difference the node itself makes (its subscriptions,
stamps, clock, parameters). Here the real AutopilotNode runs in hand steering on sim time,
fed a simulated boat over DDS in lockstep, with a model whose one output is a fingerprint
of the whole window it was given: a fixed random weight per cell, summed. Hand steering
still runs the model and reports its raw output on autopilot/status. A recorder stores the
node's inputs and status as `ros2 bag record` would; the training code builds its windows
from that bag; each window's fingerprint, computed by the same ONNX Runtime model, must be
bit for bit the one the node reported at that tick.
"""

from dataclasses import replace
import math
from pathlib import Path
import threading
import time

import numpy as np
import pytest

pytest.importorskip('rclpy')  # ROS: `make test`; `make test-core` (pip route) has none
import onnx
from onnx import TensorProto, helper
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg

from autopilot_ros.conventions import SIGN_CONVENTION_VERSION
from autopilot_ros.features import FEATURE_SPEC_HASH, NUM_FEATURES, WINDOW_LENGTH
from autopilot_ros.inputs import INPUTS, input_of
from autopilot_ros.msg import AutopilotStatus
from autopilot_ros.node import AutopilotNode
from autopilot_ros.policy import OnnxPolicy
from autopilot_ros.ros_messages import message_class
from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.training.bags import BagWriter, read_bag
from autopilot_ros.training.dataset import DatasetConfig, build_recording
from autopilot_ros.training.demos import demo_recording

pytestmark = pytest.mark.dds
T0_NS = 1_000_000_000_000  # sim time of the first sample: 1000 s (0 means "no time yet")
TICK_NS = 100_000_000
SCENARIO = replace(SCENARIOS['calm_compass'], duration_s=30.0)


def fingerprint_model(path: Path) -> Path:
    """output = sum over the window of input * W, W fixed and random in +-[0.5, 1.5]."""
    rng = np.random.default_rng(15)
    weights = (rng.uniform(0.5, 1.5, (WINDOW_LENGTH, NUM_FEATURES))
               * rng.choice([-1.0, 1.0], (WINDOW_LENGTH, NUM_FEATURES)))
    graph = helper.make_graph(
        [helper.make_node('Mul', ['input', 'weights'], ['weighted']),
         helper.make_node('ReduceSum', ['weighted', 'axes'], ['total'], keepdims=0),
         helper.make_node('Reshape', ['total', 'shape'], ['output'])],
        'fingerprint',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT,
                                       ['batch', WINDOW_LENGTH, NUM_FEATURES])],
        [helper.make_tensor_value_info('output', TensorProto.FLOAT, ['batch', 1])],
        initializer=[
            helper.make_tensor('weights', TensorProto.FLOAT, list(weights.shape),
                               weights.astype(np.float32).ravel().tolist()),
            helper.make_tensor('axes', TensorProto.INT64, [2], [1, 2]),
            helper.make_tensor('shape', TensorProto.INT64, [2], [-1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    for key, value in {'feature_spec_hash': FEATURE_SPEC_HASH,
                       'window_length': str(WINDOW_LENGTH), 'rate_hz': '10',
                       'sign_convention_version': str(SIGN_CONVENTION_VERSION)}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def _seconds(ns: int) -> float:
    """As a header stamp reads back: sec + nanosec * 1e-9."""
    sec, nanosec = divmod(ns, 1_000_000_000)
    return sec + nanosec * 1e-9


def _time_msg(ns: int):
    from builtin_interfaces.msg import Time
    sec, nanosec = divmod(ns, 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def _until(predicate, timeout: float = 10.0) -> bool:
    """wait_for with a short period: the lockstep below waits a few times per tick."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def test_the_node_feeds_its_model_the_windows_the_dataset_builds_from_its_recording(
        spinner, tmp_path):
    """Lockstep, as sim_node's: the samples up to a tick are published and received by the
    node and the recorder, then /clock moves to the tick and the node ticks once. Sample
    stamps lead the node's clock by up to a tick, hence stamp_future_tolerance 0.2 s."""
    ctx = spinner.executor.context
    model = fingerprint_model(tmp_path / 'fingerprint.onnx')
    # Best effort as at sea, but deep enough that a slow executor drops none of a tick's
    # samples (the recorder keeps them all, so a drop would be a difference of delivery).
    sensor_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
    node = spinner.add(AutopilotNode(context=ctx, sensor_qos=sensor_qos, parameter_overrides=[
        Parameter('use_sim_time', value=True),
        Parameter('hand_steering', value=True),
        Parameter('mode', value=SCENARIO.mode), Parameter('target', value=SCENARIO.target),
        Parameter('model_path', value=str(model)),
        Parameter('allowed_model_dirs', value=[str(tmp_path)]),
        Parameter('stamp_future_tolerance', value=0.2),
        Parameter('inference_budget', value=0.099)]))
    assert node.pilot.policy is not None
    # Count what reaches the pilot (a wrapper on this one object, for the lockstep only).
    received: dict[str, int] = {}
    update = node.pilot.update

    def counted(sample) -> bool:
        name = f'/{input_of(sample).name}'
        received[name] = received.get(name, 0) + 1
        return update(sample)
    node.pilot.update = counted

    boat = spinner.add(Node('boat', context=ctx))
    pubs = {spec.name: boat.create_publisher(message_class(spec.msg_type), spec.name,
                                             qos_profile_sensor_data) for spec in INPUTS}
    clock = boat.create_publisher(ClockMsg, '/clock', 10)
    statuses: dict[int, AutopilotStatus] = {}  # by stamp, ns
    boat.create_subscription(
        AutopilotStatus, 'autopilot/status',
        lambda m: statuses.__setitem__(m.header.stamp.sec * 1_000_000_000
                                       + m.header.stamp.nanosec, m),
        QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))

    # The recorder: serialised messages as its subscriptions hand them over, stamped with
    # the sim time they arrived at (what `ros2 bag record --use-sim-time` does).
    writer = BagWriter(tmp_path / 'day', 'mcap').open()
    lock = threading.Lock()
    recorded: dict[str, int] = {}
    now_ns = [T0_NS - TICK_NS]
    recorder = spinner.add(Node('recorder', context=ctx))
    topics = {f'/{spec.name}': spec.msg_type for spec in INPUTS}
    topics['/autopilot/status'] = 'autopilot_ros/msg/AutopilotStatus'
    for topic, msgtype in topics.items():
        def store(data: bytes, topic=topic, msgtype=msgtype) -> None:
            with lock:
                writer.write_cdr(topic, msgtype, data, now_ns[0])
                recorded[topic] = recorded.get(topic, 0) + 1
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE if topic ==
                         '/autopilot/status' else ReliabilityPolicy.BEST_EFFORT)
        recorder.create_subscription(message_class(msgtype), topic, store, qos, raw=True)
    assert _until(lambda: all(pub.get_subscription_count() == 2 for pub in pubs.values())
                  and clock.get_subscription_count() >= 1)

    sim = demo_recording(SCENARIO, seed=7)
    offset_ns = T0_NS - _ns(min(s[0].stamp for k, s in sim.samples.items()
                                if k in pubs and s))
    samples = sorted(((_ns(s.stamp) + offset_ns, s) for k in pubs for s in sim.samples[k]),
                     key=lambda x: x[0])
    sent: dict[str, int] = {}

    def tick(ns: int) -> None:
        """/clock to `ns`: the node ticks once; wait for its status and the recorder's."""
        now_ns[0] = ns
        n_status = recorded.get('/autopilot/status', 0)
        clock.publish(ClockMsg(clock=_time_msg(ns)))
        assert _until(lambda: ns in statuses and recorded.get('/autopilot/status', 0)
                      > n_status), f'no tick at {ns}'

    tick(T0_NS - TICK_NS)  # the node's clock starts before the first sample (else it is 0)
    errors: dict[int, int] = {}  # model errors (a late inference) by tick
    i = 0
    n_ticks = int(SCENARIO.duration_s * 10)
    for k in range(n_ticks):
        t_ns = T0_NS + k * TICK_NS
        while i < len(samples) and _seconds(samples[i][0]) <= _seconds(t_ns) + 1e-9:
            ns, sample = samples[i]
            spec = input_of(sample)
            msg = pubs[spec.name].msg_type()
            spec.fill_msg(msg, sample)
            msg.header.stamp = _time_msg(ns)
            msg.header.frame_id = 'base_link'
            pubs[spec.name].publish(msg)
            sent[f'/{spec.name}'] = sent.get(f'/{spec.name}', 0) + 1
            i += 1
        assert _until(lambda: received == sent and all(
            recorded.get(topic, 0) == n for topic, n in sent.items())), (k, received, sent)
        before = node.pilot.model_errors
        tick(t_ns)
        errors[t_ns] = node.pilot.model_errors - before
    with lock:
        writer.close()

    data = build_recording(read_bag(tmp_path / 'day'), DatasetConfig())
    assert len(data) > 200, data.reports[0].line()
    policy = OnnxPolicy(str(model), rate_hz=10.0)  # the node's own kind of session
    windows = data.windows()
    compared = 0
    for n, t in enumerate(data.stamps):
        t_ns = T0_NS + round((t - _seconds(T0_NS)) * 10) * TICK_NS
        assert abs(_seconds(t_ns) - t) < 1e-6, 'the dataset ticks off the node grid'
        if errors[t_ns]:
            continue  # the node's inference ran late: PD's number stands there, not a window
        status = statuses[t_ns]
        assert not status.engaged and status.window_fill == WINDOW_LENGTH, (t, status.reason)
        assert status.raw_command == policy.infer(windows[n:n + 1]), (
            f'tick {t:.1f}: the node fed its model another window than the dataset holds')
        compared += 1
    assert compared > 0.95 * len(data)
    fingerprints = [statuses[ns].raw_command for ns in statuses if ns >= T0_NS]
    assert np.std([f for f in fingerprints if math.isfinite(f)]) > 0.1  # they tell apart
