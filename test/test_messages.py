"""Every custom message crosses real DDS between two rclpy nodes unchanged."""

import math

import pytest

pytest.importorskip('rclpy')  # ROS: `make test`; `make test-core` (pip route) has none
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from autopilot_ros.msg import AutopilotStatus, Heading, RudderAngle, RudderCommand, Wind


def _status() -> AutopilotStatus:
    msg = AutopilotStatus()
    msg.mode = AutopilotStatus.MODE_WIND_TWA
    msg.engaged = True
    msg.target = -2.5
    msg.target_heading = 4.0
    msg.heading_error = -0.25
    msg.command = -0.4
    msg.raw_command = math.nan
    msg.policy = AutopilotStatus.POLICY_FALLBACK_PID
    msg.reason = 'window filling 3/20'
    msg.model_path = '/models/a.onnx'
    msg.model_sha256 = 'ab' * 32
    msg.inference_time = 1.5e-4
    msg.window_fill = 3
    msg.stale_inputs = ['wind', 'speed']
    return msg


CASES = {
    'Heading': (Heading, lambda: Heading(heading=6.2, is_true_north=True)),
    'Wind': (Wind, lambda: Wind(angle=-1.2, speed=7.5)),
    'RudderAngle': (RudderAngle, lambda: RudderAngle(angle=-0.75)),
    'RudderCommand': (RudderCommand, lambda: RudderCommand(
        command=0.3, engaged=True, policy=RudderCommand.POLICY_MODEL)),
    'AutopilotStatus': (AutopilotStatus, _status),
}


def _fields_equal(a, b) -> bool:
    for name in a.get_fields_and_field_types():
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, float) and math.isnan(x):
            if not math.isnan(y):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize('name', sorted(CASES))
def test_message_round_trips_over_dds(name, spinner, wait):
    msg_type, make = CASES[name]
    sender = spinner.add(Node(f'sender_{name.lower()}', context=spinner.executor.context))
    receiver = spinner.add(Node(f'receiver_{name.lower()}', context=spinner.executor.context))
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    received = []
    receiver.create_subscription(msg_type, f'roundtrip_{name.lower()}', received.append, qos)
    pub = sender.create_publisher(msg_type, f'roundtrip_{name.lower()}', qos)
    assert wait(lambda: pub.get_subscription_count() > 0), 'subscriber never matched'
    sent = make()
    sent.header.stamp.sec = 1234
    sent.header.stamp.nanosec = 5678
    sent.header.frame_id = 'base_link'
    pub.publish(sent)
    assert wait(lambda: received), f'{name} never arrived'
    assert _fields_equal(sent, received[0])


def test_every_measurement_and_command_has_a_header():
    for msg_type, _ in CASES.values():
        assert msg_type.get_fields_and_field_types()['header'] == 'std_msgs/Header'


def test_policy_constants_match_the_pure_core():
    from autopilot_ros import pilot
    for msg_type in (RudderCommand, AutopilotStatus):
        assert msg_type.POLICY_STANDBY == pilot.POLICY_STANDBY
        assert msg_type.POLICY_MODEL == pilot.POLICY_MODEL
        assert msg_type.POLICY_FALLBACK_PID == pilot.POLICY_FALLBACK_PID


def test_samples_go_out_and_come_back_the_same_through_rclpy_and_rosbags():
    """sim_node publishes with the mapping the bag writer uses; CDR bytes read by both."""
    from rclpy.serialization import deserialize_message, serialize_message

    from autopilot_ros.inputs import INPUTS, input_of
    from autopilot_ros.ros_messages import message_class
    from autopilot_ros.samples import (
        HeadingSample,
        ImuSample,
        RudderSample,
        SpeedSample,
        WindSample,
    )
    from autopilot_ros.training.bags import make_typestore

    store = make_typestore()
    samples = [
        ImuSample(12.5, 0.3, -0.1, 0.02, -0.03, -0.25, 0.5, -0.3, 9.81),
        HeadingSample(12.5, 5.9),
        WindSample(12.5, -0.7, 6.5),
        SpeedSample(12.5, 2.75),
        RudderSample(12.5, -0.4),
    ]
    assert {type(s) for s in samples} == {spec.sample_type for spec in INPUTS}
    for sample in samples:
        spec = input_of(sample)
        cls = message_class(spec.msg_type)
        msg = cls()
        spec.fill_msg(msg, sample)
        msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 500_000_000
        data = serialize_message(msg)
        for got in (spec.from_msg(deserialize_message(data, cls)),
                    spec.from_msg(store.deserialize_cdr(data, spec.msg_type))):
            assert type(got) is type(sample)
            for field in sample.__slots__:
                assert getattr(got, field) == pytest.approx(getattr(sample, field), abs=1e-9)
