"""autopilot_node over real DDS: sensors in, rudder commands and status out, model swaps.

Each test starts the real node class in this process, and a second node that plays the
boat's sensors; they talk through the middleware like separate processes would.
"""

import json
import math
import os
import pathlib
import subprocess
import time

import numpy as np
import pytest

pytest.importorskip('rclpy')  # ROS: `make test`; `make test-core` (pip route) has none
from ament_index_python.packages import get_package_prefix, get_package_share_directory
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import TwistStamped
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters, SetParametersAtomically
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu
from std_srvs.srv import SetBool

from autopilot_ros.msg import AutopilotStatus, Heading, RudderCommand, Wind
from autopilot_ros.node import AutopilotNode

pytestmark = pytest.mark.dds  # every test runs nodes over DDS
DEG = math.pi / 180
REPO = pathlib.Path(__file__).resolve().parents[1]


class FakeBoat(Node):
    """Publishes IMU, heading and wind at 20 Hz from `self.values`; records the outputs."""

    def __init__(self, context, namespace: str = '') -> None:
        super().__init__('fake_boat', context=context, namespace=namespace)
        self.values = {'heading': 0.0, 'yaw_rate_z': 0.0, 'awa': 60 * DEG, 'aws': 8.0}
        self.enabled = {'imu': True, 'heading': True, 'wind': True}
        self.commands: list[RudderCommand] = []
        self.statuses: list[tuple[float, AutopilotStatus]] = []
        self.last_sent: dict[str, float] = {}  # header stamp of the last message per topic, s
        qos = qos_profile_sensor_data
        self.imu_pub = self.create_publisher(Imu, 'imu', qos)
        self.heading_pub = self.create_publisher(Heading, 'heading', qos)
        self.wind_pub = self.create_publisher(Wind, 'wind', qos)
        self.speed_pub = self.create_publisher(TwistStamped, 'speed', qos)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(RudderCommand, 'rudder_command', self.commands.append,
                                 reliable)
        self.create_subscription(AutopilotStatus, 'autopilot/status',
                                 lambda m: self.statuses.append((time.monotonic(), m)),
                                 reliable)
        self.create_timer(0.05, self._publish)

    def _publish(self) -> None:
        now = self.get_clock().now()
        stamp = now.to_msg()
        self.last_sent.update({name: now.nanoseconds * 1e-9
                               for name, on in self.enabled.items() if on})
        v = self.values
        if self.enabled['imu']:
            m = Imu()
            m.header.stamp = stamp
            m.orientation.w = 1.0
            m.angular_velocity.z = v['yaw_rate_z']
            m.linear_acceleration.z = 9.81
            self.imu_pub.publish(m)
        if self.enabled['heading']:
            h = Heading(heading=v['heading'])
            h.header.stamp = stamp
            self.heading_pub.publish(h)
        if self.enabled['wind']:
            w = Wind(angle=v['awa'], speed=v['aws'])
            w.header.stamp = stamp
            self.wind_pub.publish(w)

    def last_status(self) -> AutopilotStatus | None:
        return self.statuses[-1][1] if self.statuses else None


def _start(spinner, model: pathlib.Path | None, **params):
    overrides = [Parameter('model_path', value=str(model) if model else ''),
                 Parameter('allowed_model_dirs', value=[str(model.parent) if model else '']),
                 Parameter('mode', value=params.pop('mode', 'compass')),
                 Parameter('target', value=params.pop('target', 0.3))]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    ctx = spinner.executor.context
    node = spinner.add(AutopilotNode(context=ctx, parameter_overrides=overrides))
    boat = spinner.add(FakeBoat(ctx))
    return node, boat


def _list_value(value: list) -> ParameterValue:
    """A list typed like the ros2 CLI does: one element type, else the text as a string."""
    for kind, field, ok in (
            (ParameterType.PARAMETER_BOOL_ARRAY, 'bool_array_value', bool),
            (ParameterType.PARAMETER_STRING_ARRAY, 'string_array_value', str)):
        if all(isinstance(v, ok) for v in value):
            return ParameterValue(type=kind, **{field: value})
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER_ARRAY,
                              integer_array_value=value)
    if all(isinstance(v, float) for v in value):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY,
                              double_array_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=json.dumps(value))


def _client(spinner, srv_type, name: str):
    """One client per service and spinner: discovery is paid once per test, not per call."""
    clients = spinner.__dict__.setdefault('clients', {})
    if (srv_type, name) not in clients:
        node = spinner.add(Node(f'client_{time.monotonic_ns()}',
                                context=spinner.executor.context))
        client = node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=10.0), name
        clients[srv_type, name] = client
    return clients[srv_type, name]


def _call(spinner, wait, srv_type, name: str, request):
    future = _client(spinner, srv_type, name).call_async(request)
    assert wait(future.done, timeout=15.0), f'{name} never answered'
    return future.result()


def _set_params(spinner, wait, params: dict, atomically: bool = False):
    """Call /autopilot/set_parameters like `ros2 param set` does; return the results.

    atomically: one SetParametersAtomically request for all of them (one result).
    """
    srv = SetParametersAtomically if atomically else SetParameters
    request = srv.Request()
    for name, value in params.items():
        if isinstance(value, str):
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        elif isinstance(value, int) and not isinstance(value, bool):  # `ros2 param set x 2`
            pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
        elif isinstance(value, list):  # as ros2param's get_parameter_value types a YAML list
            pv = _list_value(value)
        elif isinstance(value, bool):
            pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
        request.parameters.append(ParameterMsg(name=name, value=pv))
    service = '/autopilot/set_parameters' + ('_atomically' if atomically else '')
    response = _call(spinner, wait, srv, service, request)
    return [response.result] if atomically else response.results


def _now(node) -> float:
    """The node's clock in seconds: commands stamped later were made after this."""
    return node.get_clock().now().nanoseconds * 1e-9


def _since(commands: list[RudderCommand], t: float) -> list[RudderCommand]:
    """The commands the node stamped after t (made by ticks that began after t)."""
    return [m for m in commands if _seconds(m.header.stamp) > t]


def test_model_steers_with_the_right_sign_and_status_says_so(spinner, wait, model_factory):
    _, boat = _start(spinner, model_factory(gain=2.0), target=0.3)  # target to starboard
    assert wait(lambda: (s := boat.last_status()) is not None
                and s.policy == AutopilotStatus.POLICY_MODEL, timeout=15.0)
    assert any('taking the helm from the PID' in s.reason for _, s in boat.statuses)
    assert wait(lambda: boat.last_status().reason == '', timeout=5.0)  # the model alone
    status = boat.last_status()
    assert status.engaged and status.mode == 'compass'
    assert math.isclose(status.heading_error, 0.3, abs_tol=1e-6)
    assert math.isclose(status.raw_command, math.tanh(0.6), rel_tol=1e-4)
    assert len(status.model_sha256) == 64 and status.model_path.endswith('.onnx')
    assert wait(lambda: boat.commands and boat.commands[-1].command > 0.2)
    assert boat.commands[-1].policy == RudderCommand.POLICY_MODEL


# Sensor limits and an inference budget no loaded machine reaches: with these, a tick off
# the model can only be the node's doing (a hiccup of this one process, which plays boat and
# pilot, can starve the 20 Hz sensors past the 0.5 s IMU limit or a 30 ms inference).
UNHURRIED = {'stale_limit.imu': 5.0, 'stale_limit.heading': 5.0, 'stale_limit.wind': 5.0,
             'inference_budget': 0.09}


def test_hot_swap_changes_the_command_and_a_bad_model_is_refused(spinner, wait,
                                                                  model_factory):
    node, boat = _start(spinner, model_factory(op='constant', bias=0.4), **UNHURRIED)
    assert wait(lambda: boat.commands and math.isclose(boat.commands[-1].command, 0.4,
                                                       abs_tol=1e-6), timeout=15.0)
    results = _set_params(spinner, wait, {'model_path': str(model_factory(
        op='constant', bias=-0.3))})
    assert results[0].successful, results[0].reason
    assert wait(lambda: math.isclose(boat.commands[-1].command, -0.3, abs_tol=1e-6))
    assert wait(lambda: boat.last_status().window_fill == 20)
    good_sha = boat.last_status().model_sha256

    asked = _now(node)
    bad = model_factory(window=10)
    results = _set_params(spinner, wait, {'model_path': str(bad)})
    assert not results[0].successful
    assert 'input shape' in results[0].reason
    answered = _now(node)
    assert wait(lambda: len(_statuses_since(boat, answered)) >= 10, timeout=10.0)
    recent = _statuses_since(boat, asked)
    assert node.get_parameter('model_path').value != str(bad)
    # The old model steers on, from the very next tick: a refused swap costs nothing, not
    # even the 2 s of PD a cleared window would refill in.
    for s in recent:
        assert s.policy == AutopilotStatus.POLICY_MODEL and s.window_fill == 20, s.reason
        assert s.model_sha256 == good_sha and s.command == pytest.approx(-0.3)
    # No missed tick around the refused swap: 10 Hz by the node's own stamps, so late
    # delivery to this process does not count; gaps well under two periods.
    stamps = [_seconds(s.header.stamp) for s in recent]
    assert max(b - a for a, b in zip(stamps, stamps[1:], strict=False)) < 0.35


def _statuses_since(boat: 'FakeBoat', t: float) -> list[AutopilotStatus]:
    """The statuses the node stamped after t."""
    return [s for _, s in boat.statuses if _seconds(s.header.stamp) > t]


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def test_hand_steering_records_the_target_and_leaves_the_helm(spinner, wait, model_factory):
    _, boat = _start(spinner, model_factory(gain=2.0), target=0.3, hand_steering=True)
    assert wait(lambda: (s := boat.last_status()) is not None and s.window_fill == 20,
                timeout=15.0)
    status = boat.last_status()
    assert not status.engaged and status.mode == 'compass' and 'hand steering' in status.reason
    assert math.isclose(status.heading_error, 0.3, abs_tol=1e-6)
    assert all(c.command == 0.0 and not c.engaged for c in boat.commands)
    results = _set_params(spinner, wait, {'hand_steering': False})
    assert results[0].successful, results[0].reason
    assert wait(lambda: boat.commands[-1].engaged and boat.commands[-1].command > 0.2)


def test_rudder_limits_set_by_parameters_are_what_the_commands_obey(spinner, wait,
                                                                    model_factory):
    """max_rudder and max_rudder_rate changed at run time as `ros2 param set` sends them,
    measured on the commands and their own stamps; a refused change, one parameter or a
    request as a whole, leaves the limits in effect as they were."""
    node, boat = _start(spinner, model_factory(op='constant', bias=0.9), **UNHURRIED)
    assert wait(lambda: boat.commands and boat.commands[-1].command == pytest.approx(0.9),
                timeout=15.0)
    # The range: the next tick is inside it (clamped, not slewed down to).
    assert _set_params(spinner, wait, {'max_rudder': 0.3})[0].successful
    since = _now(node)
    assert wait(lambda: len(_since(boat.commands, since)) >= 5)
    assert all(c.command == pytest.approx(0.3) for c in _since(boat.commands, since))
    # The slew limit: 0.3 to 0.7 at 0.2/s is 2 s of the node's clock (0.8 s at the default).
    results = _set_params(spinner, wait, {'max_rudder_rate': 0.2, 'max_rudder': 0.7})
    assert all(r.successful for r in results), [r.reason for r in results]
    assert wait(lambda: boat.commands[-1].command == pytest.approx(0.7), timeout=10.0)
    assert 2.0 - 1e-4 <= _climb(boat.commands, 0.3, 0.7, rate=0.2) < 3.0  # late ticks

    for name, value, words in (
            ('max_rudder', 3.0, ''), ('max_rudder_rate', 0.0, ''),  # outside the ROS ranges
            ('stale_limit.imu', 0.0, ''),
            # inside the ROS ranges, refused by the node's own checks
            ('inference_budget', 0.2, 'not under one tick'),
            ('target', -0.5, 'compass target'),
            ('plausible.wind.aws', [0.0, 100.0], 'inside [0, 75]')):
        result = _set_params(spinner, wait, {name: value})[0]
        assert not result.successful and words in result.reason, (name, result.reason)
    result = _set_params(spinner, wait, {'max_rudder': 0.5, 'mode': 'sideways'},
                         atomically=True)[0]
    assert not result.successful and 'sideways' in result.reason
    result = _set_params(spinner, wait, {'max_rudder': 0.5, 'max_rudder_rate': 1.0,
                                         'target': 7.0}, atomically=True)[0]
    assert not result.successful
    expected = {'max_rudder': 0.7, 'max_rudder_rate': 0.2, 'stale_limit.imu': 5.0,
                'inference_budget': 0.09, 'target': 0.3, 'mode': 'compass',
                'plausible.wind.aws': [0.0, 75.0]}
    assert {k: node.get_parameter(k).value for k in expected} == expected
    # And what the commands show: still the 0.7 range (not 0.5, 3.0 or the model's 0.9) ...
    since = _now(node)
    assert wait(lambda: len(_since(boat.commands, since)) >= 10)
    assert all(c.command == pytest.approx(0.7) for c in _since(boat.commands, since))
    # ... and still the 0.2/s slew limit (neither 0, 1 nor the default): 0.7 to 0.9 in 1 s.
    assert _set_params(spinner, wait, {'max_rudder': 1.0})[0].successful
    assert wait(lambda: boat.commands[-1].command == pytest.approx(0.9), timeout=10.0)
    assert 1.0 - 1e-4 <= _climb(boat.commands, 0.7, 0.9, rate=0.2) < 2.0


def _climb(commands: list[RudderCommand], low: float, high: float, rate: float) -> float:
    """Seconds of the node's clock the last climb from `low` to `high` took (within 1e-6
    of each, so up to 1e-5 s short), checking on the way that consecutive commands moved
    at most `rate` per second of their stamps."""
    commands = list(commands)
    i = max(k for k, c in enumerate(commands) if c.command <= low + 1e-6)
    j = next(k for k in range(i, len(commands)) if commands[k].command >= high - 1e-6)
    for a, b in zip(commands[i:j], commands[i + 1:j + 1], strict=True):
        dt = _seconds(b.header.stamp) - _seconds(a.header.stamp)
        assert abs(b.command - a.command) <= rate * dt + 1e-6, (a, b)
    return _seconds(commands[j].header.stamp) - _seconds(commands[i].header.stamp)


def test_a_silent_sensor_puts_the_node_in_its_safe_state_in_time(spinner, wait,
                                                                  model_factory):
    """The IMU at its default limit (0.5 s); the compass at one set at run time (2.5 s,
    longer than its default 1 s: the node must keep what it is given, either way)."""
    _, boat = _start(spinner, model_factory())
    assert wait(lambda: (s := boat.last_status()) and s.policy == AutopilotStatus.POLICY_MODEL,
                timeout=15.0)
    assert _set_params(spinner, wait, {'stale_limit.heading': 2.5})[0].successful
    delay = _silence(boat, wait, 'imu', AutopilotStatus.POLICY_FALLBACK_PID)
    assert 0.5 - 0.11 < delay < 0.5 + 0.1 + 0.2  # IMU limit (less a lost reading), a tick, jitter
    assert 'imu' in boat.last_status().stale_inputs
    delay = _silence(boat, wait, 'heading', AutopilotStatus.POLICY_STANDBY)
    assert 2.5 - 0.11 < delay < 2.5 + 0.1 + 0.2  # heading limit, a tick, jitter
    assert wait(lambda: boat.commands[-1].command == 0.0 and not boat.commands[-1].engaged)


def _silence(boat: FakeBoat, wait, topic: str, policy: int) -> float:
    """Silence one topic; seconds from its last message to the first tick with `policy`.

    Measured on the header stamps (the boat's last message, the node's tick), so a slow
    delivery to this test process does not count against the node.
    """
    boat.enabled[topic] = False
    assert wait(lambda: boat.last_status().policy == policy)
    last = boat.last_sent[topic]
    first = next(_seconds(s.header.stamp) for _, s in boat.statuses
                 if _seconds(s.header.stamp) > last and s.policy == policy)
    return first - last


def test_nan_inputs_never_reach_the_rudder(spinner, wait, model_factory):
    node, boat = _start(spinner, model_factory(gain=2.0))
    assert wait(lambda: (s := boat.last_status()) and s.policy == AutopilotStatus.POLICY_MODEL,
                timeout=15.0)
    n = len(boat.commands)
    boat.values['heading'] = math.nan
    boat.values['yaw_rate_z'] = math.inf
    boat.values['awa'] = math.nan
    time.sleep(2.0)
    sent = boat.commands[n:]
    assert sent and all(math.isfinite(c.command) for c in sent)
    assert node.pilot.rejected_samples > 0
    # With every reading rejected, the inputs go stale and the pilot stands by.
    assert wait(lambda: boat.last_status().policy == AutopilotStatus.POLICY_STANDBY)


def test_a_model_that_raises_at_sea_falls_back_each_tick_then_is_dropped(spinner, wait,
                                                                           model_factory):
    """The model raises for a heading error in (0.25, 0.35); the node must keep steering."""
    node, boat = _start(spinner, model_factory(op='raise_in_band'), target=0.1)
    assert wait(lambda: (s := boat.last_status()) and s.policy == AutopilotStatus.POLICY_MODEL,
                timeout=15.0)
    sha = boat.last_status().model_sha256
    n_before = len(boat.statuses)
    assert _set_params(spinner, wait, {'target': 0.3})[0].successful  # error 0.3: it raises
    assert wait(lambda: 'model failed: ' in boat.last_status().reason, timeout=5.0)
    failed = next(s for _, s in boat.statuses[n_before:] if 'model failed' in s.reason)
    assert failed.policy == AutopilotStatus.POLICY_FALLBACK_PID and failed.model_sha256 == sha
    assert math.isfinite(failed.command) and failed.engaged
    # Ten failed ticks in a row: dropped with a logged reason, PD steers on, commands flow.
    assert wait(lambda: boat.last_status().model_sha256 == '', timeout=10.0)
    count = len(boat.commands)
    assert wait(lambda: len(boat.commands) >= count + 10, timeout=5.0)
    last = boat.commands[-1]
    assert last.engaged and last.policy == RudderCommand.POLICY_FALLBACK_PID and last.command > 0
    assert node.pilot.model_errors >= 10 and node.pilot.policy is None


def test_use_sim_time_cannot_be_switched_on_under_a_running_pilot(spinner, wait,
                                                                  model_factory):
    """Switched at run time with no /clock, the loop used to stop with nothing said."""
    node, boat = _start(spinner, model_factory())
    assert wait(lambda: len(boat.commands) > 5, timeout=15.0)
    results = _set_params(spinner, wait, {'use_sim_time': True})
    assert not results[0].successful and 'use_sim_time is fixed' in results[0].reason
    assert node.get_parameter('use_sim_time').value is False
    count = len(boat.commands)
    assert wait(lambda: len(boat.commands) >= count + 10, timeout=5.0)  # still 10 Hz


def test_absurd_readings_are_dropped_and_counted_apart_from_non_finite(spinner, wait,
                                                                       model_factory):
    node, boat = _start(spinner, model_factory())
    assert wait(lambda: (s := boat.last_status()) and s.policy == AutopilotStatus.POLICY_MODEL,
                timeout=15.0)
    boat.values['aws'] = 1e39  # finite in float64, inf in the model's float32 window
    assert wait(lambda: node.pilot.rejected_by_reason.get('out of range', 0) > 5)
    assert node.pilot.rejected_by_reason.get('non-finite', 0) == 0
    assert wait(lambda: 'wind' in boat.last_status().stale_inputs, timeout=5.0)  # 3 s limit
    assert np.isfinite(node.pilot.window.array()).all()
    assert all(math.isfinite(c.command) for c in boat.commands)


def test_slew_limit_holds_against_a_model_that_jumps_end_to_end(spinner, wait,
                                                                 model_factory):
    _, boat = _start(spinner, model_factory(gain=1000.0), max_rudder_rate=0.5)
    assert wait(lambda: (s := boat.last_status()) and s.policy == AutopilotStatus.POLICY_MODEL,
                timeout=15.0)
    n = len(boat.commands)
    for i in range(4):  # the model output flips between -1 and 1 every second
        boat.values['heading'] = 0.6 if i % 2 == 0 else 0.0
        time.sleep(1.0)
    sent = boat.commands[n:]
    values = [c.command for c in sent]
    # The limit is per second of the node's clock: a late tick may move further, so the
    # rate is taken between the commands' own stamps, not per message.
    for a, b in zip(sent, sent[1:], strict=False):
        dt = _seconds(b.header.stamp) - _seconds(a.header.stamp)
        assert abs(b.command - a.command) <= 0.5 * dt + 1e-6, (a, b)
    assert max(values) - min(values) > 0.4  # it did follow the flips, at the limited rate


def test_engage_holds_the_current_heading_only_and_disengage_stands_by(spinner, wait):
    """autopilot/engage: true holds the heading the compass gives now, and is refused when
    it gives none (an old heading is where the boat was); false is standby."""
    node, boat = _start(spinner, None, mode='standby', target=0.0)
    assert wait(lambda: (s := boat.last_status()) is not None
                and 'heading' not in s.stale_inputs, timeout=15.0)
    boat.enabled['heading'] = False
    assert wait(lambda: 'heading' in boat.last_status().stale_inputs, timeout=5.0)

    def engage(on: bool) -> SetBool.Response:
        return _call(spinner, wait, SetBool, '/autopilot/engage', SetBool.Request(data=on))
    reply = engage(True)
    assert not reply.success and 'no heading' in reply.message
    assert node.get_parameter('mode').value == 'standby' and node.pilot.mode == 'standby'

    boat.values['heading'] = 1.0
    boat.enabled['heading'] = True
    assert wait(lambda: 'heading' not in boat.last_status().stale_inputs, timeout=5.0)
    reply = engage(True)
    assert reply.success and reply.message == 'compass 57 deg', reply.message
    assert node.pilot.mode == 'compass' and math.isclose(node.pilot.target, 1.0, abs_tol=1e-6)
    assert node.get_parameter('mode').value == 'compass'
    assert wait(lambda: boat.commands[-1].engaged, timeout=5.0)
    assert engage(True).message == 'already engaged (compass)'

    reply = engage(False)
    assert reply.success and reply.message == 'standby'
    assert node.get_parameter('mode').value == 'standby' and node.pilot.mode == 'standby'
    since = _now(node)
    assert wait(lambda: len(_since(boat.commands, since)) >= 3, timeout=5.0)
    assert all(not c.engaged and c.command == 0.0 and c.policy == RudderCommand.POLICY_STANDBY
               for c in _since(boat.commands, since))


def test_wind_modes_steer_to_the_wind_and_hold_their_heading_when_it_goes_stale(
        spinner, wait, model_factory):
    """The fake boat sails heading 0 with the apparent wind 60 deg on starboard (no speed:
    TWA = AWA). AWA 50 deg is 10 deg to starboard; on port tack, mirrored. With the wind
    instrument silent past its limit (0.5 s here) the model stops steering, and PD holds
    the last target heading."""
    node, boat = _start(spinner, model_factory(gain=2.0), mode='wind_awa', target=50 * DEG,
                        **{'stale_limit.wind': 0.5, 'inference_budget': 0.09})
    assert wait(lambda: (s := boat.last_status()) is not None
                and s.policy == AutopilotStatus.POLICY_MODEL and s.reason == '', timeout=15.0)
    status = next(s for _, s in reversed(boat.statuses)  # the model alone, blended in
                  if s.policy == AutopilotStatus.POLICY_MODEL and s.reason == '')
    assert status.mode == 'wind_awa' and status.engaged
    assert status.target_heading == pytest.approx(10 * DEG, abs=1e-3)
    assert status.heading_error == pytest.approx(10 * DEG, abs=1e-3)
    assert status.raw_command == pytest.approx(math.tanh(20 * DEG), rel=1e-3)
    assert wait(lambda: boat.commands[-1].command > 0.3)  # to starboard

    boat.values['awa'] = -60 * DEG
    assert _set_params(spinner, wait, {'mode': 'wind_twa', 'target': -50 * DEG},
                       atomically=True)[0].successful
    assert wait(lambda: (s := boat.last_status()).mode == 'wind_twa'
                and s.heading_error == pytest.approx(-10 * DEG, abs=1e-3)
                and s.target_heading == pytest.approx(350 * DEG, abs=1e-3))
    assert wait(lambda: boat.commands[-1].command < -0.3)  # to port

    boat.enabled['wind'] = False
    assert wait(lambda: 'wind' in boat.last_status().stale_inputs, timeout=5.0)
    boat.values['heading'] = 355 * DEG  # the boat turns; the held target stays
    assert wait(lambda: boat.last_status().heading_error == pytest.approx(-5 * DEG, abs=1e-3))
    status = boat.last_status()
    assert status.policy == AutopilotStatus.POLICY_FALLBACK_PID and status.engaged
    assert 'holding last target heading' in status.reason and 'wind' in status.reason
    assert status.target_heading == pytest.approx(350 * DEG, abs=1e-3)
    assert status.window_fill == 0


def test_installed_executable_runs_with_the_params_file_and_publishes_diagnostics(
        rclpy_context, model_factory, wait, tmp_path):
    """What `ros2 run autopilot_ros autopilot_node --ros-args --params-file` does."""
    exe = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib' / 'autopilot_ros' / \
        'autopilot_node'
    params = pathlib.Path(get_package_share_directory('autopilot_ros')) / 'config' / \
        'autopilot.yaml'
    model = model_factory()
    log = open(tmp_path / 'node.log', 'w')  # noqa: SIM115
    proc = subprocess.Popen(
        [str(exe), '--ros-args', '--params-file', str(params), '-p', f'model_path:={model}',
         '-p', f"allowed_model_dirs:=['{model.parent}']",
         '-p', 'mode:=compass', '-p', 'target:=0.5', '-r', '__ns:=/boat1'],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        probe = Node('probe', context=rclpy_context, namespace='boat1')
        executor = rclpy.executors.SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(probe)
        boat = FakeBoat(rclpy_context, namespace='boat1')
        executor.add_node(boat)
        diags = []
        probe.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)

        def spin_until(pred, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not pred():
                executor.spin_once(timeout_sec=0.05)
            return pred()
        assert spin_until(lambda: (s := boat.last_status()) is not None
                          and s.policy == AutopilotStatus.POLICY_MODEL, 30.0), \
            (tmp_path / 'node.log').read_text()
        diags.clear()  # the ones before the model took over say 'pd'
        assert spin_until(lambda: diags, 10.0)
        keys = {kv.key: kv.value for st in diags[-1].status for kv in st.values}
        assert keys['active policy'] == 'model'
        assert 'sha256:' in keys['model']
        assert float(keys['inference p50 ms']) > 0
        assert float(keys['imu rate Hz']) > 5
        executor.shutdown()
        boat.destroy_node()
        probe.destroy_node()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_models_load_only_from_allowed_folders_and_changes_are_logged(
        spinner, wait, model_factory, tmp_path, tmp_path_factory, capfd):
    node, boat = _start(spinner, model_factory(op='constant', bias=0.2))  # allows tmp_path
    assert wait(lambda: len(boat.commands) > 3, timeout=15.0)
    outside = tmp_path_factory.mktemp('elsewhere')
    stray = model_factory()
    (outside / 'm.onnx').write_bytes(stray.read_bytes())
    link = tmp_path / 'link.onnx'  # inside the allowed folder, pointing outside it
    link.symlink_to(outside / 'm.onnx')
    open_dir = tmp_path_factory.mktemp('open')
    open_dir.chmod(0o777)
    (open_dir / 'm.onnx').write_bytes(stray.read_bytes())
    for path, words in ((outside / 'm.onnx', 'not inside an allowed model folder'),
                        (link, 'not inside an allowed model folder'),
                        ('m.onnx', 'absolute path')):
        result = _set_params(spinner, wait, {'model_path': str(path)})[0]
        assert not result.successful and words in result.reason, result.reason
    result = _set_params(spinner, wait, {'allowed_model_dirs': ['/']})[0]
    assert not result.successful  # read-only: the allowed folders are set at launch
    node2 = spinner.add(AutopilotNode(context=spinner.executor.context, parameter_overrides=[
        Parameter('model_path', value=str(open_dir / 'm.onnx')),
        Parameter('allowed_model_dirs', value=[str(open_dir)])], namespace='other'))
    assert node2.pilot.policy is None  # a world-writable folder: refused, PD steers
    assert _set_params(spinner, wait, {'target': 1.0, 'mode': 'compass'})[0].successful
    assert wait(lambda: 'steering: compass 17.2 deg -> compass 57.3 deg' in capfd.readouterr().err,
                timeout=5.0)


def test_a_second_publisher_on_heading_makes_the_inputs_diagnostic_warn(spinner, wait,
                                                                       model_factory):
    """A spoofer (or a second compass wired to the same topic) must not go unnoticed."""
    node, boat = _start(spinner, model_factory())
    diags = []
    listener = spinner.add(Node('diag_listener', context=spinner.executor.context))
    listener.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)

    def inputs_status():
        return next((s for d in diags[-1:] for s in d.status if s.name == 'autopilot: inputs'),
                    None)
    assert wait(lambda: (s := inputs_status()) is not None
                and {kv.key: kv.value for kv in s.values}.get('heading publishers') == '1',
                timeout=15.0)
    assert 'more than one publisher' not in inputs_status().message
    spoofer = spinner.add(Node('spoofer', context=spinner.executor.context))
    spoofer.create_publisher(Heading, 'heading', qos_profile_sensor_data)
    assert wait(lambda: (s := inputs_status()) is not None
                and s.level == DiagnosticStatus.WARN
                and 'more than one publisher on heading (2)' in s.message, timeout=15.0)


def test_a_mode_change_alone_keeps_the_boat_on_its_course(spinner, wait, model_factory):
    """One SetParameters per parameter, as `ros2 param set` sends them: mode, then target.

    The fake boat sails heading 0 with the apparent wind 60 deg on starboard (no speed: the
    true wind angle reads the same). Every mode change takes the current course as target.
    """
    node, boat = _start(spinner, None, mode='wind_twa', target=-math.pi / 2)
    assert wait(lambda: (s := boat.last_status()) is not None and s.mode == 'wind_twa',
                timeout=15.0)
    course = {'compass': 0.0, 'wind_awa': 60 * DEG, 'wind_twa': 60 * DEG}
    for mode in ('compass', 'wind_awa', 'wind_twa', 'compass', 'standby', 'wind_awa',
                 'compass', 'wind_twa', 'wind_awa', 'standby', 'compass'):
        result = _set_params(spinner, wait, {'mode': mode})[0]
        assert result.successful, (mode, result.reason)
        assert node.get_parameter('mode').value == mode
        if mode != 'standby':
            target = node.get_parameter('target').value
            assert math.isclose(target, course[mode], abs_tol=1e-3), (mode, target)
            assert wait(lambda m=mode: (s := boat.last_status()).mode == m
                        and abs(s.heading_error) < 1e-3, timeout=5.0), mode
    # The README's line: mode, then the target in that mode; an integer is a number.
    assert _set_params(spinner, wait, {'target': 2})[0].successful
    assert node.get_parameter('target').value == 2.0 and node.pilot.target == 2.0
    assert wait(lambda: math.isclose(boat.last_status().heading_error, 2.0, abs_tol=1e-3))


def test_a_mode_change_without_a_known_course_is_refused(spinner, wait, model_factory):
    node, boat = _start(spinner, None, mode='standby', target=0.0)
    boat.enabled['wind'] = False  # no wind instrument: no AWA or TWA to keep
    assert wait(lambda: (s := boat.last_status()) is not None and 'wind' in s.stale_inputs,
                timeout=15.0)
    result = _set_params(spinner, wait, {'mode': 'wind_awa'})[0]
    assert not result.successful and 'current course in that mode is not known' in result.reason
    assert node.get_parameter('mode').value == 'standby'
    assert _set_params(spinner, wait, {'mode': 'compass'})[0].successful
    assert node.get_parameter('target').value == 0.0  # heading 0 is known


def test_model_path_none_or_empty_is_the_pd_pilot_alone(spinner, wait, model_factory):
    """`model_path:=none` survives a shell; `model_path:=''` reaches launch empty, but
    `ros2 param set /autopilot model_path ''` means the same."""
    model = model_factory()
    node, boat = _start(spinner, model, **UNHURRIED)
    for empty in ('NONE', ''):
        assert wait(lambda: boat.last_status() is not None
                    and boat.last_status().policy == AutopilotStatus.POLICY_MODEL, timeout=15.0)
        assert _set_params(spinner, wait, {'model_path': empty})[0].successful
        assert node.pilot.policy is None and node.get_parameter('model_path').value == empty
        assert wait(lambda: (s := boat.last_status()).model_sha256 == '' and s.policy
                    == AutopilotStatus.POLICY_FALLBACK_PID and s.reason == 'no model loaded',
                    timeout=5.0)
        assert _set_params(spinner, wait, {'model_path': str(model)})[0].successful


def test_the_steer_service_sets_mode_and_target_in_degrees_in_one_step(spinner, wait,
                                                                       model_factory):
    from autopilot_ros.srv import Steer
    node, boat = _start(spinner, None, mode='standby', target=0.0)
    caller = spinner.add(Node('helm_station', context=spinner.executor.context))
    client = caller.create_client(Steer, '/autopilot/steer')
    assert client.wait_for_service(timeout_sec=10.0)

    def steer(mode: str, target_deg: float):
        future = client.call_async(Steer.Request(mode=mode, target_deg=target_deg))
        assert wait(future.done, timeout=10.0)
        return future.result()
    assert wait(lambda: boat.last_status() is not None, timeout=15.0)
    reply = steer('wind_twa', -90.0)  # port tack, straight from standby
    assert reply.success and reply.message == 'wind_twa -90.0 deg'
    assert (node.pilot.mode, node.pilot.target) == ('wind_twa', pytest.approx(-math.pi / 2))
    reply = steer('compass', 450.0)
    assert reply.success and node.pilot.target == pytest.approx(math.pi / 2)
    reply = steer('wind_awa', math.nan)  # keep the current course in that mode
    assert reply.success and node.pilot.target == pytest.approx(60 * DEG, abs=1e-3)
    reply = steer('sideways', 10.0)
    assert not reply.success and 'not one of' in reply.message
    assert node.pilot.mode == 'wind_awa'
    assert steer('standby', 0.0).success and node.pilot.mode == 'standby'


@pytest.mark.parametrize('in_file, on_command_line, expect', [
    (None, None, ''),  # the default: the PID pilot alone
    (None, 'shipped', 'autopilot.onnx'),  # the package's own model, by name
    ('mine', None, 'mine.onnx'),  # the params file names one
    ('mine', 'none', ''),  # the command line wins: the PID pilot alone
    ('shipped', 'none', ''),
])
def test_model_path_precedence_command_line_then_params_file_then_the_pid(
        rclpy_context, model_factory, tmp_path, in_file, on_command_line, expect):
    """What `ros2 launch` composes (launch_config.node_parameters), run as the executable."""
    from autopilot_ros.launch_config import node_parameters
    exe = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros/autopilot_node'
    mine = model_factory()
    mine = mine.rename(mine.with_name('mine.onnx'))
    params = tmp_path / 'boat.yaml'
    lines = ['/**/autopilot:', '  ros__parameters:',
             f"    allowed_model_dirs: ['{tmp_path}', "
             f"'{get_package_share_directory('autopilot_ros')}/resource']"]
    if in_file:
        lines.append(f"    model_path: {mine if in_file == 'mine' else in_file}")
    params.write_text('\n'.join(lines) + '\n')
    file_, overrides = node_parameters(str(params), model_path=on_command_line or '',
                                       use_sim_time=False, hand_steering=False)
    args = [str(exe), '--ros-args', '--params-file', file_, '-r', '__ns:=/prec']
    for key, value in overrides.items():
        args += ['-p', f'{key}:={str(value).lower() if isinstance(value, bool) else value}']
    log = tmp_path / 'node.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        probe = Node('probe', context=rclpy_context, namespace='prec')
        statuses = []
        probe.create_subscription(AutopilotStatus, 'autopilot/status', statuses.append,
                                  QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        executor = rclpy.executors.SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(probe)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not statuses:
            executor.spin_once(timeout_sec=0.1)
        assert statuses, log.read_text()
        assert pathlib.Path(statuses[-1].model_path).name == expect, log.read_text()
        executor.shutdown()
        probe.destroy_node()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _readme_commands() -> list[str]:
    """Every `ros2 param set` and `ros2 service call` in the README's bash blocks, in order."""
    commands, in_bash = [], False
    for line in (REPO / 'README.md').read_text().splitlines():
        if line.startswith('```'):
            in_bash = not in_bash and line.strip() == '```bash'
            continue
        if in_bash:
            for part in line.split('#')[0].split('&&'):
                if part.strip().startswith(('ros2 param set', 'ros2 service call')):
                    commands.append(part.strip())
    return commands


def test_the_readmes_param_and_service_lines_work_as_a_sailor_types_them(
        spinner, wait, tmp_path, monkeypatch):
    """Each line replayed as the exact request the ros2 CLI sends (one SetParameters per
    `ros2 param set`, the value read as YAML, the shell's ~ expanded)."""
    import importlib
    import shlex
    import shutil

    import yaml
    monkeypatch.setenv('HOME', str(tmp_path))
    models = tmp_path / '.local/share/autopilot_ros/models'
    models.mkdir(parents=True)
    shutil.copy(pathlib.Path(get_package_share_directory('autopilot_ros')) / 'resource' /
                'autopilot.onnx', models / 'new.onnx')
    ctx = spinner.executor.context
    node = spinner.add(AutopilotNode(context=ctx, parameter_overrides=[
        Parameter('model_path', value='none')]))
    spinner.add(FakeBoat(ctx))  # the boat's instruments
    caller = spinner.add(Node('sailor', context=ctx))
    assert wait(lambda: node.pilot.inputs.heading is not None and node.pilot.inputs.wind
                is not None, timeout=15.0)
    commands = _readme_commands()
    assert len(commands) >= 7, commands
    for command in commands:
        words = shlex.split(command)
        if words[1] == 'param':
            value = yaml.safe_load(words[5])
            value = os.path.expanduser(value) if isinstance(value, str) else value
            result = _set_params(spinner, wait, {words[4]: value})[0]
            assert result.successful, (command, result.reason)
        else:
            package, kind, name = words[4].split('/')
            srv = getattr(importlib.import_module(f'{package}.{kind}'), name)
            client = caller.create_client(srv, words[3])
            assert client.wait_for_service(timeout_sec=10.0), command
            request = srv.Request()
            for field, value in yaml.safe_load(words[5]).items():  # as the CLI converts
                kind = request.get_fields_and_field_types()[field]
                setattr(request, field, float(value) if kind in ('double', 'float') else value)
            future = client.call_async(request)
            assert wait(future.done, timeout=10.0), command
            assert future.result().success, (command, future.result().message)
    assert pathlib.Path(node.pilot.policy.path).name == 'new.onnx'
    assert node.pilot.hand_steering and node.pilot.mode == 'compass'
