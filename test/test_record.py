"""autopilot-record: bags from live DDS, read back by the training reader, byte for byte.

The pure core (bag_recorder.py) is tested without DDS: message definitions as rosbag2
stores them, the QoS rule, splitting, metadata.yaml at every step, a file cut mid-chunk.
The DDS tests run the installed `autopilot-record` executable against real publishers:
the bag must hold exactly the CDR bytes rclpy serialises for the published messages,
survive SIGKILL, and split into files the reader reads as one recording.
"""

from contextlib import ExitStack
import json
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import time

import pytest
import yaml

pytest.importorskip('mcap')  # requirements.txt, setup.py [record] and [test]
from autopilot_ros.bag_recorder import (  # noqa: E402
    DEFINITION_SEPARATOR,
    BagRecorder,
    Offer,
    RecordError,
    TopicInfo,
    adapt_request,
    live_line,
    matches,
    message_definition,
    type_hash,
)

T0 = 1_790_000_000_000_000_000


# -- message definitions --------------------------------------------------------------------
def _fake_prefix(root: Path) -> Path:
    """An install prefix with a two-level message package, written by hand."""
    msg = root / 'share' / 'boat_msgs' / 'msg'
    msg.mkdir(parents=True)
    (msg / 'Sail.msg').write_text('# a sail\nuint8 JIB=1\nuint8 kind\nboat_msgs/Trim trim\n'
                                  'Trim[] history\nstring<=8 name\n')
    (msg / 'Trim.msg').write_text('float32 sheet  # m\nbuiltin_interfaces/Time stamp\n')
    (msg / 'Sail.json').write_text(json.dumps({'type_hashes': [
        {'type_name': 'boat_msgs/msg/Sail', 'hash_string': 'RIHS01_' + 'ab' * 32},
        {'type_name': 'boat_msgs/msg/Trim', 'hash_string': 'RIHS01_' + 'cd' * 32}]}))
    time_dir = root / 'share' / 'builtin_interfaces' / 'msg'
    time_dir.mkdir(parents=True)
    (time_dir / 'Time.msg').write_text('int32 sec\nuint32 nanosec\n')
    return root


def test_definition_is_the_msg_files_with_each_dependency_once(tmp_path):
    prefix = str(_fake_prefix(tmp_path))
    text = message_definition('boat_msgs/msg/Sail', [prefix])
    sep = '\n' + DEFINITION_SEPARATOR
    assert text == (
        '# a sail\nuint8 JIB=1\nuint8 kind\nboat_msgs/Trim trim\nTrim[] history\n'
        'string<=8 name\n'
        f'{sep}MSG: boat_msgs/Trim\nfloat32 sheet  # m\nbuiltin_interfaces/Time stamp\n'
        f'{sep}MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n')
    assert type_hash('boat_msgs/msg/Sail', [prefix]) == 'RIHS01_' + 'ab' * 32


def test_a_missing_definition_is_one_clear_error(tmp_path):
    prefix = str(_fake_prefix(tmp_path))
    with pytest.raises(RecordError, match=r'boat_msgs/msg/Keel.msg is not installed'):
        message_definition('boat_msgs/msg/Keel', [prefix])
    with pytest.raises(RecordError, match='not a message type name'):
        message_definition('no type', [prefix])
    with pytest.raises(RecordError, match='no type hash'):
        (tmp_path / 'share/boat_msgs/msg/Trim.json').write_text('{"type_hashes": []}')
        type_hash('boat_msgs/msg/Trim', [prefix])


def test_installed_definitions_parse_to_the_hash_rosidl_computed():
    """The definition written into the bag is the type: rosbags, parsing it alone, arrives
    at the same RIHS01 hash rosidl generated at build time (the .json beside the .msg)."""
    pytest.importorskip('rclpy')  # the ament share folders: colcon route
    from rosbags.typesys import get_types_from_msg
    from rosbags.typesys.store import Typestore

    for msgtype in ('sensor_msgs/msg/Imu', 'geometry_msgs/msg/TwistStamped',
                    'autopilot_ros/msg/AutopilotStatus', 'autopilot_ros/msg/RudderCommand'):
        text = message_definition(msgtype)
        store = Typestore()
        root, *deps = text.split('\n' + DEFINITION_SEPARATOR)
        store.register(get_types_from_msg(root, msgtype))
        for dep in deps:
            head, body = dep.split('\n', 1)
            package, name = head.removeprefix('MSG: ').split('/')
            store.register(get_types_from_msg(body, f'{package}/msg/{name}'))
        assert store.hash_rihs01(msgtype) == type_hash(msgtype), msgtype


# -- QoS ------------------------------------------------------------------------------------
def test_the_request_matches_every_publisher_and_is_as_reliable_as_they_allow():
    best, rel, latched = Offer(False), Offer(True), Offer(True, True)
    assert not adapt_request([], default_reliable=False).reliable  # sensors' contract
    assert adapt_request([], default_reliable=True).reliable  # status, commands
    assert adapt_request([rel, rel], False).reliable  # a reliable stream stays reliable
    mixed = adapt_request([rel, best], True)
    assert not mixed.reliable and all(matches(mixed, o) for o in (rel, best))
    assert adapt_request([latched], False).transient_local
    assert not adapt_request([latched, rel], False).transient_local
    assert not matches(adapt_request([rel], False), best)  # why the node asks again


# -- the bag --------------------------------------------------------------------------------
INFINITE = {'sec': 2147483647, 'nsec': 4294967295}
BEST_EFFORT = {'history': 'unknown', 'depth': 0, 'reliability': 'best_effort',
               'durability': 'volatile', 'deadline': INFINITE, 'lifespan': INFINITE,
               'liveliness': 'automatic', 'liveliness_lease_duration': INFINITE,
               'avoid_ros_namespace_conventions': False}


def _topic(name='/heading', msgtype='autopilot_ros/msg/Heading'):
    """The topic with the definition and hash of the type (a wrong one decodes wrongly)."""
    pytest.importorskip('rosbags')
    from autopilot_ros.training.bags.typestore import _shared_store

    store = _shared_store()
    return TopicInfo(name, msgtype, store.generate_msgdef(msgtype, ros_version=2)[0],
                     store.hash_rihs01(msgtype), [BEST_EFFORT])


def _heading_cdr(i: int) -> bytes:
    """Real CDR bytes of an autopilot_ros/msg/Heading (rosbags, as the training reader)."""
    pytest.importorskip('rosbags')
    from autopilot_ros.training.bags.typestore import _shared_store

    store = _shared_store()
    types = store.types
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=T0 // 10**9 + i // 10,
                                                   nanosec=(i % 10) * 100_000_000),
        frame_id='base_link')
    msg = types['autopilot_ros/msg/Heading'](header=header, heading=0.001 * i, is_true_north=False)
    return bytes(store.serialize_cdr(msg, 'autopilot_ros/msg/Heading'))


def _raw_messages(bag: Path) -> list[bytes]:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        return [bytes(data) for _, _, data in reader.messages()]


def test_metadata_is_there_from_the_start_and_complete_at_the_close(tmp_path):
    bag = tmp_path / 'day'
    rec = BagRecorder(bag).open()
    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['relative_file_paths'] == ['day_0.mcap'] and meta['storage_identifier'] == 'mcap'
    rec.add_topic(_topic())
    blobs = [_heading_cdr(i) for i in range(30)]
    for i, blob in enumerate(blobs):
        rec.write('/heading', blob, T0 + i * 100_000_000)
    rec.close()
    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['message_count'] == 30 and meta['duration']['nanoseconds'] == 29 * 10**8
    (topic,) = meta['topics_with_message_count']
    assert topic['message_count'] == 30
    assert topic['topic_metadata']['offered_qos_profiles'] == [BEST_EFFORT]
    assert _raw_messages(bag) == blobs
    with pytest.raises(RecordError, match='exists already'):
        BagRecorder(bag)


def test_splits_by_size_and_by_duration_read_back_as_one_recording(tmp_path):
    from autopilot_ros.training.bags import read_bag

    blobs = [_heading_cdr(i) for i in range(1000)]  # 100 s at 10 Hz, 80 kB
    for name, kwargs in (('by_size', {'max_bag_size': 16000}),
                         ('by_time', {'max_bag_duration': 30.0})):
        bag = tmp_path / name
        with BagRecorder(bag, **kwargs) as rec:
            rec.add_topic(_topic())
            for i, blob in enumerate(blobs):
                rec.write('/heading', blob, T0 + i * 100_000_000)
                rec.tick()
        meta = yaml.safe_load((bag / 'metadata.yaml').read_text())
        files = meta['rosbag2_bagfile_information']['files']
        assert len(files) >= 3, name
        assert [f['path'] for f in files] == [f'{name}_{i}.mcap' for i in range(len(files))]
        assert sum(f['message_count'] for f in files) == 1000
        if name == 'by_time':
            assert all(f['duration']['nanoseconds'] < 30 * 10**9 for f in files)
        else:  # a file ends with the message that takes it past the size; + its index
            sizes = [(bag / f['path']).stat().st_size for f in files]
            assert all(16000 <= x < 1.5 * 16000 for x in sizes[:-1]), sizes
        assert _raw_messages(bag) == blobs
        rec = read_bag(bag, topic_map={'heading': '/heading'}, required=('heading',))
        assert [round(s.heading, 6) for s in rec.heading] == [round(0.001 * i, 6)
                                                              for i in range(1000)]
        assert not rec.warnings


def test_a_file_cut_mid_chunk_reads_up_to_the_cut(tmp_path):
    """A power cut: what was flushed is there, and the chunk being written is read as far
    as it got (training/bags/salvage.py), with a warning and nothing invented."""
    from autopilot_ros.training.bags import read_bag

    bag = tmp_path / 'cut'
    blobs = [_heading_cdr(i) for i in range(100)]
    rec = BagRecorder(bag).open()
    rec.add_topic(_topic())
    for i, blob in enumerate(blobs):
        rec.write('/heading', blob, T0 + i * 100_000_000)
        if i in (39, 79):
            rec.flush()
    # The power goes: the third chunk is not written, the second is cut in its middle.
    data = (bag / 'cut_0.mcap').read_bytes()
    rec._stream.close()
    cut = tmp_path / 'copy'
    shutil.copytree(bag, cut)
    first_two = len(data)
    (cut / 'cut_0.mcap').write_bytes(data[:first_two - 1500])
    got = read_bag(cut, topic_map={'heading': '/heading'}, required=('heading',))
    assert any('incomplete' in w for w in got.warnings), got.warnings
    n = len(got.heading)
    assert 40 <= n < 80
    assert _salvaged(cut / 'cut_0.mcap') == blobs[:n]


def _salvaged(path: Path) -> list[bytes]:
    from autopilot_ros.training.bags.salvage import _McapSalvage

    reader = _McapSalvage(path)
    reader.open()
    return [bytes(data) for _, _, data in reader.messages(reader.connections)]


def test_the_live_line_names_every_topic_even_a_silent_one():
    line = live_line(3725.0, {'/imu': 50.0, '/heading': 10.2}, ['/imu', '/heading', '/wind'],
                     1_234_567, 2, dropped=3)
    assert line == '1:02:05  imu 50 Hz  heading 10 Hz  wind 0 Hz  1.2 MB in 2 files  3 dropped'


# -- live DDS -------------------------------------------------------------------------------
def _record_exe() -> Path:
    from ament_index_python.packages import get_package_prefix

    return Path(get_package_prefix('autopilot_ros')) / 'lib' / 'autopilot_ros' / 'autopilot-record'


class Publishers:
    """The package's topics, published by a real node with the QoS of their contract, and
    a wire tap: raw subscriptions of the test's own, the bytes DDS delivered to anyone."""

    def __init__(self, context, namespace: str = '') -> None:
        from geometry_msgs.msg import TwistStamped
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Imu

        from autopilot_ros.msg import AutopilotStatus, Heading, RudderAngle, RudderCommand, Wind
        from autopilot_ros.node import command_qos_profile

        self.node = Node('fake_boat', namespace=namespace or None, context=context)
        self.tap = Node('wire_tap', namespace=namespace or None, context=context)
        command = command_qos_profile(0.3)
        self.types = {'imu': Imu, 'heading': Heading, 'wind': Wind, 'speed': TwistStamped,
                      'rudder_angle': RudderAngle, 'rudder_command': RudderCommand,
                      'autopilot/status': AutopilotStatus}
        self.pubs = {name: self.node.create_publisher(
            cls, name, command if name in ('rudder_command', 'autopilot/status')
            else qos_profile_sensor_data) for name, cls in self.types.items()}
        self.sent: dict[str, list] = {name: [] for name in self.types}
        self.wire: dict[str, list[bytes]] = {name: [] for name in self.types}
        for name, cls in self.types.items():
            reliable = name in ('rudder_command', 'autopilot/status')
            qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE if reliable
                             else ReliabilityPolicy.BEST_EFFORT)
            self.tap.create_subscription(cls, name, self.wire[name].append, qos, raw=True)
        self.i = 0

    def add_to(self, spinner) -> 'Publishers':
        spinner.add(self.node)
        spinner.add(self.tap)
        return self

    def matched(self) -> bool:
        """The recorder subscribes to every topic (the tap is the other subscriber)."""
        return all(p.get_subscription_count() >= 2 for p in self.pubs.values())

    def publish_all(self) -> None:
        """One message per topic, every field distinct from the last message's."""
        i = self.i = self.i + 1
        stamp = self.node.get_clock().now().to_msg()
        for name, cls in self.types.items():
            msg = cls()
            msg.header.stamp = stamp
            # 11 characters: the next field needs no alignment padding (see below).
            msg.header.frame_id = f'b{i:010d}'
            if name == 'imu':
                msg.angular_velocity.z = 0.001 * i
                msg.orientation.w = 1.0
            elif name == 'heading':
                msg.heading = 0.01 * i
            elif name == 'wind':
                msg.angle, msg.speed = 0.5, 5.0 + 0.01 * i
            elif name == 'speed':
                msg.twist.linear.x = 3.0
            elif name == 'rudder_angle':
                msg.angle = 0.001 * i
            elif name == 'rudder_command':
                msg.command, msg.sequence, msg.engaged = 0.002 * i, i, True
            else:
                msg.mode, msg.target = 'compass', 1.5
            self.pubs[name].publish(msg)
            self.sent[name].append(msg)


# Fast-CDR skips alignment padding without writing it, so rclpy's serialize_message leaves
# whatever was in its fresh buffer there: two serialisations of one message can differ in
# those bytes. These types, with an 11-character frame_id, have none.
NO_PADDING = ('imu', 'heading', 'wind', 'speed', 'rudder_angle')


def _rtps(data: bytes) -> bytes:
    """A serialised message as it travels between processes: the RTPS payload is padded
    with zeros to a multiple of 4 bytes (in one process Fast DDS hands it over unpadded)."""
    return data + bytes(-len(data) % 4)


def _check_bytes(got: dict[str, list[bytes]], boat: Publishers, prefix: str = '/',
                 *, whole: bool = True) -> None:
    """The bag holds exactly the bytes DDS delivered, which are the published messages.

    The wire tap runs in the publishers' process; the recorder in its own.
    """
    from rclpy.serialization import deserialize_message, serialize_message

    for name, sent in boat.sent.items():
        stored = got.get(f'{prefix}{name}', [])
        wire = [_rtps(x) for x in boat.wire[name]]
        if whole:
            assert stored == wire, f'{name}: {len(stored)} stored, {len(wire)} delivered'
            assert len(stored) == len(sent), f'{name}: {len(stored)} of {len(sent)}'
            first = 0
        else:  # cut short: an unbroken run of what was delivered, from (near) the start
            first = wire.index(stored[0]) if stored else 0
            assert stored == wire[first:first + len(stored)], name
        for data, msg in zip(stored, sent[first:], strict=False):
            assert deserialize_message(data, boat.types[name]) == msg, name
            if name in NO_PADDING:
                assert data == _rtps(serialize_message(msg)), name


def _start(bag: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(_record_exe()), '-o', str(bag), '--status-interval', '0.5',
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _recorded(bag: Path) -> dict[str, list[bytes]]:
    """Each topic's messages as the bag stores them, read the training reader's way."""
    from autopilot_ros.training.bags.storage import _bag_topics, _open_bag

    warnings: list[str] = []
    with ExitStack() as stack:
        sources = _open_bag(bag, stack, warnings)
        out: dict[str, list[bytes]] = {}
        for topic in _bag_topics(sources).values():
            for source, conn in topic.conns:
                out.setdefault(topic.name, []).extend(
                    bytes(data) for _, _, data in source.messages([conn]))
    return out


def _publish_until(boat, spinner, count: int, rate: float = 50.0) -> None:
    for _ in range(count):
        boat.publish_all()
        time.sleep(1.0 / rate)


def test_records_live_dds_byte_identical_and_the_reader_takes_it(tmp_path, spinner, wait,
                                                                 rclpy_context):
    from autopilot_ros.training.bags import read_bag

    boat = Publishers(rclpy_context).add_to(spinner)
    bag = tmp_path / 'day1'
    proc = _start(bag)
    try:
        assert wait(boat.matched, timeout=20), 'the recorder never subscribed'
        time.sleep(0.5)  # the recorder's side of discovery: it must see the publishers too
        _publish_until(boat, spinner, 100)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert re.search(r'imu [1-9]\d* Hz  heading [1-9]\d* Hz', out), out  # the live line
    assert 'closed' in out and '(SIGINT)' in out

    _check_bytes(_recorded(bag), boat)
    rec = read_bag(bag)
    assert not rec.warnings, rec.warnings
    assert len(rec.heading) == 100 and rec.heading[-1].heading == pytest.approx(1.0)
    assert [c.angle for c in rec.rudder_command][:3] == pytest.approx([0.002, 0.004, 0.006])

    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    qos = {t['topic_metadata']['name']: t['topic_metadata']['offered_qos_profiles']
           for t in meta['topics_with_message_count']}
    assert qos['/imu'][0]['reliability'] == 'best_effort'  # as the publisher offered
    assert qos['/autopilot/status'][0]['reliability'] == 'reliable'
    assert qos['/rudder_command'][0]['deadline'] == {'sec': 0, 'nsec': 300_000_000}
    assert meta['message_count'] == 700


def test_a_recorder_killed_mid_run_leaves_a_readable_bag(tmp_path, spinner, wait,
                                                         rclpy_context):
    """SIGKILL (as a power cut: no close, no footer): every message the bag gives back is
    one that was published, in order, and the flushed seconds are all there."""
    from autopilot_ros.training.bags import read_bag

    boat = Publishers(rclpy_context).add_to(spinner)
    bag = tmp_path / 'killed'
    proc = _start(bag, '--flush-interval', '0.5')
    try:
        assert wait(boat.matched, timeout=20)
        time.sleep(0.5)
        _publish_until(boat, spinner, 150)  # 3 s
        proc.kill()
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    got = _recorded(bag)
    _check_bytes(got, boat, whole=False)
    for name in boat.sent:  # 0.5 s flushes: at most the last second is lost
        assert len(got.get(f'/{name}', [])) >= 100, f'{name}: {len(got.get(f"/{name}", []))}'
    rec = read_bag(bag)
    assert any('incomplete' in w or 'not closed' in w for w in rec.warnings), rec.warnings
    assert len(rec.imu) >= 100


def test_splitting_live_gives_several_readable_files(tmp_path, spinner, wait, rclpy_context):
    from autopilot_ros.training.bags import read_bag

    boat = Publishers(rclpy_context, namespace='boat').add_to(spinner)
    bag = tmp_path / 'split'
    proc = _start(bag, '--namespace', 'boat', '--max-bag-duration', '1',
                  '--max-bag-size', '60000', '--extra', '/boat/extra_clock')
    try:
        assert wait(boat.matched, timeout=20)
        time.sleep(0.5)
        _publish_until(boat, spinner, 150)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    files = sorted(bag.glob('*.mcap'))
    assert len(files) >= 3, files
    _check_bytes(_recorded(bag), boat, '/boat/')
    rec = read_bag(bag)  # relative names find the only namespaced topic of each
    assert len(rec.imu) == 150 and not rec.warnings


@pytest.mark.dds  # the installed executable
def test_bad_options_are_one_line_and_the_list_shows_the_topics(tmp_path):
    exe = _record_exe()
    listed = subprocess.run([str(exe), '--list', '-n', 'boat', '--extra', 'gps'],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    assert '/boat/imu  sensor_msgs/msg/Imu  best effort' in listed.stdout
    assert '/boat/autopilot/status  autopilot_ros/msg/AutopilotStatus  reliable' in listed.stdout
    assert '/boat/gps  (type from its publisher)' in listed.stdout
    (tmp_path / 'taken').mkdir()
    taken = subprocess.run([str(exe), '-o', str(tmp_path / 'taken')], capture_output=True,
                           text=True, timeout=60)
    assert taken.returncode == 2
    assert taken.stderr.strip().splitlines() == [
        f'autopilot-record: {tmp_path / "taken"} exists already; choose another output folder']
    assert os.listdir(tmp_path / 'taken') == []
    # SROS2: an enclave without security enforced would look secured and not be.
    env = {k: v for k, v in os.environ.items() if not k.startswith('ROS_SECURITY')}
    unsecured = subprocess.run([str(exe), '--enclave', '/autopilot_ros/recorder', '-o',
                                str(tmp_path / 'secret')], capture_output=True, text=True,
                               timeout=60, env=env)
    assert unsecured.returncode == 2
    assert unsecured.stderr.strip().splitlines() == [
        'autopilot-record: --enclave /autopilot_ros/recorder needs ROS_SECURITY_ENABLE=true '
        '(scripts/sros2-setup prints the exports); without it the node would run unsecured. '
        'Nothing was started']
    assert not (tmp_path / 'secret').exists()


def test_a_publisher_the_contract_would_not_match_is_recorded_all_the_same(
        tmp_path, spinner, wait, rclpy_context):
    """The recorder starts before anyone publishes and asks status reliably (its contract);
    a status publisher offering only best effort then appears: the recorder asks again,
    best effort, says so, and records it, with that publisher's QoS in metadata.yaml."""
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.serialization import deserialize_message

    from autopilot_ros.msg import AutopilotStatus

    bag = tmp_path / 'odd_qos'
    proc = _start(bag, '/autopilot/status')
    time.sleep(2.0)  # subscribed, reliable, with no publisher yet
    node = spinner.add(Node('best_effort_status', context=rclpy_context))
    pub = node.create_publisher(AutopilotStatus, '/autopilot/status', qos_profile_sensor_data)
    try:
        assert wait(lambda: pub.get_subscription_count() > 0, timeout=20)
        time.sleep(0.5)
        sent = []
        for i in range(20):
            msg = AutopilotStatus(mode='compass', target=0.1 * i)
            pub.publish(msg)
            sent.append(msg)
            time.sleep(0.02)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert 'subscribing again (1 publisher(s): best effort)' in out, out
    stored = _recorded(bag)['/autopilot/status']  # (status has padding: see NO_PADDING)
    assert [deserialize_message(x, AutopilotStatus) for x in stored] == sent
    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    (topic,) = meta['topics_with_message_count']
    assert [q['reliability'] for q in topic['topic_metadata']['offered_qos_profiles']] == [
        'best_effort']
