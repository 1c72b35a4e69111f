"""autopilot_node: the thin ROS 2 layer around the Pilot.

It only wires parameters, QoS, subscriptions, the control timer and publishers to the
pure core: the inputs come from inputs.INPUTS, every change reaches the pilot through
Pilot.reconfigure, and every outgoing message is built by ros_messages. It spins on one
thread: rclpy's MultiThreadedExecutor cost about three times the CPU per callback
(measured: a core saturated at ~400 callbacks/s, against 10x-real-time lockstep with the
simulator at 64% of a core single-threaded). A parameter change is validated in full
(a new model loaded and checked) in the on-set callback and applied in the post-set
callback under the tick lock; loading takes ~10 ms here, so it delays one tick by that
much and never skips one.
"""

import dataclasses
import math
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    ParameterDescriptor,
    SetParametersResult,
)
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from std_srvs.srv import SetBool
from visualization_msgs.msg import MarkerArray

from autopilot_ros.conventions import MODES, validate_mode, wrap_2pi
from autopilot_ros.inputs import (
    DEFAULT_STALE_LIMITS,
    INPUT_NAMES,
    INPUTS,
    InputDef,
    trusted_stamp,
)
from autopilot_ros.msg import AutopilotStatus, RudderCommand
from autopilot_ros.pd_pilot import PDGains
from autopilot_ros.pilot import KEEP, POLICY_NAMES, Pilot, PilotConfig
from autopilot_ros.policy import ModelError, OnnxPolicy
from autopilot_ros.ros_messages import (
    RATE_WINDOW,
    command_msg,
    diagnostics_msg,
    markers_msg,
    message_class,
    receive_rate,
    status_msg,
)
from autopilot_ros.safety import SafetyLimits


def _range(lo: float, hi: float, description: str, read_only: bool = False):
    return ParameterDescriptor(
        description=description, read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=lo, to_value=hi, step=0.0)])


# The command and status streams: every message matters to a rudder driver and a logger.
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_PERIOD = 1.0  # s, as diagnostic_aggregator expects
TICK_SILENCE_LIMIT = 1.0  # wall s without a control tick before diagnostics say ERROR
MARKERS_PERIOD = 0.25  # s: a few Hz is enough for rviz


class AutopilotNode(Node):
    """Parameters, subscriptions and publishers around one Pilot (docs/design.md)."""

    def __init__(self, *, sensor_qos: QoSProfile = qos_profile_sensor_data,
                 command_qos: QoSProfile = RELIABLE_QOS, **kwargs) -> None:
        super().__init__('autopilot', **kwargs)
        self._lock = threading.Lock()
        self._declare_parameters()
        config = self._config_from_parameters()
        self.pilot = Pilot(config)
        self.pilot.reconfigure(mode=self._param('mode'), target=self._param('target'),
                               hand_steering=bool(self._param('hand_steering')))
        self._last_policy = None
        self._last_output = None
        self._staged_policy = KEEP  # a model loaded by the on-set callback, until applied
        self._rx = {name: [] for name in INPUT_NAMES}  # receive times for rate estimates
        self._skew_warned = set()
        path = self._param('model_path')
        if path:
            try:
                self.pilot.reconfigure(policy=OnnxPolicy(path, config.rate_hz))
                self.get_logger().info(f'model loaded: {self.pilot.policy.identity}')
            except ModelError as exc:
                self.get_logger().error(f'model refused, steering with the PD pilot: {exc}')
        else:
            self.get_logger().warning('no model_path: steering with the PD pilot')
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        sensors = MutuallyExclusiveCallbackGroup()
        self._control_group = MutuallyExclusiveCallbackGroup()
        for spec in INPUTS:
            self.create_subscription(message_class(spec.msg_type), spec.name,
                                     self._subscriber(spec), sensor_qos,
                                     callback_group=sensors)
        self.command_pub = self.create_publisher(RudderCommand, 'rudder_command', command_qos)
        self.status_pub = self.create_publisher(AutopilotStatus, 'autopilot/status',
                                                command_qos)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.marker_pub = self.create_publisher(MarkerArray, 'autopilot/markers', 10)
        self.create_service(SetBool, 'autopilot/engage', self._on_engage)
        self._period = 1.0 / config.rate_hz
        self._tick_origin: tuple[float | None, int] = (None, -1)  # sim time, last tick
        if self.get_parameter('use_sim_time').value:
            # rclpy runs a sim-time timer only on the executor's next wake-up after /clock
            # has moved; a simulator faster than real time then outruns the pilot (measured:
            # 1.0x instead of 10x in lockstep). Tick from the clock update itself instead.
            self._jump = self.get_clock().create_jump_callback(
                JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=None,
                              on_clock_change=False),
                post_callback=self._on_clock_moved)
        else:
            self.create_timer(self._period, self._tick, callback_group=self._control_group)
        self._last_tick_wall = time.monotonic()
        self.create_timer(DIAGNOSTICS_PERIOD, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(MARKERS_PERIOD, self._publish_markers)

    # -- parameters ---------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        d = self.declare_parameter
        d('model_path', '', ParameterDescriptor(
            description='ONNX model; empty = PD pilot only. Set at runtime to swap models.'))
        d('rate_hz', 10.0, _range(1.0, 100.0, 'control rate; must match the model',
                                  read_only=True))
        d('mode', 'standby', ParameterDescriptor(description=' | '.join(MODES)))
        d('target', 0.0, _range(-math.pi, 2 * math.pi,
                                'rad: compass heading [0, 2pi) or wind angle (-pi, pi]'))
        d('hand_steering', False, ParameterDescriptor(
            description='record mode: report the target on autopilot/status but do not '
                        'steer (rudder_command engaged=false); bags for training'))
        d('max_rudder', 1.0, _range(0.05, 1.0, 'rudder range, normalised'))
        d('max_rudder_rate', 0.5, _range(0.01, 10.0, 'slew limit, normalised per second'))
        for name, limit in DEFAULT_STALE_LIMITS.items():
            d(f'stale_limit.{name}', limit, _range(0.05, 60.0, f'seconds until {name} is stale'))
        d('stamp_future_tolerance', 0.05, _range(
            0.0, 1.0, 's a header stamp may lead the node clock; further ahead, or zero, or '
                      'over 1 s behind, the receive time is used'))
        defaults = PDGains()
        d('pd.kp', defaults.kp, _range(0.0, 10.0, 'PD fallback: rudder per rad of error'))
        d('pd.kd', defaults.kd, _range(0.0, 20.0, 'PD fallback: rudder per rad/s'))

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _config_from_parameters(self, overrides: dict | None = None) -> PilotConfig:
        def get(name):
            return (overrides or {}).get(name, self._param(name))
        limits = SafetyLimits(
            max_rudder=get('max_rudder'), max_rudder_rate=get('max_rudder_rate'),
            stale_limits={n: get(f'stale_limit.{n}') for n in DEFAULT_STALE_LIMITS})
        config = PilotConfig(rate_hz=get('rate_hz'), limits=limits,
                             pd=PDGains(kp=get('pd.kp'), kd=get('pd.kd')))
        config.validate()
        return config

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """On-set: check everything (load a new model) and refuse all of it on any fault."""
        new = {p.name: p.value for p in params}
        self._staged_policy = KEEP
        if 'use_sim_time' in new and new['use_sim_time'] != self._param('use_sim_time'):
            # The control loop ticks on this clock; switched at run time to a /clock that
            # nobody publishes, it would stop (as it did) with nothing said.
            reason = ('use_sim_time is fixed for the life of the node (the control loop runs '
                      'on that clock); restart it with use_sim_time set')
            self.get_logger().error(f'parameter change refused: {reason}')
            return SetParametersResult(successful=False, reason=reason)
        try:
            validate_mode(new.get('mode', self.pilot.mode),
                          float(new.get('target', self.pilot.target)))
            config = self._config_from_parameters(new)
            if 'model_path' in new:
                path = new['model_path']
                self._staged_policy = OnnxPolicy(path, config.rate_hz) if path else None
        except (ValueError, TypeError, ModelError) as exc:
            self.get_logger().error(f'parameter change refused: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Post-set: the parameters now hold the accepted values; hand them to the pilot."""
        names = {p.name for p in params}
        policy, self._staged_policy = self._staged_policy, KEEP
        with self._lock:
            self.pilot.reconfigure(
                config=self._config_from_parameters(), mode=self._param('mode'),
                target=self._param('target'), policy=policy if 'model_path' in names else KEEP,
                hand_steering=self._param('hand_steering') if 'hand_steering' in names
                else None)
        if 'model_path' in names:
            self.get_logger().info(
                f'model swapped in: {policy.identity}' if policy else 'model unloaded: PD only')

    def _on_engage(self, request: SetBool.Request, response: SetBool.Response):
        """Engage on the current heading (compass mode) or go to standby."""
        with self._lock:
            heading = self.pilot.inputs.heading
            if not request.data:
                self.pilot.reconfigure(mode='standby', target=0.0)
                response.success, response.message = True, 'standby'
            elif self.pilot.mode != 'standby':
                response.success, response.message = True, f'already engaged ({self.pilot.mode})'
            elif heading is None:
                response.success, response.message = False, 'no heading: cannot engage'
            else:
                self.pilot.reconfigure(mode='compass', target=wrap_2pi(heading.heading))
                response.success = True
                response.message = f'compass {math.degrees(heading.heading):.0f} deg'
        if response.success:
            mode, target = self.pilot.mode, self.pilot.target
            self.set_parameters([Parameter('mode', value=mode),
                                 Parameter('target', value=target)])
        return response

    # -- inputs and the tick ------------------------------------------------------------
    def _subscriber(self, spec: InputDef):
        name, convert = spec.name, spec.from_msg

        def callback(msg) -> None:
            now = self.get_clock().now().nanoseconds * 1e-9
            sample = convert(msg)
            stamp, own = trusted_stamp(sample.stamp, now, self._param('stamp_future_tolerance'))
            if not own and sample.stamp != 0.0 and name not in self._skew_warned:
                self._skew_warned.add(name)
                self.get_logger().warning(
                    f'{name}: header stamps {sample.stamp - now:+.3f} s off the node clock; '
                    'using receive time')
            if stamp != sample.stamp:
                sample = dataclasses.replace(sample, stamp=stamp)
            with self._lock:
                ok = self.pilot.update(sample)
                rejection = self.pilot.inputs.last_rejection
            if ok:
                rx = self._rx[name]
                rx.append(now)
                if len(rx) > RATE_WINDOW:
                    del rx[0]
            else:
                reason, detail = rejection
                self.get_logger().warning(f'{name}: {reason.value} value dropped ({detail})',
                                          throttle_duration_sec=5.0)
        return callback

    def _on_clock_moved(self, _jump) -> None:
        """Sim time: one tick each time the clock enters a new control period."""
        now = self.get_clock().now().nanoseconds * 1e-9
        origin, last = self._tick_origin
        if origin is None or now < origin + (last - 1) * self._period:
            origin, last = now, -1  # the first clock message, or the clock went back
        k = math.floor((now - origin) / self._period + 1e-6)
        self._tick_origin = (origin, max(k, last))
        if k > last:
            self._tick()

    def _tick(self) -> None:
        now = self.get_clock().now()
        self._last_tick_wall = time.monotonic()
        with self._lock:
            out = self.pilot.step(now.nanoseconds * 1e-9)
            policy = self.pilot.policy
            unloaded, self.pilot.unloaded_reason = self.pilot.unloaded_reason, ''
        self._last_output = out
        if unloaded:
            self.get_logger().error(unloaded)
        stamp = now.to_msg()
        self.command_pub.publish(command_msg(out, stamp))
        self.status_pub.publish(status_msg(out, stamp, policy))
        if out.policy != self._last_policy:
            self.get_logger().info(f'policy: {POLICY_NAMES[out.policy]}'
                                   + (f' ({out.reason})' if out.reason else ''))
            self._last_policy = out.policy

    # -- diagnostics and rviz -----------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        """On the steady clock: it must speak up when the control loop's clock stops."""
        now = self.get_clock().now()
        rates = {name: receive_rate(rx) for name, rx in self._rx.items()}
        tick_age = time.monotonic() - self._last_tick_wall
        limit = max(TICK_SILENCE_LIMIT, 5 * self._period)
        if tick_age > limit:
            self.get_logger().error(
                f'no control tick for {tick_age:.1f} s: the clock the loop runs on stopped '
                '(use_sim_time with no /clock?); no commands are published',
                throttle_duration_sec=10.0)
        self.diag_pub.publish(diagnostics_msg(
            self.pilot, self._last_output, now=now.nanoseconds * 1e-9, stamp=now.to_msg(),
            rates=rates, tick_age=tick_age, tick_limit=limit))

    def _publish_markers(self) -> None:
        out = self._last_output
        if out is not None:
            self.marker_pub.publish(markers_msg(out, self.pilot.inputs.wind,
                                                self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = AutopilotNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
