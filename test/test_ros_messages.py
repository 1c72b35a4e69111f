"""What the node publishes, built by plain functions: diagnostics, rviz markers, status.

No DDS here: these check the messages an operator reads, from a Pilot in a known state.
"""

import math

import pytest

pytest.importorskip('rclpy')  # ROS: `make test`; `make test-core` (pip route) has none
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import Imu

from autopilot_ros.conventions import GRAVITY
from autopilot_ros.pilot import POLICY_FALLBACK_PID, POLICY_MODEL, Pilot, PilotOutput
from autopilot_ros.policy import OnnxPolicy
from autopilot_ros.ros_messages import (
    BASE_FRAME,
    command_msg,
    diagnostics_msg,
    markers_msg,
    message_class,
    receive_rate,
    status_msg,
)
from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SpeedSample,
    WindSample,
)

STAMP = Time(sec=100)


def output(**changes) -> PilotOutput:
    values = dict(stamp=10.0, command=0.4, raw_command=0.5, engaged=True,
                  policy=POLICY_FALLBACK_PID, reason='window filling 3/20', mode='compass',
                  target=1.0, target_heading=1.0, heading_error=0.2, window_fill=3,
                  stale_inputs=['speed'], inference_time=math.nan)
    values.update(changes)
    return PilotOutput(**values)


def fed_pilot(now: float, *, imu_age: float = 0.0, speed: bool = True) -> Pilot:
    pilot = Pilot()
    pilot.update(ImuSample(now - imu_age, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, GRAVITY))
    pilot.update(HeadingSample(now, 1.0))
    pilot.update(WindSample(now, 0.5, 7.0))
    pilot.update(RudderSample(now, 0.0))
    if speed:
        pilot.update(SpeedSample(now, 3.0))
    return pilot


def statuses(array) -> dict[str, DiagnosticStatus]:
    return {s.name: s for s in array.status}


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_a_stale_required_input_is_an_error_and_a_stale_optional_one_a_warning():
    now = 100.0
    fresh = statuses(diagnostics_msg(fed_pilot(now), None, now=now, stamp=STAMP,
                                     rates={'imu': 50.0}))
    assert fresh['autopilot: inputs'].level == DiagnosticStatus.OK
    assert values(fresh['autopilot: inputs'])['imu rate Hz'] == '50.0'

    no_speed = statuses(diagnostics_msg(fed_pilot(now, speed=False), None, now=now,
                                        stamp=STAMP, rates={}))
    assert no_speed['autopilot: inputs'].level == DiagnosticStatus.WARN
    assert values(no_speed['autopilot: inputs'])['speed age s'] == 'inf'

    old_imu = statuses(diagnostics_msg(fed_pilot(now, imu_age=0.6), None, now=now,
                                       stamp=STAMP, rates={}))
    assert old_imu['autopilot: inputs'].level == DiagnosticStatus.ERROR
    assert values(old_imu['autopilot: inputs'])['imu age s'] == '0.60'


def test_a_loaded_model_that_is_not_steering_while_engaged_is_a_warning_with_the_reason(
        model_factory):
    pilot = fed_pilot(100.0)
    model = OnnxPolicy(str(model_factory()), rate_hz=10.0)
    pilot.set_policy(model)
    array = diagnostics_msg(pilot, output(), now=100.0, stamp=STAMP, rates={})
    status = statuses(array)['autopilot: pilot']
    assert status.level == DiagnosticStatus.WARN
    assert status.message == 'window filling 3/20'
    assert values(status)['model'] == model.identity and model.sha256[:12] in model.identity
    assert values(status)['inference p99 ms'] == 'nan'  # no tick has run the model yet
    steering = diagnostics_msg(pilot, output(policy=POLICY_MODEL, reason=''), now=100.0,
                               stamp=STAMP, rates={})
    assert statuses(steering)['autopilot: pilot'].level == DiagnosticStatus.OK
    pd_only = diagnostics_msg(fed_pilot(100.0), output(), now=100.0, stamp=STAMP, rates={})
    assert statuses(pd_only)['autopilot: pilot'].level == DiagnosticStatus.OK


def _end(marker) -> tuple[float, float]:
    return marker.points[1].x - marker.points[0].x, marker.points[1].y - marker.points[0].y


def test_markers_point_to_starboard_for_a_target_wind_and_rudder_to_starboard():
    """Body frame x forward, y LEFT: starboard is negative y."""
    out = output(heading_error=math.radians(30), command=0.5)
    markers = {m.id: m for m in markers_msg(out, WindSample(0.0, math.radians(60), 8.0),
                                            STAMP).markers}
    assert all(m.header.frame_id == BASE_FRAME for m in markers.values())
    bow, target, wind, rudder = (_end(markers[i]) for i in range(4))
    assert bow[0] > 0 and abs(bow[1]) < 1e-9
    assert target[0] > 0 and target[1] < 0  # 30 deg to starboard
    assert wind[1] < 0  # wind from starboard
    assert rudder[0] < 0 and rudder[1] < 0  # blade aft and to starboard: turns to starboard
    assert 'compass' in markers[4].text and '+30 deg' in markers[4].text
    unknown = markers_msg(output(heading_error=math.nan), None, STAMP).markers
    assert {m.id for m in unknown} == {0, 3, 4}  # no target or wind arrow without data


def test_status_and_command_carry_the_tick_and_name_the_model(model_factory):
    model = OnnxPolicy(str(model_factory()), rate_hz=10.0)
    out = output(policy=POLICY_MODEL, stale_inputs=['speed', 'rudder_angle'])
    status = status_msg(out, STAMP, model)
    assert (status.mode, status.policy, status.window_fill) == ('compass', POLICY_MODEL, 3)
    assert status.model_sha256 == model.sha256 and status.model_path == model.path
    assert list(status.stale_inputs) == ['speed', 'rudder_angle']
    assert status.header.frame_id == BASE_FRAME
    assert status_msg(out, STAMP, None).model_path == ''
    command = command_msg(out, STAMP, sequence=7, valid_for=0.3)
    assert (command.command, command.engaged, command.policy) == (
        out.command, True, POLICY_MODEL)
    assert command.sequence == 7 and math.isclose(command.valid_for, 0.3, rel_tol=1e-6)
    assert command.header.stamp == STAMP and command.header.frame_id == BASE_FRAME


def test_the_command_contract_fields_and_the_final_release():
    """sequence wraps like the uint32 it is; valid_for is 3 periods; release lets go."""
    from autopilot_ros.pilot import POLICY_STANDBY
    from autopilot_ros.status import command_valid_for, released_output

    assert command_valid_for(10.0) == pytest.approx(0.3)
    assert command_valid_for(20.0) == pytest.approx(0.15)
    assert command_msg(output(), STAMP, sequence=2 ** 32 + 5, valid_for=0.3).sequence == 5
    final = command_msg(released_output(10.0, 'SIGTERM received'), STAMP, sequence=42,
                        valid_for=0.3)
    assert (final.engaged, final.command, final.policy, final.sequence) == (
        False, 0.0, POLICY_STANDBY, 42)


def test_rates_and_message_classes_come_from_plain_data():
    assert receive_rate([]) == 0.0 and receive_rate([1.0, 1.0]) == 0.0
    assert receive_rate([0.0, 0.5, 1.0]) == 2.0
    assert message_class('sensor_msgs/msg/Imu') is Imu


def test_a_second_publisher_on_an_input_topic_is_a_warning():
    now = 100.0
    inputs = statuses(diagnostics_msg(fed_pilot(now), None, now=now, stamp=STAMP, rates={},
                                      publishers={'imu': 1, 'heading': 2}))['autopilot: inputs']
    assert inputs.level == DiagnosticStatus.WARN
    assert 'more than one publisher on heading (2)' in inputs.message
    assert values(inputs)['heading publishers'] == '2'
