"""Bags this package did not write: MCAP files from the `mcap` library, messages from rclpy.

Every other bag test reads what the package's own BagWriter (rosbags) wrote, so a reader
and writer that agree on a mistake would pass them. Here the container comes from the
`mcap` library (zstd and lz4 chunks, as `ros2 bag record` and other tools write them),
the CDR bytes from rclpy's serialize_message of the real generated messages, and the
values are set by hand, not through the package's fill_* mappings. The reader must give
them back exactly, stamps from the headers (not the recorder's receive times).
"""

import math
from pathlib import Path

import pytest

pytest.importorskip('mcap')  # requirements.txt, setup.py [test]
pytest.importorskip('rclpy')  # ROS: `make test`; `make test-core` (pip route) has none
from ament_index_python.packages import get_package_share_directory
from geometry_msgs.msg import TwistStamped
from mcap import writer as mcap_writer
from mcap.reader import make_reader
from rclpy import serialization
from sensor_msgs.msg import Imu

from autopilot_ros.msg import AutopilotStatus, Heading, RudderAngle, RudderCommand, Wind
from autopilot_ros.training import bags
from autopilot_ros.training.dataset import DatasetConfig, build_recording

T0_NS = 1_700_000_000_000_000_000
DEG = math.pi / 180
# sin and cos of 5 deg: a 10 deg heel to starboard is +10 deg about x (REP-103).
SIN5, COS5 = 0.0871557427476582, 0.9961946980917455
RECEIVED_LATE_NS = 20_000_000  # the recorder's receive time trails the header by 20 ms
BUILTIN = {'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16',
           'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring'}


def msg_definition(msgtype: str) -> str:
    """The schema text rosbag2 stores for a type: its .msg file from the installed share
    directory, then each nested type's once, after a line of '=' and 'MSG: pkg/Type'."""
    texts: dict[str, str] = {}

    def visit(package: str, name: str) -> None:
        key = f'{package}/{name}'
        if key in texts:
            return
        text = (Path(get_package_share_directory(package)) / 'msg' / f'{name}.msg').read_text()
        texts[key] = text
        for line in text.splitlines():
            words = line.split('#')[0].split()
            if len(words) < 2 or '=' in words[1]:  # blank, comment or constant
                continue
            kind = words[0].split('[')[0].split('<=')[0]
            if kind in BUILTIN:
                continue
            parts = kind.split('/')
            visit(parts[0] if len(parts) > 1 else package, parts[-1])

    package, _, name = msgtype.split('/')
    visit(package, name)
    first, *nested = texts.items()
    return first[1] + ''.join(f'\n{"=" * 80}\nMSG: {key}\n{text}' for key, text in nested)


def _stamp(msg, t_ns: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t_ns, 1_000_000_000)
    msg.header.frame_id = 'base_link'


def recording_day(n: int = 100) -> list[tuple[str, str, int, object]]:
    """(topic, type, header stamp ns, message): 2 s of IMU at 50 Hz and the rest at 10 Hz,
    every value different and signed both ways, heel alternating starboard and port."""
    out = []
    for i in range(n):
        t = T0_NS + i * 20_000_000
        imu = Imu()
        _stamp(imu, t)
        side = 1.0 if i % 2 == 0 else -1.0  # starboard down, then port down
        imu.orientation.x, imu.orientation.w = side * SIN5, COS5
        imu.angular_velocity.x, imu.angular_velocity.y = 0.01 * i, -0.02
        imu.angular_velocity.z = -0.2 - 0.001 * i  # < 0: turning to starboard
        imu.linear_acceleration.x, imu.linear_acceleration.y = 0.3, -0.4
        imu.linear_acceleration.z = 9.9
        out.append(('/imu', 'sensor_msgs/msg/Imu', t, imu))
        if i % 5:
            continue
        k = i // 5
        heading = Heading(heading=(0.5 + 0.3 * k) % (2 * math.pi), is_true_north=False)
        wind = Wind(angle=-0.8 if k % 2 else 2.5, speed=12.5 + k)
        speed = TwistStamped()
        speed.twist.linear.x = 4.0 + 0.1 * k
        rudder = RudderAngle(angle=-0.35 if k % 2 else 0.25)
        status = AutopilotStatus(mode='compass', engaged=False, target=1.2, target_heading=1.2,
                                 command=0.0, raw_command=math.nan, policy=0,
                                 stale_inputs=['speed'], window_fill=k)
        command = RudderCommand(command=0.0, engaged=False, policy=0, sequence=k,
                                valid_for=0.3)
        for msg, topic, msgtype in (
                (heading, '/heading', 'autopilot_ros/msg/Heading'),
                (wind, '/wind', 'autopilot_ros/msg/Wind'),
                (speed, '/speed', 'geometry_msgs/msg/TwistStamped'),
                (rudder, '/rudder_angle', 'autopilot_ros/msg/RudderAngle'),
                (status, '/autopilot/status', 'autopilot_ros/msg/AutopilotStatus'),
                (command, '/rudder_command', 'autopilot_ros/msg/RudderCommand')):
            _stamp(msg, t)
            out.append((topic, msgtype, t, msg))
    return out


def write_mcap(path: Path, messages: list, compression) -> None:
    """An MCAP file as rosbag2's mcap storage writes it: profile ros2, ros2msg schemas,
    cdr messages, QoS in the channel metadata, log time = when the recorder got it."""
    with open(path, 'wb') as stream:
        writer = mcap_writer.Writer(stream, chunk_size=2048, compression=compression)
        writer.start(profile='ros2', library='test_bags_foreign')
        channels: dict[str, int] = {}
        for topic, msgtype, _, _ in messages:
            if topic not in channels:
                schema = writer.register_schema(msgtype, 'ros2msg',
                                                msg_definition(msgtype).encode())
                channels[topic] = writer.register_channel(
                    topic, 'cdr', schema, {'offered_qos_profiles': ''})
        for seq, (topic, _, stamp, msg) in enumerate(messages):
            writer.add_message(channels[topic], log_time=stamp + RECEIVED_LATE_NS,
                               data=serialization.serialize_message(msg),
                               publish_time=stamp, sequence=seq)
        writer.finish()


@pytest.mark.parametrize('compression', ['ZSTD', 'LZ4'])
def test_an_mcap_written_by_the_mcap_library_reads_back_value_for_value(
        tmp_path: Path, compression: str):
    messages = recording_day()
    path = tmp_path / 'day.mcap'
    write_mcap(path, messages, getattr(mcap_writer.CompressionType, compression))
    with open(path, 'rb') as stream:  # the file really is in compressed chunks
        chunks = make_reader(stream).get_summary().chunk_indexes
    assert len(chunks) > 5 and {c.compression for c in chunks} == {compression.lower()}

    rec = bags.read_bag(path)
    assert rec.storage_id == 'mcap'
    sent = {}
    for topic, _, stamp, msg in messages:
        sec, nanosec = divmod(stamp, 1_000_000_000)
        sent.setdefault(topic, []).append((sec + nanosec * 1e-9, msg))
    assert len(rec.imu) == 100 and len(rec.heading) == len(rec.status) == 20
    for sample, (t, msg) in zip(rec.imu, sent['/imu'], strict=True):
        assert sample.stamp == t  # the header, not the log time
        heel = 10 * DEG if msg.orientation.x > 0 else -10 * DEG
        assert sample.roll == pytest.approx(heel, abs=1e-9) and sample.pitch == 0.0
        assert (sample.roll_rate, sample.pitch_rate, sample.yaw_rate_z) == (
            msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z)
        assert (sample.accel_x, sample.accel_y, sample.accel_z) == (0.3, -0.4, 9.9)
    # (what the sample says, what the message said); angles pass through the wraps.
    checks = (('heading', '/heading', lambda s, m: (s.heading, m.heading)),
              ('wind', '/wind', lambda s, m: ((s.awa, s.aws), (m.angle, m.speed))),
              ('speed', '/speed', lambda s, m: (s.stw, m.twist.linear.x)),
              ('rudder_angle', '/rudder_angle', lambda s, m: (s.angle, m.angle)),
              ('rudder_command', '/rudder_command', lambda s, m: (s.angle, m.command)),
              ('autopilot/status', '/autopilot/status',
               lambda s, m: ((s.engaged, s.target, s.target_heading, s.policy),
                             (m.engaged, m.target, m.target_heading, m.policy))))
    for key, topic, pair in checks:
        got = rec.samples[key]
        assert len(got) == len(sent[topic]) == 20, key
        for sample, (t, msg) in zip(got, sent[topic], strict=True):
            assert sample.stamp == t, key
            read, written = pair(sample, msg)
            assert read == pytest.approx(written, abs=1e-12), (key, sample, msg)
    assert all(s.mode == 'compass' for s in rec.status)
    assert rec.start_time == pytest.approx(T0_NS * 1e-9)
    assert rec.end_time == pytest.approx(T0_NS * 1e-9 + 1.98)

    # And it is training data: hand steering in compass mode, every input there.
    data = build_recording(rec, DatasetConfig(settle_s=0.0, label_lead_s=0.0))
    assert data.reports[0].ticks == 20 and len(data) == 1  # one full window, at the end
