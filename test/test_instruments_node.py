"""instruments_node over real DDS: NMEA 0183 from a TCP socket and NMEA 2000 from a CAN bus
shared with this process in, the pilot's topics out, and the whole chains simulator ->
NMEA 0183 or Signal K -> instruments_node -> autopilot_node steering.

The installed executables run as processes, as `ros2 run` starts them.
"""

import bisect
import json
import math
import os
import pathlib
import socket
import subprocess
import threading
import time

import pytest

pytestmark = pytest.mark.dds

DEG = math.pi / 180
KNOT = 1852 / 3600
# Sim seconds after the probe's first truth message before bridged values are compared: more
# than the chain's lag (printed by the Signal K test; p95 well under 1 s at 2x real time).
CHAIN_SETTLE_S = 2.0


def sentence(body: str) -> str:
    checksum = 0
    for ch in body:
        checksum ^= ord(ch)
    return f'${body}*{checksum:02X}\r\n'


BATCH = ''.join(sentence(b) for b in (
    'HCHDM,90.0,M',
    'TIROT,60.0,A',  # 1 deg/s to starboard
    'YXXDR,A,5.0,D,PTCH,A,10.0,D,ROLL',  # bow up 5, starboard side down 10
    'WIMWV,270.0,R,10.0,N,A',  # wind from port beam
    'VWVHW,,T,,M,6.00,N,,K',
    'IIRSA,-17.5,A,,V',  # rudder to port, half of 35 deg
)) + '$HCHDM,99.0,M*00\r\nnoise\r\n'  # a bad checksum and garbage, every batch


def executable(name: str) -> str:
    from ament_index_python.packages import get_package_prefix
    return str(pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros' / name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Multiplexer:
    """A TCP server that sends BATCH at 10 Hz to whoever connects (one at a time)."""

    def __init__(self) -> None:
        self.server = socket.create_server(('127.0.0.1', 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        self.drop = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                while not self.stop.is_set() and not self.drop.is_set():
                    try:
                        conn.sendall(BATCH.encode())
                    except OSError:
                        break
                    time.sleep(0.1)
            self.drop.clear()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.server.close()


@pytest.fixture
def processes():
    started = []

    def start(args, **kw):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
    for proc in started:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_nmea_over_tcp_becomes_the_pilots_topics_and_the_autopilot_takes_them(
        spinner, wait, processes):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data

    from autopilot_ros.inputs import INPUT_BY_NAME, check_sample
    from autopilot_ros.ros_messages import message_class
    from autopilot_ros.samples import (
        heading_from_msg,
        imu_from_msg,
        rudder_from_msg,
        speed_from_msg,
        wind_from_msg,
    )

    mux = Multiplexer()
    try:
        node = spinner.add(Node('instruments_probe', context=spinner.executor.context))
        last: dict = {}
        received: dict = {}
        for name, spec in INPUT_BY_NAME.items():
            node.create_subscription(
                message_class(spec.msg_type), name,
                lambda m, n=name: (last.__setitem__(n, m),
                                   received.setdefault(n, time.time())),
                qos_profile_sensor_data)
        diags = []
        node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
        proc = processes([executable('instruments_node'), '--ros-args',
                          '-p', 'source:=nmea0183', '-p', f'nmea0183.port:={mux.port}',
                          '-p', 'rudder_full_scale_deg:=35.0', '-p', 'backoff_initial:=0.1'])
        assert wait(lambda: len(last) == 5, timeout=30), (last.keys(), proc.poll())

        heading = heading_from_msg(last['heading'])
        assert heading.heading == pytest.approx(90 * DEG)
        assert last['heading'].is_true_north is False  # HDM: magnetic
        imu_msg = last['imu']
        assert imu_msg.angular_velocity.z == pytest.approx(-1 * DEG / 1.0 * 1.0, abs=1e-9)
        assert math.isnan(imu_msg.angular_velocity.x) and math.isnan(imu_msg.angular_velocity.y)
        assert imu_msg.linear_acceleration_covariance[0] == -1.0  # REP-145: absent
        assert imu_msg.orientation_covariance[0] != -1.0  # the XDR's attitude is there
        imu = imu_from_msg(imu_msg)
        assert imu.roll == pytest.approx(10 * DEG) and imu.pitch == pytest.approx(-5 * DEG)
        wind = wind_from_msg(last['wind'])
        assert wind.awa == pytest.approx(-90 * DEG) and wind.aws == pytest.approx(10 * KNOT)
        assert speed_from_msg(last['speed']).stw == pytest.approx(6 * KNOT)
        assert rudder_from_msg(last['rudder_angle']).angle == pytest.approx(-0.5)
        for name, msg in last.items():
            # Stamped with the receive time, on this computer's clock.
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            assert abs(stamp - time.time()) < 2.0, name
            # The autopilot's own reading of each message: taken, not dropped.
            assert check_sample(INPUT_BY_NAME[name].from_msg(msg)) is None, name

        # The multiplexer drops the link: a counted reconnect in /diagnostics, data again.
        mux.drop.set()
        assert wait(lambda: mux.connections >= 2, timeout=30)

        def status():
            for array in reversed(diags):
                for s in array.status:
                    if 'nmea0183' in s.name:
                        return s, {kv.key: kv.value for kv in s.values}
            return None, {}

        assert wait(lambda: int(status()[1].get('reconnects', 0)) >= 1
                    and int(status()[1].get('checksum errors', 0)) >= 2, timeout=20)
        s, values = status()
        assert s.level == b'\x00', s.message
        assert values['stamped with'].startswith('receive time')
        assert int(values['parse errors']) >= 1  # the garbage line
        # 10 Hz HDM: the rate over the last 5 s climbs back once the link is up again.
        assert wait(lambda: float(status()[1]['heading rate'].split()[0]) > 7.0, timeout=15)
        assert values['heading reference'] == 'magnetic'
        assert proc.poll() is None
    finally:
        mux.close()


# -- NMEA 2000: frames on a CAN bus shared between processes -> instruments_node ------------
@pytest.fixture
def can_bus():
    """vcan0 where it exists, else python-can's udp_multicast on a group and port of this
    test's own, kept on this host (instruments/nmea2000_out.py says why both)."""
    from autopilot_ros.instruments.nmea2000_out import SharedBusUnavailable, shared_bus
    try:
        return shared_bus()
    except SharedBusUnavailable as exc:
        pytest.skip(f'no CAN bus that processes can share: {exc}')


class N2kInstruments:
    """A boat's NMEA 2000 instruments: every PGN the bridge reads, 10 times a second.

    Each batch: a true heading (numbered: its raw value is TRUE_RAW + n, in 1e-4 rad, so a
    message is matched with the time its frame was sent), a magnetic one (the node is told
    to publish the true one only), rate of turn 1 deg/s to starboard, roll 10 deg starboard
    side down and pitch 5 deg bow up, apparent wind 10 kn from the port beam, speed 3.09 m/s
    (128259, or 130577 fast packets of 2.5 m/s once `fast` is set), rudder 17.5 deg to port,
    a rudder of another instance, and a truncated 127250 frame.
    """

    TRUE_RAW = 15708  # 90 deg

    def __init__(self, bus) -> None:
        self.tx = bus.open()
        self.sent: dict[int, float] = {}  # raw heading -> time.time() its frame was sent
        self.fast = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def batch(self, n: int) -> tuple[int, list]:
        from autopilot_ros.instruments import nmea2000_out as out

        raw = self.TRUE_RAW + n % 2000
        frames = [out.frame(127250, out.heading(raw * 1e-4, reference=out.TRUE)),
                  out.frame(127250, out.heading(100 * DEG, deviation=-500)),  # magnetic
                  out.frame(127251, out.rate_of_turn(1 * DEG)),
                  out.frame(127257, out.attitude(roll=10 * DEG, pitch=5 * DEG)),
                  out.frame(130306, out.wind(10 * KNOT, 270 * DEG))]
        if self.fast.is_set():
            frames += [out.frame(130577, f, source=36)
                       for f in out.fast_packet_frames(out.direction_data(2.5), n % 8)]
        else:
            frames.append(out.frame(128259, out.speed(3.09)))
        frames += [out.frame(127245, out.rudder(-17.5 * DEG)),
                   out.frame(127245, out.rudder(30 * DEG, instance=1)),  # not ours
                   out.frame(127250, out.heading(1.0)[:4])]  # truncated
        return raw, frames

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            raw, frames = self.batch(n)
            self.sent[raw] = time.time()
            for f in frames:
                self.tx.send(f)
            n += 1
            self.stop.wait(0.1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.tx.shutdown()


def test_nmea2000_on_a_shared_can_bus_becomes_the_pilots_topics_and_the_autopilot_takes_them(
        can_bus, spinner, wait, processes):
    """The installed instruments_node on a CAN bus another process sends on, over DDS."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data

    from autopilot_ros.inputs import INPUT_BY_NAME, check_sample
    from autopilot_ros.ros_messages import message_class
    from autopilot_ros.samples import imu_from_msg, rudder_from_msg, speed_from_msg, wind_from_msg

    node = spinner.add(Node('n2k_probe', context=spinner.executor.context))
    last: dict = {}
    headings: list = []  # (message, when it arrived here)
    for name, spec in INPUT_BY_NAME.items():
        node.create_subscription(
            message_class(spec.msg_type), name,
            lambda m, n=name: last.__setitem__(n, m), qos_profile_sensor_data)
    node.create_subscription(message_class(INPUT_BY_NAME['heading'].msg_type), 'heading',
                             lambda m: headings.append((m, time.time())),
                             qos_profile_sensor_data)
    diags: list = []
    node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    instruments = N2kInstruments(can_bus)
    try:
        proc = processes([executable('instruments_node'), '--ros-args', *can_bus.node_args(),
                          '-p', 'heading_reference:=true', '-p', 'rudder_full_scale_deg:=35.0',
                          '-p', 'backoff_initial:=0.1'],
                         env={**os.environ, **can_bus.env()})
        assert wait(lambda: len(last) == 5, timeout=30), (last.keys(), proc.poll(),
                                                          can_bus.describe())
        # Let a few batches through: every message below comes from a whole batch.
        assert wait(lambda: len(headings) >= 5, timeout=10)

        # Heading: the true one only, each exactly as sent, stamped when its frame arrived
        # (after it was sent, before it reached us: this computer's clock, both processes).
        for msg, arrived in headings:
            raw = round(msg.heading * 1e4)
            assert msg.heading == pytest.approx(raw * 1e-4, abs=1e-12)
            assert raw in instruments.sent, raw  # never the magnetic 100 deg
            assert msg.is_true_north is True
            stamp = _seconds(msg.header.stamp)
            assert instruments.sent[raw] - 1e-3 <= stamp <= arrived + 1e-3, (
                instruments.sent[raw], stamp, arrived)
        imu_msg = last['imu']
        # 127251 > 0 turns to starboard; REP-103's z is up, so z = -rate.
        assert imu_msg.angular_velocity.z == pytest.approx(-1 * DEG, abs=1e-7)
        assert math.isnan(imu_msg.angular_velocity.x) and math.isnan(imu_msg.angular_velocity.y)
        assert imu_msg.linear_acceleration_covariance[0] == -1.0  # REP-145: absent
        assert imu_msg.angular_velocity_covariance[0] != -1.0  # the turn rate is there
        assert imu_msg.orientation_covariance[0] != -1.0  # and so is the attitude
        imu = imu_from_msg(imu_msg)
        # 127257's pitch > 0 is bow up; ours is bow down.
        assert imu.roll == pytest.approx(10 * DEG, abs=1e-4)
        assert imu.pitch == pytest.approx(-5 * DEG, abs=1e-4)
        wind = wind_from_msg(last['wind'])  # 270 deg clockwise: from port, negative
        assert wind.awa == pytest.approx(-90 * DEG, abs=1e-4)
        assert wind.aws == pytest.approx(10 * KNOT, abs=0.005)
        assert speed_from_msg(last['speed']).stw == pytest.approx(3.09)
        assert rudder_from_msg(last['rudder_angle']).angle == pytest.approx(-0.5, abs=1e-3)
        for name, msg in last.items():
            stamp = _seconds(msg.header.stamp)
            assert abs(stamp - time.time()) < 2.0, name  # receive time, this clock
            assert msg.header.frame_id == 'base_link', name
            # The autopilot's own reading of each message: taken, not dropped.
            assert check_sample(INPUT_BY_NAME[name].from_msg(msg)) is None, name

        # Speed through water from 130577 fast packets, reassembled across processes.
        instruments.fast.set()
        assert wait(lambda: speed_from_msg(last['speed']).stw == pytest.approx(2.5),
                    timeout=10), speed_from_msg(last['speed'])

        def status():
            for array in reversed(diags):
                for s in array.status:
                    if s.name.endswith(': nmea2000'):
                        return s, {kv.key: kv.value for kv in s.values}
            return None, {}

        # Rates are counted over 5 s: wait until the window is full of 10 Hz batches.
        kinds = ('heading', 'turn_rate', 'attitude', 'wind', 'speed', 'rudder')
        assert wait(lambda: all(float(status()[1].get(f'{k} rate', '0 Hz').split()[0]) > 7.0
                                for k in kinds), timeout=15), status()[1]
        s, values = status()
        assert s.level == b'\x00', s.message
        assert s.hardware_id == 'nmea2000' and values['source'] == 'nmea2000'
        assert values['connection'] == f'{can_bus.interface} CAN bus {can_bus.channel}'
        assert values['connected'] == 'true' and values['reconnects'] == '0'
        assert values['stamped with'].startswith('receive time')
        assert values['heading reference'] == 'true'
        assert int(values['not published: magnetic heading (publishing true)']) >= 10
        # Every batch's truncated frame: a counted decode error, never a value.
        assert int(values['parse errors']) >= 10
        assert 'truncated' in values['last error'] and 'PGN 127250' in values['last error']
        # The other rudder instance and nothing else is ignored; all the rest was read.
        received, readings = int(values['received']), int(values['readings'])
        assert received >= readings + int(values['parse errors']) + int(values['ignored'])
        assert int(values['ignored']) >= 10
        assert proc.poll() is None
    finally:
        instruments.close()


def test_a_source_that_cannot_start_says_so_in_one_line(tmp_path):
    out = subprocess.run([executable('instruments_node'), '--ros-args', '-p', 'source:=smoke'],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout.strip().splitlines()[-1] == (
        "instruments_node: source 'smoke': one of nmea0183, nmea2000, signalk")
    assert 'Traceback' not in out.stdout + out.stderr


def test_a_parameter_of_the_wrong_type_says_so_in_one_line(tmp_path):
    out = subprocess.run([executable('instruments_node'), '--ros-args', '-p', 'source:=nmea2000',
                          '-p', 'nmea2000.rudder_instance:=port'],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith('instruments_node: ') and 'nmea2000.rudder_instance' in line
    assert "'port'" in line and 'takes an integer' in line
    assert 'Traceback' not in out.stdout + out.stderr


def test_the_simulator_through_nmea_0183_and_the_bridge_is_steered_by_the_autopilot(
        tmp_path, spinner, wait, processes):
    """sim_node -> NMEA 0183 over TCP -> instruments_node -> autopilot_node -> rudder."""
    from ament_index_python.packages import get_package_share_directory
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from autopilot_ros.launch_config import SIM_STAMP_TOLERANCE, default_params_file
    from autopilot_ros.msg import AutopilotStatus

    share = get_package_share_directory('autopilot_ros')
    port = free_port()
    summary = tmp_path / 'summary.json'
    node = spinner.add(Node('chain_probe', context=spinner.executor.context))
    statuses = []
    node.create_subscription(AutopilotStatus, 'autopilot/status', statuses.append,
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    autopilot = processes([executable('autopilot_node'), '--ros-args', '--params-file',
                           default_params_file(share), '-p', 'use_sim_time:=true',
                           '-p', f'stamp_future_tolerance:={SIM_STAMP_TOLERANCE}'])
    sim = processes([executable('sim_node'), '--ros-args', '-p', 'scenario:=recovery',
                     '-p', 'real_time_factor:=5.0', '-p', 'lockstep:=true',
                     '-p', f'nmea.tcp_port:={port}', '-p', 'nmea.only:=true',
                     '-p', f'summary_path:={summary}'])
    bridge = processes([executable('instruments_node'), '--ros-args', '-p', 'source:=nmea0183',
                        '-p', f'nmea0183.port:={port}', '-p', 'use_sim_time:=true',
                        '-p', 'backoff_initial:=0.1', '-p', 'backoff_max:=0.5'])
    try:
        sim.wait(timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail('the simulator did not finish')
    assert sim.returncode == 0, sim.stdout.read()
    assert autopilot.poll() is None and bridge.poll() is None
    (result,) = json.loads(summary.read_text())['results']
    assert_the_pid_steered_the_recovery_on_bridged_inputs(statuses, result)


def test_the_simulator_refuses_nmea_only_without_an_nmea_output(tmp_path):
    out = subprocess.run([executable('sim_node'), '--ros-args', '-p', 'nmea.only:=true'],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout.strip().splitlines()[-1] == (
        'sim_node: nmea.only needs nmea.tcp_port or nmea.udp')
    assert 'Traceback' not in out.stdout + out.stderr


# -- Signal K: the simulator -> a real signalk-server -> instruments_node -> autopilot_node ----
@pytest.fixture
def signalk_server(tmp_path):
    """A throwaway signalk-server on loopback with no recording: the simulator is its only
    instrument. Skips only where Node.js is absent (as test_signalk.py's server tests)."""
    from autopilot_ros.instruments.signalk_server import (
        LocalSignalKServer,
        SignalKServerUnavailable,
        node_executable,
    )
    if node_executable() is None:
        pytest.skip('Node.js is not installed: the real signalk-server cannot run here')
    try:
        server = LocalSignalKServer(tmp_path / 'signalk', sample=None)
    except SignalKServerUnavailable as exc:
        pytest.fail(str(exc))
    server.start()
    yield server
    server.close()


def _values_match(bridge: list, truth: list, value, tol: float) -> float:
    """The share of the bridge's values that are (within tol) one the simulator produced.

    Only bridged messages stamped CHAIN_SETTLE_S after the first truth message count: the
    simulator publishes before DDS discovery has matched the probe's truth subscriptions (on a
    loaded machine, seconds), while the bridge gets those readings through the server all the
    same, and a reading the probe never saw is not a sign error.
    """
    if not truth:
        return 0.0
    start = _seconds(truth[0].header.stamp) + CHAIN_SETTLE_S
    ours = [value(m) for m in bridge if _seconds(m.header.stamp) >= start]
    ours = [v for v in ours if v is not None]
    if not ours:
        return 0.0
    ordered = sorted(v for v in (value(m) for m in truth) if v is not None)
    hits = 0
    for v in ours:
        i = bisect.bisect_left(ordered, v)
        near = [ordered[j] for j in (i - 1, i) if 0 <= j < len(ordered)]
        hits += any(abs(v - t) <= tol for t in near)
    return hits / len(ours)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _attitude(sample, field: str) -> float | None:
    """Roll or pitch where the message carries an attitude, else None (not compared)."""
    return getattr(sample, field) if sample.orientation_known else None


def _chain_lag(bridged: list, truth: list, value) -> str:
    """How late the bridge's readings were, in sim seconds: each bridged value is found among
    the simulator's own readings (stamped when sensed); the bridge stamps on receipt."""
    sensed: dict[float, float] = {}
    for m in truth:
        sensed.setdefault(value(m), _seconds(m.header.stamp))
    lags = sorted(_seconds(m.header.stamp) - sensed[value(m)] for m in bridged
                  if value(m) in sensed)
    if not lags:
        return 'chain lag unknown (no bridged value found)'
    return (f'chain lag p50 {lags[len(lags) // 2]:.2f} s, p95 '
            f'{lags[int(0.95 * (len(lags) - 1))]:.2f} s of sim time')


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def test_the_simulator_through_signalk_and_the_bridge_is_steered_by_the_autopilot(
        tmp_path, signalk_server, spinner, wait, processes):
    """sim_node -> Signal K deltas -> signalk-server -> instruments_node -> autopilot_node.

    The simulator also publishes its own sensor readings, remapped to /truth/*, so the
    values the bridge publishes can be found among the ones the simulator's sensors produced,
    with their signs: a sign lost or doubled anywhere on the way (encoder, server, parser,
    bridge, message) would not be found.
    """
    from ament_index_python.packages import get_package_share_directory
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from autopilot_ros.inputs import INPUT_BY_NAME, check_sample
    from autopilot_ros.launch_config import SIM_STAMP_TOLERANCE, default_params_file
    from autopilot_ros.msg import AutopilotStatus
    from autopilot_ros.ros_messages import message_class
    from autopilot_ros.samples import imu_from_msg

    share = get_package_share_directory('autopilot_ros')
    summary = tmp_path / 'summary.json'
    node = spinner.add(Node('signalk_chain_probe', context=spinner.executor.context))
    statuses: list = []
    node.create_subscription(AutopilotStatus, 'autopilot/status', statuses.append,
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    got: dict[str, list] = {}
    # Best effort as published, with room: a truth message the probe drops is a bridge value
    # it cannot find (so the share below is 95 %, where a sign error gives a few %).
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)
    for prefix in ('', '/truth/'):
        for name, spec in INPUT_BY_NAME.items():
            node.create_subscription(
                message_class(spec.msg_type), prefix + name,
                lambda m, k=prefix + name: got.setdefault(k, []).append(m), qos)
    diags: list = []
    node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    autopilot = processes([executable('autopilot_node'), '--ros-args', '--params-file',
                           default_params_file(share), '-p', 'use_sim_time:=true',
                           '-p', f'stamp_future_tolerance:={SIM_STAMP_TOLERANCE}'])
    truth = [arg for name in INPUT_BY_NAME for arg in ('-r', f'{name}:=/truth/{name}')]
    # Lockstep paces the simulator on the pilot's commands, not on the sensors' way through
    # the server and the bridge: a wall-clock delay there is real_time_factor times as long
    # in sim time. 2x keeps that lag small on a loaded machine (5x: the recovery at 16 deg
    # RMS once, with three other jobs on the two cores).
    sim = processes([executable('sim_node'), '--ros-args', '-p', 'scenario:=recovery',
                     '-p', 'real_time_factor:=2.0', '-p', 'lockstep:=true',
                     '-p', f'signalk.url:={signalk_server.url}',
                     '-p', f'summary_path:={summary}', *truth])
    bridge = processes([executable('instruments_node'), '--ros-args', '-p', 'source:=signalk',
                        '-p', f'signalk.url:={signalk_server.url}', '-p', 'use_sim_time:=true',
                        '-p', 'backoff_initial:=0.1', '-p', 'backoff_max:=0.5'])
    try:
        sim.wait(timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail('the simulator did not finish')
    assert sim.returncode == 0, sim.stdout.read()
    assert autopilot.poll() is None and bridge.poll() is None, bridge.stdout.read()
    (result,) = json.loads(summary.read_text())['results']

    # Every input arrived through the bridge, as the autopilot reads it (none dropped).
    for name, spec in INPUT_BY_NAME.items():
        assert len(got.get(name, [])) > 100, (name, len(got.get(name, [])))
        problems = [check_sample(spec.from_msg(m)) for m in got[name]]
        assert [p for p in problems if p is not None] == [], name
    lag = _chain_lag(got['heading'], got['/truth/heading'], lambda m: m.heading)
    print(lag)  # shown with pytest -s or -rP

    # The signs: each value the bridge published is one the simulator's sensors produced.
    def match(name: str, value, tol: float = 1e-9) -> float:
        return _values_match(got[name], got['/truth/' + name], value, tol)

    assert match('heading', lambda m: m.heading) > 0.95, lag
    for field in ('angle', 'speed'):
        assert match('wind', lambda m, f=field: getattr(m, f)) > 0.95, (field, lag)
    assert match('speed', lambda m: m.twist.linear.x) > 0.95, lag
    assert match('rudder_angle', lambda m: m.angle) > 0.95, lag
    # The recovery scenario turns 75 deg: the rudder and the turn rate go both ways.
    rudder = [m.angle for m in got['rudder_angle']]
    assert min(rudder) < -0.05 and max(rudder) > 0.05
    imu = [imu_from_msg(m) for m in got['imu']]
    rates = [s.yaw_rate_z for s in imu if math.isfinite(s.yaw_rate_z)]
    assert min(rates) < -0.01 and max(rates) > 0.01  # REP-103: z > 0 is a turn to port
    assert match('imu', lambda m: _finite(imu_from_msg(m).yaw_rate_z)) > 0.95
    assert sum(s.orientation_known for s in imu) > 100
    for field in ('roll', 'pitch'):  # Signal K pitch is bow up: flipped twice on the way
        assert match('imu', lambda m, f=field: _attitude(imu_from_msg(m), f), 1e-6) > 0.95, field
    # REP-145: Signal K has no accelerations and no roll or pitch rates: marked absent.
    for m in got['imu']:
        assert m.linear_acceleration_covariance[0] == -1.0
        assert math.isnan(m.angular_velocity.x) and math.isnan(m.angular_velocity.y)
    # The bridge's /diagnostics: the Signal K source, connected, stamped on receipt.
    status = next(s for a in reversed(diags) for s in a.status if s.name.endswith(': signalk'))
    values = {kv.key: kv.value for kv in status.values}
    assert values['connected'] == 'true' and values['parse errors'] == '0'
    assert values['connection'] == f'{signalk_server.url}/signalk/v1/stream'
    assert values['stamped with'].startswith('receive time')
    assert values['heading reference'] == 'magnetic'
    assert_the_pid_steered_the_recovery_on_bridged_inputs(statuses, result, lag)


def test_the_simulator_refuses_signalk_only_without_a_server(tmp_path):
    out = subprocess.run([executable('sim_node'), '--ros-args', '-p', 'signalk.only:=true'],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout.strip().splitlines()[-1] == 'sim_node: signalk.only needs signalk.url'
    assert 'Traceback' not in out.stdout + out.stderr
    bad = subprocess.run([executable('sim_node'), '--ros-args', '-p', 'signalk.url:=ftp://x'],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stdout.strip().splitlines()[-1] == (
        "sim_node: Signal K url 'ftp://x': the scheme must be ws or wss")
    assert 'Traceback' not in bad.stdout + bad.stderr


def assert_the_pid_steered_the_recovery_on_bridged_inputs(statuses: list, result: dict,
                                                           lag: str = '') -> None:
    """Both bridge routes end alike: the autopilot took every input from the bridge (none
    stale once under way), its PID steered (no model: the node's default; the instruments
    give no accelerations), and the recovery's 75 deg course change settled to a few
    degrees."""
    from autopilot_ros.pilot import POLICY_NAMES

    engaged = [s for s in statuses if s.engaged]
    assert len(engaged) > 500, len(statuses)
    fresh = [s for s in engaged if not any(n in s.stale_inputs for n in
                                           ('imu', 'heading', 'wind'))]
    assert len(fresh) / len(engaged) > 0.95
    assert {POLICY_NAMES[s.policy] for s in engaged} == {'pid'}
    assert result['rms_deg'] < 5.0, (lag, result)
    assert max(abs(s.heading_error) for s in engaged[-100:]) < 5 * DEG
