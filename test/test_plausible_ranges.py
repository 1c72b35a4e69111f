"""A boat's own plausible spans: per-boat ranges narrow the input table's, never widen it.

The pure checks run without ROS; the node test sets the spans the way `ros2 param set`
sends them (an integer list, a mixed list as a string) and feeds readings over real DDS.
"""

import math

import pytest

from autopilot_ros.inputs import (
    INPUT_BY_NAME,
    PER_BOAT_RANGES,
    Rejected,
    check_sample,
    validate_ranges,
)
from autopilot_ros.pilot import Pilot, PilotConfig
from autopilot_ros.safety import SafetyLimits
from autopilot_ros.samples import RudderSample, SpeedSample, WindSample


def test_per_boat_spans_are_the_tables_and_only_where_boats_differ():
    # Boats differ in speed, wind they sail in and rudder sensor travel; not in physics.
    assert set(PER_BOAT_RANGES) == {'wind.aws', 'speed.stw', 'rudder_angle.angle'}
    for key, span in PER_BOAT_RANGES.items():
        name, field = key.split('.')
        assert [r.span for r in INPUT_BY_NAME[name].ranges if r.field == field] == [span]
    assert not any(r.per_boat for r in INPUT_BY_NAME['imu'].ranges)


def test_a_boats_span_drops_what_the_table_would_pass():
    fast = SpeedSample(stamp=1.0, stw=15.0)
    assert check_sample(fast) is None  # the table: up to 30 m/s
    reason, detail = check_sample(fast, {'speed.stw': (0.0, 12.0)})
    assert reason is Rejected.IMPLAUSIBLE and detail == 'stw=15 not in [0, 12]'
    assert check_sample(SpeedSample(stamp=1.0, stw=11.9), {'speed.stw': (0.0, 12.0)}) is None
    # Another input's span does not apply; the table's still does.
    assert check_sample(WindSample(stamp=1.0, awa=0.5, aws=40.0), {'speed.stw': (0, 12)}) is None
    assert check_sample(WindSample(stamp=1.0, awa=0.5, aws=80.0),
                        {'speed.stw': (0, 12)})[0] is Rejected.IMPLAUSIBLE


@pytest.mark.parametrize('ranges, words', [
    ({'speed.stw': (0.0, 40.0)}, r'inside \[-5, 30\]'),  # wider than the table
    ({'speed.stw': (12.0, 0.0)}, 'ordered'),
    ({'speed.stw': (3.0, 3.0)}, 'ordered'),
    ({'speed.stw': (0.0, math.nan)}, 'two finite numbers'),
    ({'speed.stw': (0.0, 1.0, 2.0)}, 'two finite numbers'),
    ({'imu.accel_x': (-5.0, 5.0)}, 'no per-boat plausible range'),
])
def test_spans_a_boat_may_not_set(ranges, words):
    with pytest.raises(ValueError, match=words):
        validate_ranges(ranges)
    with pytest.raises(ValueError, match=words):
        SafetyLimits(plausible=ranges).validate()


def test_the_pilot_uses_its_configs_spans_and_a_reconfigure_changes_them():
    pilot = Pilot()
    assert pilot.update(RudderSample(stamp=1.0, angle=1.1))  # past the stops: still a reading
    narrow = PilotConfig(limits=SafetyLimits(plausible={'rudder_angle.angle': (-1.0, 1.0)}))
    pilot.reconfigure(config=narrow)
    assert not pilot.update(RudderSample(stamp=1.1, angle=1.1))
    assert pilot.rejected_by_reason == {Rejected.IMPLAUSIBLE.value: 1}
    assert pilot.inputs.rudder_angle.angle == 1.1  # the dropped one changed nothing
    with pytest.raises(ValueError):
        pilot.reconfigure(config=PilotConfig(
            limits=SafetyLimits(plausible={'rudder_angle.angle': (-2.0, 2.0)})))
    assert not pilot.update(RudderSample(stamp=1.2, angle=1.1))  # the refused change: none


@pytest.mark.dds
def test_node_takes_a_boats_span_as_the_cli_sends_it(spinner, wait):
    pytest.importorskip('rclpy')
    from geometry_msgs.msg import TwistStamped
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data

    from autopilot_ros.node import AutopilotNode

    ctx = spinner.executor.context
    node = spinner.add(AutopilotNode(context=ctx, parameter_overrides=[
        Parameter('model_path', value='none')]))
    client_node = spinner.add(Node('helm_station', context=ctx))
    client = client_node.create_client(SetParameters, '/autopilot/set_parameters')
    assert client.wait_for_service(timeout_sec=10.0)
    speed_pub = client_node.create_publisher(TwistStamped, 'speed', qos_profile_sensor_data)

    def set_span(value: ParameterValue) -> bool:
        request = SetParameters.Request(parameters=[
            ParameterMsg(name='plausible.speed.stw', value=value)])
        future = client.call_async(request)
        assert wait(future.done, timeout=15.0)
        return future.result().results[0].successful

    def rejected_after(stw: float) -> int:
        before = node.pilot.rejected_by_reason[Rejected.IMPLAUSIBLE.value]
        msg = TwistStamped()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.twist.linear.x = stw
        seen = node.pilot.inputs.speed

        def arrived():
            count = node.pilot.rejected_by_reason[Rejected.IMPLAUSIBLE.value]
            return count > before or node.pilot.inputs.speed is not seen
        for _ in range(50):  # best effort QoS: resend until the node has it
            speed_pub.publish(msg)
            if wait(arrived, timeout=0.2):
                break
        return node.pilot.rejected_by_reason[Rejected.IMPLAUSIBLE.value] - before

    assert rejected_after(15.0) == 0  # the table's span
    # `ros2 param set /autopilot plausible.speed.stw "[0, 12]"`: an integer list.
    assert set_span(ParameterValue(type=ParameterType.PARAMETER_INTEGER_ARRAY,
                                   integer_array_value=[0, 12]))
    assert list(node.get_parameter('plausible.speed.stw').value) == [0.0, 12.0]
    assert rejected_after(15.0) == 1
    # `"[0, 12.5]"`: the CLI sends a list mixing integers and floats as a string.
    assert set_span(ParameterValue(type=ParameterType.PARAMETER_STRING,
                                   string_value='[0, 12.5]'))
    assert node.pilot.config.limits.plausible['speed.stw'] == (0.0, 12.5)
    assert rejected_after(12.4) == 0
    # Wider than the table, or nonsense: refused, the boat's span stays.
    assert not set_span(ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY,
                                       double_array_value=[0.0, 45.0]))
    assert not set_span(ParameterValue(type=ParameterType.PARAMETER_STRING,
                                       string_value='fast'))
    assert node.pilot.config.limits.plausible['speed.stw'] == (0.0, 12.5)
    assert rejected_after(13.0) == 1
