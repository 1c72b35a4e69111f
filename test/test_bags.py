"""rosbag2 I/O of the training module: real bags written and read in both storages.

The reader is what a sailor's recordings meet first, so besides round trips these tests
feed it the bags a boat really produces: cut short by a power loss, without metadata.yaml,
with a leftover write-ahead log, with topics under other names or of other types, and
plain garbage. Each must give its messages back with a warning, or one clear BagError.
"""

import math
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg

from autopilot_ros.inputs import input_of
from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SpeedSample,
    WindSample,
)
from autopilot_ros.training import bags

STORAGES = ('sqlite3', 'mcap')
SUFFIX = {'sqlite3': '.db3', 'mcap': '.mcap'}
T0 = 1_700_000_000.0


def make_samples(n_imu: int = 60, every: int = 5) -> dict[str, list]:
    """Inputs with both signs of everything that has a sign, IMU at 5x the others' rate."""
    imu = [
        ImuSample(
            T0 + 0.02 * i,
            roll=0.3 if i % 2 else -0.2,  # > 0 = starboard side down
            pitch=0.05 - 0.001 * (i % 100),
            roll_rate=0.01 * i,
            pitch_rate=-0.02,
            yaw_rate_z=-0.25 - 0.001 * i,  # < 0 = turning to starboard
            accel_x=0.5,
            accel_y=-0.3,
            accel_z=9.81,
        )
        for i in range(n_imu)
    ]
    slow = [T0 + 0.02 * i for i in range(0, n_imu, every)]
    return {
        'imu': imu,
        'heading': [HeadingSample(t, (0.1 + 0.5 * k) % 6.0) for k, t in enumerate(slow)],
        'wind': [WindSample(t, -0.7 if k % 2 else 2.5, 6.0 + k % 10) for k, t in enumerate(slow)],
        'speed': [SpeedSample(t, 2.5 + 0.1 * k) for k, t in enumerate(slow)],
        'rudder_angle': [RudderSample(t, -0.4 if k % 2 else 0.3) for k, t in enumerate(slow)],
    }


def write_bag(path: Path, storage: str, data: dict[str, list] | None = None,
              **kwargs: object) -> dict[str, list]:
    """A bag of make_samples() (or data) written in time order, as a recorder would."""
    data = data if data is not None else make_samples()
    events = sorted((s for lst in data.values() for s in lst), key=lambda s: s.stamp)
    with bags.BagWriter(path, storage, **kwargs) as writer:
        for sample in events:
            writer.write_sample(sample)
    return data


def assert_samples_equal(got: list, want: list) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert type(a) is type(b)
        for name in a.__slots__:
            assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-6), name


# --------------------------------------------------------------------------- types


def test_message_definitions_are_found_and_registered() -> None:
    folder = bags.msg_definitions_dir()
    for name in bags.PACKAGE_TYPES:
        assert (folder / f'{name}.msg').is_file()
    store = bags.make_typestore()
    for name in bags.PACKAGE_TYPES:
        assert f'autopilot_ros/msg/{name}' in store.types
    assert 'sensor_msgs/msg/Imu' in store.types
    assert 'geometry_msgs/msg/TwistStamped' in store.types


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize('storage', STORAGES)
def test_round_trip_every_input(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / 'bag'
    data = write_bag(bag, storage)
    files = sorted(x.name for x in bag.iterdir())
    assert files == sorted(['metadata.yaml', f'bag{SUFFIX[storage]}'])

    rec = bags.read_bag(bag)
    assert rec.warnings == []
    assert rec.storage_id == storage
    for key, want in data.items():
        assert_samples_equal(rec.samples[key], want)
    assert rec.topics == {'imu': '/imu', 'heading': '/heading', 'wind': '/wind',
                          'speed': '/speed', 'rudder_angle': '/rudder_angle'}
    assert rec.message_counts['/imu'] == len(data['imu'])
    assert rec.rudder_command == [] and rec.status == []
    assert rec.start_time == pytest.approx(T0)
    assert rec.duration == pytest.approx(0.02 * (len(data['imu']) - 1))


def test_blank_messages_fill_and_read_back_as_the_same_samples(tmp_path: Path) -> None:
    """The writer's mapping (shared with sim_node) is the exact inverse of the reader's."""
    with bags.BagWriter(tmp_path / 'bag', 'mcap') as writer:
        for key, samples in make_samples(4, 1).items():
            for sample in samples:
                spec = input_of(sample)
                assert spec.name == key
                msg = writer.blank(spec.msg_type)
                spec.fill_msg(msg, sample)
                msg.header = writer.header(sample.stamp)
                assert_samples_equal([spec.from_msg(msg)], [sample])
        blank = writer.blank('sensor_msgs/msg/Imu')
        assert blank.orientation_covariance.shape == (9,) and blank.header.frame_id == ''
        status = writer.blank('autopilot_ros/msg/AutopilotStatus')
        assert status.stale_inputs == [] and status.window_fill == 0 and status.mode == ''


def test_writer_refuses_what_it_has_no_topic_for(tmp_path: Path) -> None:
    with bags.BagWriter(tmp_path / 'bag', 'mcap') as writer, pytest.raises(TypeError):
        writer.write_sample(object())


@pytest.mark.parametrize('storage', STORAGES)
def test_signs_survive_the_round_trip(tmp_path: Path, storage: str) -> None:
    """REP-103: a starboard turn is a negative angular_velocity.z, roll > 0 starboard down."""
    data = write_bag(tmp_path / 'bag', storage)
    rec = bags.read_bag(tmp_path / 'bag')
    assert all(s.yaw_rate_z < 0 for s in rec.imu)
    assert [s.roll > 0 for s in rec.imu] == [s.roll > 0 for s in data['imu']]
    assert {math.copysign(1, s.roll) for s in rec.imu} == {-1.0, 1.0}
    assert {math.copysign(1, s.awa) for s in rec.wind} == {-1.0, 1.0}
    assert {math.copysign(1, s.angle) for s in rec.rudder_angle} == {-1.0, 1.0}
    assert all(s.accel_y < 0 < s.accel_z for s in rec.imu)


@pytest.mark.parametrize('storage', STORAGES)
def test_bare_storage_file_reads(tmp_path: Path, storage: str) -> None:
    data = write_bag(tmp_path / 'bag', storage)
    rec = bags.read_bag(tmp_path / 'bag' / f'bag{SUFFIX[storage]}')
    assert_samples_equal(rec.heading, data['heading'])
    assert rec.storage_id == storage


@pytest.mark.parametrize('storage', STORAGES)
def test_command_and_status_are_read_when_present(tmp_path: Path, storage: str) -> None:
    store = bags.make_typestore()
    types = store.types
    with bags.BagWriter(tmp_path / 'bag', storage) as writer:
        write_inputs(writer)
        cmd = types['autopilot_ros/msg/RudderCommand'](
            header=writer.header(T0 + 0.5), command=-0.25, engaged=True, policy=1,
            sequence=12, valid_for=0.3)
        writer.write('/rudder_command', cmd, int((T0 + 0.5) * 1e9))
        status = types['autopilot_ros/msg/AutopilotStatus'](
            header=writer.header(T0 + 0.5), mode='compass', engaged=True, target=1.0,
            target_heading=1.0, heading_error=0.1, command=-0.25, raw_command=-0.3, policy=1,
            reason='', model_path='m.onnx', model_sha256='x', inference_time=0.001,
            window_fill=20, stale_inputs=[])
        writer.write('/autopilot/status', status, int((T0 + 0.5) * 1e9))
    rec = bags.read_bag(tmp_path / 'bag')
    assert rec.rudder_command == [RudderSample(pytest.approx(T0 + 0.5), -0.25)]
    assert rec.status[0].mode == 'compass' and rec.status[0].engaged is True
    assert rec.status[0].command == -0.25 and rec.status[0].policy == 1


def write_inputs(writer: bags.BagWriter, n: int = 10, skip: str = '') -> None:
    for sample_key, samples in make_samples(n, 2).items():
        if sample_key != skip:
            for sample in samples:
                writer.write_sample(sample)


def test_zero_header_stamp_falls_back_to_receive_time(tmp_path: Path) -> None:
    with bags.BagWriter(tmp_path / 'bag', 'mcap') as writer:
        write_inputs(writer, skip='heading')
        writer.write_sample(HeadingSample(0.0, 1.0), stamp_ns=int(T0 * 1e9) + 5)
    rec = bags.read_bag(tmp_path / 'bag')
    assert rec.heading[0].stamp == pytest.approx(T0)
    assert any('zero header stamp' in w for w in rec.warnings)


def test_samples_are_sorted_by_header_stamp(tmp_path: Path) -> None:
    """Bag order is receive order; a late sensor must not scramble the series."""
    with bags.BagWriter(tmp_path / 'bag', 'sqlite3') as writer:
        write_inputs(writer, skip='wind')
        for k, stamp in enumerate((T0 + 0.3, T0 + 0.1, T0 + 0.2)):
            writer.write_sample(WindSample(stamp, 0.1 * k, 5.0), stamp_ns=int(T0 * 1e9) + k)
    stamps = [s.stamp for s in bags.read_bag(tmp_path / 'bag').wind]
    assert stamps == sorted(stamps) and len(stamps) == 3


# --------------------------------------------------------------------------- topic maps


def test_topic_map_with_custom_names(tmp_path: Path) -> None:
    data = write_bag(tmp_path / 'bag', 'mcap', topic_map={'heading': '/boat/compass',
                                                           'wind': '/masthead/wind'})
    tmap = bags.TopicMap.from_strings(['heading=/boat/compass', 'wind=/masthead/wind'])
    rec = bags.read_bag(tmp_path / 'bag', tmap)
    assert rec.topics['heading'] == '/boat/compass'
    assert_samples_equal(rec.heading, data['heading'])
    # A relative name finds the namespaced topic too, and a dict works like the strings.
    rec = bags.read_bag(tmp_path / 'bag', {'heading': 'compass', 'wind': 'masthead/wind'})
    assert rec.topics['heading'] == '/boat/compass'
    # The default map does not find the renamed topic, and says what the bag has.
    with pytest.raises(bags.BagError, match=r"no topic for 'heading'.*/boat/compass"):
        bags.read_bag(tmp_path / 'bag')


def test_relative_names_match_a_namespaced_recording(tmp_path: Path) -> None:
    data = write_bag(tmp_path / 'bag', 'sqlite3', namespace='/boat')
    rec = bags.read_bag(tmp_path / 'bag')
    assert rec.topics['imu'] == '/boat/imu'
    assert_samples_equal(rec.imu, data['imu'])


def test_absolute_map_names_match_relative_bag_topics(tmp_path: Path) -> None:
    """Some tools store topics without the leading '/'; '/compass' must still find them."""
    with bags.BagWriter(tmp_path / 'bag', 'mcap') as writer:
        write_inputs(writer, skip='heading')
        msg = writer.typestore.types['autopilot_ros/msg/Heading'](
            header=writer.header(T0), heading=3.0, is_true_north=False)
        writer.write('compass', msg, int(T0 * 1e9))
    rec = bags.read_bag(tmp_path / 'bag', {'heading': '/compass'})
    assert rec.topics['heading'] == 'compass'
    assert rec.heading == [HeadingSample(pytest.approx(T0), 3.0)]


def test_ambiguous_relative_name_asks_for_a_choice(tmp_path: Path) -> None:
    with bags.BagWriter(tmp_path / 'bag', 'mcap') as writer:
        write_inputs(writer, skip='heading')
        writer.write('/a/heading', writer.typestore.types['autopilot_ros/msg/Heading'](
            header=writer.header(T0), heading=1.0, is_true_north=False), int(T0 * 1e9))
        writer.write('/b/heading', writer.typestore.types['autopilot_ros/msg/Heading'](
            header=writer.header(T0), heading=2.0, is_true_north=False), int(T0 * 1e9))
    with pytest.raises(bags.BagError, match=r'several topics.*/a/heading.*/b/heading'):
        bags.read_bag(tmp_path / 'bag')
    assert bags.read_bag(tmp_path / 'bag', ['heading=/b/heading']).heading[0].heading == 2.0


@pytest.mark.parametrize('bad', [['nonsense=/x'], ['heading'], ['=/x'], ['imu=/a b']])
def test_bad_topic_map_strings(bad: list[str]) -> None:
    with pytest.raises(bags.TopicMapError) as err:
        bags.TopicMap.from_strings(bad)
    assert isinstance(err.value, ValueError) and isinstance(err.value, bags.BagError)


def test_topic_map_names() -> None:
    tmap = bags.TopicMap()
    assert [k for k, _ in tmap.items()] == list(bags.LOGICAL_INPUTS)
    assert tmap.absolute('autopilot/status') == '/autopilot/status'
    assert tmap.absolute('imu', '/boat') == '/boat/imu'
    assert bags.TopicMap.from_dict({'autopilot/status': 'st'}).status == 'st'


# --------------------------------------------------------------------------- bad input


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(bags.BagError, match=r'no such file or directory'):
        bags.read_bag(tmp_path / 'nope')


def test_directory_that_is_not_a_bag(tmp_path: Path) -> None:
    (tmp_path / 'notes.txt').write_text('hello')
    with pytest.raises(bags.BagError, match=r'not a rosbag2 bag.*metadata\.yaml'):
        bags.read_bag(tmp_path)
    with pytest.raises(bags.BagError, match=r'not a rosbag2 bag'):
        bags.read_bag(tmp_path / 'notes.txt')


def test_directory_of_bags_points_to_read_bags(tmp_path: Path) -> None:
    write_bag(tmp_path / 'a', 'mcap')
    with pytest.raises(bags.BagError, match=r'read_bags'):
        bags.read_bag(tmp_path)


@pytest.mark.parametrize('garbage', [b'\x00garbage' * 500,
                                     b'SQLite format 3\x00' + b'\x07garbage' * 500])
def test_garbage_db3(tmp_path: Path, garbage: bytes) -> None:
    write_bag(tmp_path / 'bag', 'sqlite3')
    (tmp_path / 'bag' / 'bag.db3').write_bytes(garbage)
    with pytest.raises(bags.BagError, match=r'bag\.db3.*(not an SQLite database|corrupt)'):
        bags.read_bag(tmp_path / 'bag')
    with pytest.raises(bags.BagError, match=r'bag\.db3.*(not an SQLite database|corrupt)'):
        bags.read_bag(tmp_path / 'bag' / 'bag.db3')


def test_garbage_mcap(tmp_path: Path) -> None:
    path = tmp_path / 'x.mcap'
    path.write_bytes(b'garbage' * 100)
    with pytest.raises(bags.BagError, match=r'x\.mcap.*not an MCAP file'):
        bags.read_bag(path)


@pytest.mark.parametrize('storage', STORAGES)
def test_missing_required_topic_lists_what_the_bag_has(tmp_path: Path, storage: str) -> None:
    with bags.BagWriter(tmp_path / 'bag', storage) as writer:
        write_inputs(writer, skip='rudder_angle')
    with pytest.raises(bags.BagError) as err:
        bags.read_bag(tmp_path / 'bag')
    text = str(err.value)
    assert "no topic for 'rudder_angle'" in text and str(tmp_path / 'bag') in text
    for topic in ('/imu', '/heading', '/wind', '/speed'):
        assert topic in text
    # Not required by the caller: fine, with an empty list.
    rec = bags.read_bag(tmp_path / 'bag', required=('imu', 'heading', 'wind'))
    assert rec.rudder_angle == []


@pytest.mark.parametrize('storage', STORAGES)
def test_required_topic_without_messages(tmp_path: Path, storage: str) -> None:
    with bags.BagWriter(tmp_path / 'bag', storage) as writer:
        write_inputs(writer, skip='wind')
        writer.add_topic('/wind', 'autopilot_ros/msg/Wind')
    with pytest.raises(bags.BagError, match=r"/wind \(for 'wind'\).*no messages"):
        bags.read_bag(tmp_path / 'bag')


@pytest.mark.parametrize('storage', STORAGES)
def test_wrong_type_on_required_topic(tmp_path: Path, storage: str) -> None:
    with bags.BagWriter(tmp_path / 'bag', storage) as writer:
        write_inputs(writer, skip='heading')
        value = writer.typestore.types['std_msgs/msg/Float64'](data=1.0)
        writer.write('/heading', value, int(T0 * 1e9))
    with pytest.raises(bags.BagError) as err:
        bags.read_bag(tmp_path / 'bag')
    assert 'std_msgs/msg/Float64' in str(err.value)
    assert 'needs autopilot_ros/msg/Heading' in str(err.value)


def test_wrong_type_on_optional_topic_is_ignored(tmp_path: Path) -> None:
    with bags.BagWriter(tmp_path / 'bag', 'mcap') as writer:
        write_inputs(writer, skip='speed')
        writer.write('/speed', writer.typestore.types['std_msgs/msg/Float64'](data=1.0),
                     int(T0 * 1e9))
    rec = bags.read_bag(tmp_path / 'bag')
    assert rec.speed == []
    assert any('/speed' in w and 'geometry_msgs/msg/TwistStamped' in w for w in rec.warnings)


def write_raw_bag(path: Path, storage: str, extra: list[tuple[str, str, str, bytes]]) -> None:
    """A bag of 5 messages per required input plus raw (topic, type, msgdef, bytes) ones.

    Written with rosbags' own Writer, since BagWriter only writes well-formed messages.
    """
    store = bags.make_typestore()
    types = store.types
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3

    def header(k: int) -> object:
        return types['std_msgs/msg/Header'](
            stamp=types['builtin_interfaces/msg/Time'](sec=int(T0) + k, nanosec=0),
            frame_id='base_link')

    vec = types['geometry_msgs/msg/Vector3']
    zeros = np.zeros(9)
    make = {
        '/imu': lambda k: types['sensor_msgs/msg/Imu'](
            header(k), types['geometry_msgs/msg/Quaternion'](0.0, 0.0, 0.0, 1.0), zeros,
            vec(0.0, 0.0, -0.1), zeros, vec(0.0, 0.0, 9.8), zeros),
        '/heading': lambda k: types['autopilot_ros/msg/Heading'](header(k), 1.0, False),
        '/wind': lambda k: types['autopilot_ros/msg/Wind'](header(k), -0.5, 6.0),
        '/rudder_angle': lambda k: types['autopilot_ros/msg/RudderAngle'](header(k), 0.2),
    }
    with Writer(path / 'bag', version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, factory in make.items():
            msgtype = factory(0).__msgtype__
            conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            for k in range(5):
                writer.write(conns[topic], int((T0 + k) * 1e9),
                             store.serialize_cdr(factory(k), msgtype))
        for topic, msgtype, msgdef, raw in extra:
            if topic not in conns:
                conns[topic] = (writer.add_connection(topic, msgtype, typestore=store)
                                if not msgdef else writer.add_connection(
                                    topic, msgtype, msgdef=msgdef, rihs01='RIHS01_' + '0' * 64))
            writer.write(conns[topic], int((T0 + 9) * 1e9), raw)


# A CDR header followed by too few bytes for any of the package's messages.
BAD_CDR = b'\x00\x01\x00\x00\x01\x02'


@pytest.mark.parametrize('storage', STORAGES)
def test_undecodable_messages_are_skipped_and_counted(tmp_path: Path, storage: str) -> None:
    write_raw_bag(tmp_path, storage, [('/heading', 'autopilot_ros/msg/Heading', '', BAD_CDR)] * 3)
    rec = bags.read_bag(tmp_path / 'bag')
    assert len(rec.heading) == 5
    assert any('skipped 3 of 8' in w and '/heading' in w for w in rec.warnings)


def test_only_undecodable_messages_on_a_required_topic(tmp_path: Path) -> None:
    write_raw_bag(tmp_path, 'mcap', [('/boat/wind', 'autopilot_ros/msg/Wind', '', BAD_CDR)] * 2)
    with pytest.raises(bags.BagError, match=r'none of its 2 messages could be decoded'):
        bags.read_bag(tmp_path / 'bag', {'wind': '/boat/wind'})


def test_unknown_types_on_other_topics_are_ignored(tmp_path: Path) -> None:
    msgdef = 'float64 x\n'
    write_raw_bag(tmp_path, 'sqlite3', [('/camera/fancy', 'my_msgs/msg/Fancy', msgdef,
                                         b'\x00\x01\x00\x00' + bytes(8))])
    rec = bags.read_bag(tmp_path / 'bag')
    assert len(rec.imu) == 5
    assert any('unknown type' in w and '/camera/fancy' in w for w in rec.warnings)


def test_bag_written_with_another_heading_definition(tmp_path: Path) -> None:
    """An older/newer Heading.msg in the bag: decoded with the bag's own definition."""
    store = bags._base_store()
    typedefs = bags._package_typedefs()
    typedefs.pop('autopilot_ros/msg/Heading')
    store.register(typedefs)
    store.register(get_types_from_msg(
        'std_msgs/Header header\nfloat64 heading\nfloat64 variation\nbool is_true_north\n',
        'autopilot_ros/msg/Heading'))
    with bags.BagWriter(tmp_path / 'bag', 'mcap', typestore=store) as writer:
        write_inputs(writer, skip='heading')
        msg = store.types['autopilot_ros/msg/Heading'](
            header=writer.header(T0), heading=4.0, variation=0.1, is_true_north=True)
        writer.write('/heading', msg, int(T0 * 1e9))
    rec = bags.read_bag(tmp_path / 'bag')
    assert rec.heading == [HeadingSample(pytest.approx(T0), 4.0)]
    assert any("bag's own definition" in w for w in rec.warnings)


# RudderCommand.msg before it carried `sequence` and `valid_for` (the command contract).
OLD_RUDDER_COMMAND = """std_msgs/Header header
float64 command
bool engaged
uint8 policy
uint8 POLICY_STANDBY=0
uint8 POLICY_MODEL=1
uint8 POLICY_FALLBACK_PID=2
"""


def test_bag_written_with_the_rudder_command_before_sequence_and_valid_for(
        tmp_path: Path) -> None:
    """rudder_command bags of older versions still read: the reader takes header and command."""
    store = bags._base_store()
    typedefs = bags._package_typedefs()
    typedefs.pop('autopilot_ros/msg/RudderCommand')
    store.register(typedefs)
    store.register(get_types_from_msg(OLD_RUDDER_COMMAND, 'autopilot_ros/msg/RudderCommand'))
    assert 'sequence' not in {name for name, _ in
                              store.fielddefs['autopilot_ros/msg/RudderCommand'][1]}
    with bags.BagWriter(tmp_path / 'bag', 'mcap', typestore=store) as writer:
        write_inputs(writer)
        cmd = store.types['autopilot_ros/msg/RudderCommand'](
            header=writer.header(T0 + 0.5), command=0.4, engaged=True, policy=2)
        writer.write('/rudder_command', cmd, int((T0 + 0.5) * 1e9))
    rec = bags.read_bag(tmp_path / 'bag')
    assert rec.rudder_command == [RudderSample(pytest.approx(T0 + 0.5), 0.4)]
    assert any("bag's own definition" in w and '/rudder_command' in w for w in rec.warnings)


# --------------------------------------------------------------------------- cut recordings


def test_truncated_mcap_yields_a_prefix(tmp_path: Path) -> None:
    """A power cut mid-recording: no summary, no footer, the last chunk half written."""
    data = write_bag(tmp_path / 'bag', 'mcap', make_samples(n_imu=6000, every=5))
    path = tmp_path / 'bag' / 'bag.mcap'
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * 0.6)])
    for target in (tmp_path / 'bag', path):
        rec = bags.read_bag(target)
        assert 0 < len(rec.imu) < len(data['imu'])
        assert_samples_equal(rec.imu, data['imu'][:len(rec.imu)])
        assert_samples_equal(rec.heading, data['heading'][:len(rec.heading)])
        assert any('incomplete' in w and 'cut short' in w for w in rec.warnings)
    # And without metadata.yaml too (the recorder writes it last).
    (tmp_path / 'bag' / 'metadata.yaml').unlink()
    rec = bags.read_bag(tmp_path / 'bag')
    assert 0 < len(rec.imu) < len(data['imu'])


def test_truncated_db3_yields_a_prefix(tmp_path: Path) -> None:
    data = write_bag(tmp_path / 'bag', 'sqlite3', make_samples(n_imu=3000, every=5))
    path = tmp_path / 'bag' / 'bag.db3'
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * 0.6)])
    rec = bags.read_bag(tmp_path / 'bag')
    assert 0 < len(rec.imu) < len(data['imu'])
    assert_samples_equal(rec.imu, data['imu'][:len(rec.imu)])
    assert any('damaged' in w for w in rec.warnings)


def test_db3_without_metadata_yaml_still_reads(tmp_path: Path) -> None:
    data = write_bag(tmp_path / 'bag', 'sqlite3')
    (tmp_path / 'bag' / 'metadata.yaml').unlink()
    rec = bags.read_bag(tmp_path / 'bag')
    for key, want in data.items():
        assert_samples_equal(rec.samples[key], want)
    assert any('no metadata.yaml' in w for w in rec.warnings)


@pytest.mark.parametrize('storage', STORAGES)
def test_metadata_counts_that_disagree_with_the_storage(tmp_path: Path, storage: str) -> None:
    data = write_bag(tmp_path / 'bag', storage)
    meta = tmp_path / 'bag' / 'metadata.yaml'
    n_imu, total = len(data['imu']), sum(len(x) for x in data.values())
    text = meta.read_text()
    assert f'message_count: {n_imu}\n' in text and f'message_count: {total}\n' in text
    meta.write_text(text.replace(f'message_count: {n_imu}\n', 'message_count: 7\n')
                    .replace(f'message_count: {total}\n', 'message_count: 9\n'))
    rec = bags.read_bag(tmp_path / 'bag')
    assert len(rec.imu) == n_imu
    assert any('/imu' in w and 'says 7 messages' in w for w in rec.warnings)
    assert any('says 9 messages in total' in w for w in rec.warnings)


def test_unreadable_metadata_yaml_falls_back_to_the_storage(tmp_path: Path) -> None:
    write_bag(tmp_path / 'bag', 'mcap')
    (tmp_path / 'bag' / 'metadata.yaml').write_text('rosbag2_bagfile_information: [\n')
    rec = bags.read_bag(tmp_path / 'bag')
    assert len(rec.imu) == 60
    assert any('could not open' in w for w in rec.warnings)


def test_leftover_write_ahead_log_is_merged(tmp_path: Path) -> None:
    """A recorder in WAL mode killed mid-run: committed rows sit in bag.db3-wal."""
    data = write_bag(tmp_path / 'bag', 'sqlite3')
    db3 = tmp_path / 'bag' / 'bag.db3'
    code = (
        'import os, sqlite3, sys\n'
        'c = sqlite3.connect(sys.argv[1], isolation_level=None)\n'
        'c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA wal_autocheckpoint=0")\n'
        'rows = c.execute("SELECT m.topic_id, m.timestamp + 1000000000000, m.data FROM messages m '
        'JOIN topics t ON t.id = m.topic_id WHERE t.name = \'/rudder_angle\'").fetchall()\n'
        'c.execute("BEGIN")\n'
        'c.executemany("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)", '
        'rows)\n'
        'c.execute("COMMIT")\n'
        'os._exit(0)\n'  # no close: the log stays, as after a power cut
    )
    subprocess.run([sys.executable, '-c', code, str(db3)], check=True)
    assert (tmp_path / 'bag' / 'bag.db3-wal').stat().st_size > 0
    before = db3.read_bytes()
    rec = bags.read_bag(tmp_path / 'bag')
    assert len(rec.rudder_angle) == 2 * len(data['rudder_angle'])
    assert any('write-ahead log' in w for w in rec.warnings)
    assert db3.read_bytes() == before  # the user's files are not modified


# --------------------------------------------------------------------------- many bags, writer


def test_read_bags_walks_folders(tmp_path: Path) -> None:
    write_bag(tmp_path / 'trip1' / 'a', 'mcap')
    write_bag(tmp_path / 'trip1' / 'b', 'sqlite3')
    write_bag(tmp_path / 'c', 'mcap')
    shutil.copy(tmp_path / 'c' / 'c.mcap', tmp_path / 'loose.mcap')
    (tmp_path / 'readme.txt').write_text('not a bag')
    found = bags.find_bags([tmp_path])
    assert [p.name for p in found] == ['c', 'loose.mcap', 'a', 'b']  # path order
    recs = bags.read_bags([tmp_path], bags.TopicMap())
    assert [r.storage_id for r in recs] == ['mcap', 'mcap', 'mcap', 'sqlite3']
    assert all(len(r.imu) == 60 for r in recs)


def test_read_bags_with_a_bad_bag(tmp_path: Path) -> None:
    write_bag(tmp_path / 'good', 'mcap')
    (tmp_path / 'bad').mkdir()
    (tmp_path / 'bad' / 'bad.db3').write_bytes(b'junk' * 100)
    with pytest.raises(bags.BagError, match=r'bad\.db3'):
        bags.read_bags(tmp_path)
    recs = bags.read_bags(tmp_path, skip_bad=True)
    assert len(recs) == 1 and any('bad.db3' in w for w in recs[0].warnings)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(bags.BagError, match=r'no rosbag2 bags found'):
        bags.read_bags([tmp_path / 'empty'])


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    write_bag(tmp_path / 'bag', 'mcap')
    with pytest.raises(bags.BagError, match=r'exists already'):
        bags.BagWriter(tmp_path / 'bag', 'mcap')
    with pytest.raises(ValueError, match=r'storage'):
        bags.BagWriter(tmp_path / 'other', 'rosbag1')


@pytest.mark.parametrize('storage', STORAGES)
def test_written_bag_is_standard_rosbag2(tmp_path: Path, storage: str) -> None:
    """What `ros2 bag info` reads: metadata.yaml v9, CDR, typed topics with hashes."""
    from rosbags.rosbag2 import Reader

    write_bag(tmp_path / 'bag', storage)
    text = (tmp_path / 'bag' / 'metadata.yaml').read_text()
    assert 'version: 9' in text and f'storage_identifier: {storage}' in text
    with Reader(tmp_path / 'bag') as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {'/imu': 'sensor_msgs/msg/Imu', '/heading': 'autopilot_ros/msg/Heading',
                         '/wind': 'autopilot_ros/msg/Wind',
                         '/speed': 'geometry_msgs/msg/TwistStamped',
                         '/rudder_angle': 'autopilot_ros/msg/RudderAngle'}
        assert all(c.digest.startswith('RIHS01_') for c in reader.connections)
        assert all(c.ext.serialization_format == 'cdr' for c in reader.connections)
        store = bags.make_typestore()
        conn = next(c for c in reader.connections if c.topic == '/imu')
        _, _, raw = next(reader.messages([conn]))
        msg = store.deserialize_cdr(raw, 'sensor_msgs/msg/Imu')
        assert msg.header.frame_id == 'base_link'
        conn = next(c for c in reader.connections if c.topic == '/heading')
        _, _, raw = next(reader.messages([conn]))
        assert store.deserialize_cdr(raw, 'autopilot_ros/msg/Heading').is_true_north is False


# ------------------------------------------------------------------------ input that cannot hurt


@pytest.mark.parametrize('storage', STORAGES)
def test_one_flipped_stamp_is_dropped_not_a_recording_of_years(tmp_path: Path,
                                                                storage: str) -> None:
    """A flipped bit in one IMU header stamp (+2^40 ns, 18 min): dropped with a warning."""
    data = make_samples()
    good = data['imu'][17]
    data['imu'][17] = replace_stamp(good, good.stamp + 2**40 / 1e9)
    events = sorted((s for lst in data.values() for s in lst), key=lambda s: s.stamp)
    with bags.BagWriter(tmp_path / 'bag', storage) as writer:
        for sample in events:  # received when it was really sent
            stamp = good.stamp if sample is data['imu'][17] else sample.stamp
            writer.write_sample(sample, stamp_ns=round(stamp * 1e9))
    rec = bags.read_bag(tmp_path / 'bag')
    assert len(rec.imu) == len(data['imu']) - 1
    assert data['imu'][17].stamp not in [s.stamp for s in rec.imu]
    assert rec.duration == pytest.approx(0.02 * (len(data['imu']) - 1))
    assert any('/imu: dropped 1 of 60 messages whose header stamp is implausible' in w
               for w in rec.warnings)
    assert rec.message_counts['/imu'] == 60  # read, then dropped: the count says so


def test_stamps_on_another_clock_are_kept_and_a_flip_among_them_is_not(tmp_path: Path) -> None:
    """use_sim_time on the nodes only: header stamps from 0, receive times from T0.

    Every stamp is far off the receive clock, but in series with its neighbours: kept. One
    of them flipped by years is off both clocks: dropped.
    """
    data = make_samples()
    events = sorted((s for lst in data.values() for s in lst), key=lambda s: s.stamp)
    with bags.BagWriter(tmp_path / 'bag', 'mcap') as writer:
        for k, sample in enumerate(events):
            sim = replace_stamp(sample, sample.stamp - T0 + 5.0)
            if sample is data['wind'][3]:
                sim = replace_stamp(sample, sim.stamp + 2**30)  # bit 30 of sec: 34 years
            writer.write_sample(sim, stamp_ns=round(T0 * 1e9) + k * 1_000_000)
    rec = bags.read_bag(tmp_path / 'bag')
    assert len(rec.imu) == 60 and len(rec.heading) == 12 and len(rec.wind) == 11
    assert rec.start_time == pytest.approx(5.0) and rec.duration == pytest.approx(1.18)
    assert [w for w in rec.warnings if 'implausible' in w] == [
        w for w in rec.warnings if w.startswith('/wind: dropped 1 of 12')]


def replace_stamp(sample: object, stamp: float) -> object:
    import dataclasses

    return dataclasses.replace(sample, stamp=stamp)


def test_os_errors_reading_a_bag_are_one_bag_error(tmp_path: Path) -> None:
    """An OS error (here one that root meets too: a name too long) is one clear line."""
    too_long = tmp_path / ('b' * 300)
    for call in (bags.read_bag, bags.read_bags, lambda p: bags.find_bags([p])):
        with pytest.raises(bags.BagError) as err:
            call(too_long)
        assert str(too_long) in str(err.value) and 'File name too long' in str(err.value)
        assert '\n' not in str(err.value)


def test_unreadable_bag_folder_is_one_bag_error(tmp_path: Path) -> None:
    """chmod 000 on a bag folder; skipped where permissions do not bind (root)."""
    import os

    write_bag(tmp_path / 'bag', 'mcap')
    os.chmod(tmp_path / 'bag', 0)
    try:
        try:
            os.listdir(tmp_path / 'bag')
        except PermissionError:
            pass
        else:
            pytest.skip('permissions do not bind here (root); see the simulated walk test')
        with pytest.raises(bags.BagError, match=r'/bag: cannot read.*Permission denied'):
            bags.read_bag(tmp_path / 'bag')
    finally:
        os.chmod(tmp_path / 'bag', 0o755)


def test_unreadable_folders_in_the_walk_are_listed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """os.walk skips a folder it cannot list: say so (simulated: root reads any folder)."""
    import os

    write_bag(tmp_path / 'trip' / 'a', 'mcap')
    (tmp_path / 'locked').mkdir()
    real_scandir = os.scandir

    def scandir(path: object = '.') -> object:
        if Path(os.fsdecode(path)).name == 'locked':
            raise PermissionError(13, 'Permission denied', os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, 'scandir', scandir)
    unreadable: list[str] = []
    assert bags.find_bags([tmp_path], unreadable=unreadable) == [tmp_path / 'trip' / 'a']
    assert unreadable == [f'{tmp_path / "locked"} (Permission denied)']
    recs = bags.read_bags(tmp_path)
    assert recs[0].warnings == [f'skipped an unreadable folder: {tmp_path / "locked"} '
                                '(Permission denied); bags in it were not read. Check its '
                                'permissions.']
    with pytest.raises(bags.BagError, match=r'no rosbag2 bags found under .*could not read '
                       r'folder\(s\): .*locked \(Permission denied\)'):
        bags.read_bags(tmp_path / 'locked')


def test_a_pipe_in_place_of_the_storage_file_does_not_hang(tmp_path: Path) -> None:
    """metadata.yaml names bag.mcap, and bag.mcap is a FIFO: opening it would wait forever."""
    import os

    write_bag(tmp_path / 'bag', 'mcap')
    (tmp_path / 'bag' / 'bag.mcap').unlink()
    os.mkfifo(tmp_path / 'bag' / 'bag.mcap')
    with pytest.raises(bags.BagError, match=r'bag\.mcap is not a regular file'):
        bags.read_bag(tmp_path / 'bag')
    with pytest.raises(bags.BagError, match=r'not a regular file or directory'):
        bags.read_bag(tmp_path / 'bag' / 'bag.mcap')


# The fuzz driver runs in a child process under an address-space limit: a damaged bag that
# made the reader (or the replay) allocate without bound ends as a MemoryError, a crash.
FUZZ_MEMORY_LIMIT = 2 << 30
FUZZ_CASE_SECONDS = 10.0
FUZZ_DRIVER = r"""
import hashlib, json, random, resource, shutil, sys, time, traceback
from pathlib import Path
sys.path.append(sys.argv[1])  # for test_bags' bag makers (cwd is not the repo)
import test_bags
from autopilot_ros.training import bags
from autopilot_ros.training.dataset import DatasetConfig, DatasetError, build_recording

work, seed, per_storage = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}

def damage(rng, raw):
    raw = bytearray(raw)
    kind = rng.choice(['flip', 'flip', 'truncate', 'zero', 'swap'])
    if not raw:
        return kind, bytes(raw)
    if kind == 'flip':
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(raw))
            raw[i] ^= 1 << rng.randrange(8)
    elif kind == 'truncate':
        del raw[rng.randrange(len(raw)):]
    elif kind == 'zero':
        i = rng.randrange(len(raw))
        raw[i:i + rng.randint(1, 256)] = bytes(len(raw[i:i + rng.randint(1, 256)]))
    else:
        n = rng.randint(1, 16)
        i, j = rng.randrange(len(raw)), rng.randrange(len(raw))
        a, b = raw[i:i + n], raw[j:j + n]
        if len(a) == len(b):
            raw[i:i + n], raw[j:j + n] = b, a
    return kind, bytes(raw)

config = DatasetConfig(fixed_mode='compass', fixed_target=1.0)
counts = {'read': 0, 'refused': 0, 'crashed': 0}
crashes, slowest, kinds, replay_refused = [], 0.0, {}, 0
pristine = {}
for storage in ('sqlite3', 'mcap'):
    bag = work / f'pristine_{storage}'
    test_bags.write_bag(bag, storage, test_bags.make_samples(n_imu=200, every=5))
    pristine[bag] = digest(bag)
rng = random.Random(seed)
start = time.perf_counter()
for case in range(2 * per_storage):
    storage = ('sqlite3', 'mcap')[case % 2]
    bag = work / f'pristine_{storage}'
    target = work / f'case_{case}'
    shutil.copytree(bag, target)
    storage_file = target / f'pristine_{storage}{".db3" if storage == "sqlite3" else ".mcap"}'
    victim = storage_file if rng.random() < 0.7 else target / 'metadata.yaml'
    kind, raw = damage(rng, victim.read_bytes())
    victim.write_bytes(raw)
    kinds[kind] = kinds.get(kind, 0) + 1
    path = storage_file if victim == storage_file and rng.random() < 0.3 else target
    before = digest(target)
    t0 = time.perf_counter()
    try:
        rec = bags.read_bag(path)
        try:
            build_recording(rec, config)
        except DatasetError:
            replay_refused += 1
        counts['read'] += 1
    except bags.BagError as exc:
        assert '\n' not in str(exc), str(exc)
        counts['refused'] += 1
    except BaseException as exc:  # noqa: BLE001 - what the fuzz is looking for
        counts['crashed'] += 1
        crashes.append(f'case {case} ({storage}, {kind} {victim.name}): '
                       f'{type(exc).__name__}: {exc}'[:300] + traceback.format_exc()[-600:])
    slowest = max(slowest, time.perf_counter() - t0)
    assert digest(target) == before, f'case {case}: the reader modified the damaged bag'
    shutil.rmtree(target)
untouched = all(digest(bag) == want for bag, want in pristine.items())
print(json.dumps({**counts, 'cases': 2 * per_storage, 'kinds': kinds,
                  'replay_refused': replay_refused,
                  'seconds': round(time.perf_counter() - start, 1),
                  'slowest_case_s': round(slowest, 2), 'untouched': untouched,
                  'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                  'crashes': crashes[:5]}))
"""


def test_fuzzed_bags_read_or_refuse_within_bounds(tmp_path: Path) -> None:
    """Seeded damage to real bags of both storages: read (with warnings) or BagError only.

    Bit flips, truncations, zeroed ranges and swapped bytes, in the storage file or in
    metadata.yaml; every bag that reads is also replayed into windows. Nothing else may be
    raised, no case may take long or allocate beyond the child's address-space limit, and
    neither the damaged copies nor the originals are modified.
    """
    import json
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (FUZZ_MEMORY_LIMIT, FUZZ_MEMORY_LIMIT))

    run = subprocess.run(
        [sys.executable, '-c', FUZZ_DRIVER, str(Path(__file__).parent), str(tmp_path), '20260',
         '150'], capture_output=True, text=True, timeout=240, preexec_fn=limit, cwd=tmp_path,
        env={**__import__('os').environ, 'OMP_NUM_THREADS': '1'})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"\nfuzz: {result['cases']} cases in {result['seconds']} s: read {result['read']}, "
          f"refused {result['refused']}, crashed {result['crashed']} (slowest case "
          f"{result['slowest_case_s']} s, peak {result['peak_rss_mb']} MB; replay refused "
          f"{result['replay_refused']} of the read; damage {result['kinds']})")
    assert result['crashed'] == 0, '\n'.join(result['crashes'])
    assert result['read'] + result['refused'] == result['cases'] == 300
    assert result['read'] > 0 and result['refused'] > 0
    assert result['slowest_case_s'] < FUZZ_CASE_SECONDS
    assert result['untouched']
