"""autopilot_node: the thin ROS 2 layer around the Pilot.

It only wires parameters, QoS, subscriptions, the control timer and publishers to the
pure core. It spins on one thread: rclpy's MultiThreadedExecutor cost about three times
the CPU per callback (measured: a core saturated at ~400 callbacks/s, against 10x-real-time
lockstep with the simulator at 64% of a core single-threaded). A model swap is validated
in full before it is swapped in under the tick lock; loading takes ~10 ms here, so it
delays one tick by that much and never skips one.
"""

import dataclasses
import math
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, TwistStamped
from rcl_interfaces.msg import (
    FloatingPointRange,
    ParameterDescriptor,
    SetParametersResult,
)
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu
from std_srvs.srv import SetBool
from visualization_msgs.msg import Marker, MarkerArray

from autopilot_ros.conventions import wrap_2pi
from autopilot_ros.msg import AutopilotStatus, Heading, RudderAngle, RudderCommand, Wind
from autopilot_ros.pd_pilot import PDGains
from autopilot_ros.pilot import INPUT_NAMES, POLICY_NAMES, Pilot, PilotConfig, validate_mode
from autopilot_ros.policy import ModelError, OnnxPolicy
from autopilot_ros.safety import DEFAULT_STALE_LIMITS, SafetyLimits
from autopilot_ros.samples import (
    heading_from_msg,
    imu_from_msg,
    rudder_from_msg,
    speed_from_msg,
    wind_from_msg,
)

# Header stamps further than this from the node clock are not trusted for staleness.
CLOCK_SKEW_LIMIT = 1.0


def _range(lo: float, hi: float, description: str, read_only: bool = False):
    return ParameterDescriptor(
        description=description, read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=lo, to_value=hi, step=0.0)])


class AutopilotNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('autopilot', **kwargs)
        self._lock = threading.Lock()
        self._declare_parameters()
        config = self._config_from_parameters()
        self.pilot = Pilot(config)
        self.pilot.set_mode(self._param('mode'), self._param('target'))
        self.pilot.hand_steering = bool(self._param('hand_steering'))
        self._last_policy = None
        self._last_output = None
        self._rx = {name: [] for name in INPUT_NAMES}  # receive times for rate estimates
        self._skew_warned = set()
        path = self._param('model_path')
        if path:
            try:
                self.pilot.set_policy(OnnxPolicy(path, config.rate_hz))
                self.get_logger().info(f'model loaded: {self.pilot.policy.identity}')
            except ModelError as exc:
                self.get_logger().error(f'model refused, steering with the PD pilot: {exc}')
        else:
            self.get_logger().warning('no model_path: steering with the PD pilot')
        self.add_on_set_parameters_callback(self._on_set_parameters)

        sensors = MutuallyExclusiveCallbackGroup()
        self._control_group = MutuallyExclusiveCallbackGroup()
        qos = qos_profile_sensor_data
        self.create_subscription(Imu, 'imu', self._sub('imu', imu_from_msg), qos,
                                 callback_group=sensors)
        self.create_subscription(Heading, 'heading', self._sub('heading', heading_from_msg),
                                 qos, callback_group=sensors)
        self.create_subscription(Wind, 'wind', self._sub('wind', wind_from_msg), qos,
                                 callback_group=sensors)
        self.create_subscription(TwistStamped, 'speed', self._sub('speed', speed_from_msg),
                                 qos, callback_group=sensors)
        self.create_subscription(RudderAngle, 'rudder_angle',
                                 self._sub('rudder_angle', rudder_from_msg), qos,
                                 callback_group=sensors)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.command_pub = self.create_publisher(RudderCommand, 'rudder_command', reliable)
        self.status_pub = self.create_publisher(AutopilotStatus, 'autopilot/status', reliable)
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
        self.create_timer(1.0, self._publish_diagnostics)
        self.create_timer(0.25, self._publish_markers)

    # -- parameters ---------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        d = self.declare_parameter
        d('model_path', '', ParameterDescriptor(
            description='ONNX model; empty = PD pilot only. Set at runtime to swap models.'))
        d('rate_hz', 10.0, _range(1.0, 100.0, 'control rate; must match the model',
                                  read_only=True))
        d('mode', 'standby', ParameterDescriptor(
            description='standby | compass | wind_awa | wind_twa'))
        d('target', 0.0, _range(-math.pi, 2 * math.pi,
                                'rad: compass heading [0, 2pi) or wind angle (-pi, pi]'))
        d('hand_steering', False, ParameterDescriptor(
            description='record mode: report the target on autopilot/status but do not '
                        'steer (rudder_command engaged=false); bags for training'))
        d('max_rudder', 1.0, _range(0.05, 1.0, 'rudder range, normalised'))
        d('max_rudder_rate', 0.5, _range(0.01, 10.0, 'slew limit, normalised per second'))
        for name, limit in DEFAULT_STALE_LIMITS.items():
            d(f'stale_limit.{name}', limit, _range(0.05, 60.0, f'seconds until {name} is stale'))
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

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate everything first; apply only when all of it is acceptable."""
        new = {p.name: p.value for p in params}
        try:
            mode = new.get('mode', self.pilot.mode)
            target = float(new.get('target', self.pilot.target))
            validate_mode(mode, target)
            config = self._config_from_parameters(new)
            policy = self.pilot.policy
            if 'model_path' in new:
                policy = OnnxPolicy(new['model_path'], config.rate_hz) if new['model_path'] \
                    else None
        except (ValueError, TypeError, ModelError) as exc:
            self.get_logger().error(f'parameter change refused: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            self.pilot.config.limits = config.limits
            self.pilot.safety.limits = config.limits
            self.pilot.config.pd = config.pd
            if mode != self.pilot.mode or target != self.pilot.target:
                self.pilot.set_mode(mode, target)
            if policy is not self.pilot.policy:
                self.pilot.set_policy(policy)
            if 'hand_steering' in new:
                self.pilot.hand_steering = bool(new['hand_steering'])
        if 'model_path' in new:
            self.get_logger().info(
                f'model swapped in: {policy.identity}' if policy else 'model unloaded: PD only')
        return SetParametersResult(successful=True)

    def _on_engage(self, request: SetBool.Request, response: SetBool.Response):
        """Engage on the current heading (compass mode) or go to standby."""
        with self._lock:
            heading = self.pilot.inputs.heading
            if not request.data:
                self.pilot.set_mode('standby', 0.0)
                response.success, response.message = True, 'standby'
            elif self.pilot.mode != 'standby':
                response.success, response.message = True, f'already engaged ({self.pilot.mode})'
            elif heading is None:
                response.success, response.message = False, 'no heading: cannot engage'
            else:
                self.pilot.set_mode('compass', wrap_2pi(heading.heading))
                response.success = True
                response.message = f'compass {math.degrees(heading.heading):.0f} deg'
        if response.success:
            mode, target = self.pilot.mode, self.pilot.target
            self.set_parameters([Parameter('mode', value=mode),
                                 Parameter('target', value=target)])
        return response

    # -- inputs and the tick ------------------------------------------------------------
    def _sub(self, name: str, convert):
        def callback(msg) -> None:
            now = self.get_clock().now().nanoseconds * 1e-9
            sample = convert(msg)
            if sample.stamp == 0.0 or abs(sample.stamp - now) > CLOCK_SKEW_LIMIT:
                if sample.stamp != 0.0 and name not in self._skew_warned:
                    self._skew_warned.add(name)
                    self.get_logger().warning(
                        f'{name}: header stamps {sample.stamp - now:+.1f} s off the node '
                        'clock; using receive time')
                sample = dataclasses.replace(sample, stamp=now)
            with self._lock:
                ok = self.pilot.update(sample)
            if ok:
                rx = self._rx[name]
                rx.append(now)
                if len(rx) > 50:
                    del rx[0]
            else:
                self.get_logger().warning(f'{name}: non-finite value dropped',
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
        with self._lock:
            out = self.pilot.step(now.nanoseconds * 1e-9)
        self._last_output = out
        stamp = now.to_msg()
        cmd = RudderCommand()
        cmd.header.stamp = stamp
        cmd.header.frame_id = 'base_link'
        cmd.command = out.command
        cmd.engaged = out.engaged
        cmd.policy = out.policy
        self.command_pub.publish(cmd)
        self.status_pub.publish(self._status_msg(out, stamp))
        if out.policy != self._last_policy:
            self.get_logger().info(f'policy: {POLICY_NAMES[out.policy]}'
                                   + (f' ({out.reason})' if out.reason else ''))
            self._last_policy = out.policy

    def _status_msg(self, out, stamp) -> AutopilotStatus:
        msg = AutopilotStatus()
        msg.header.stamp = stamp
        msg.header.frame_id = 'base_link'
        msg.mode = out.mode
        msg.engaged = out.engaged
        msg.target = out.target
        msg.target_heading = out.target_heading
        msg.heading_error = out.heading_error
        msg.command = out.command
        msg.raw_command = out.raw_command
        msg.policy = out.policy
        msg.reason = out.reason
        policy = self.pilot.policy
        msg.model_path = policy.path if policy else ''
        msg.model_sha256 = policy.sha256 if policy else ''
        msg.inference_time = out.inference_time
        msg.window_fill = out.window_fill
        msg.stale_inputs = list(out.stale_inputs)
        return msg

    # -- diagnostics and rviz -----------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now_s = self.get_clock().now().nanoseconds * 1e-9
        limits = self.pilot.config.limits.stale_limits
        inputs = DiagnosticStatus(name='autopilot: inputs', hardware_id='autopilot')
        worst = DiagnosticStatus.OK
        for name in INPUT_NAMES:
            rx = self._rx[name]
            rate = (len(rx) - 1) / (rx[-1] - rx[0]) if len(rx) > 1 and rx[-1] > rx[0] else 0.0
            age = self.pilot.inputs.age(name, now_s)
            inputs.values.append(KeyValue(key=f'{name} rate Hz', value=f'{rate:.1f}'))
            inputs.values.append(KeyValue(key=f'{name} age s', value=f'{age:.2f}'))
            if age > limits[name]:
                required = name not in ('speed', 'rudder_angle')
                worst = max(worst, DiagnosticStatus.ERROR if required else DiagnosticStatus.WARN)
        inputs.level = worst
        inputs.message = 'all fresh' if worst == DiagnosticStatus.OK else 'stale inputs'
        pilot = DiagnosticStatus(name='autopilot: pilot', hardware_id='autopilot')
        out = self._last_output
        policy = self.pilot.policy
        p50, p99 = policy.latency_percentiles() if policy else (math.nan, math.nan)
        pilot.values = [
            KeyValue(key='mode', value=self.pilot.mode),
            KeyValue(key='active policy', value=POLICY_NAMES[out.policy] if out else 'none'),
            KeyValue(key='reason', value=out.reason if out else ''),
            KeyValue(key='model', value=policy.identity if policy else 'none (PD)'),
            KeyValue(key='inference p50 ms', value=f'{p50 * 1e3:.3f}'),
            KeyValue(key='inference p99 ms', value=f'{p99 * 1e3:.3f}'),
            KeyValue(key='rejected samples', value=str(self.pilot.rejected_samples)),
            KeyValue(key='non-finite model outputs', value=str(self.pilot.nonfinite_outputs)),
        ]
        fallback = out is not None and out.engaged and out.policy != 1 and policy is not None
        pilot.level = DiagnosticStatus.WARN if fallback else DiagnosticStatus.OK
        pilot.message = out.reason if (out and out.reason) else 'ok'
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [inputs, pilot]
        self.diag_pub.publish(array)

    def _publish_markers(self) -> None:
        """Arrows in base_link (x forward, y left): target, apparent wind, rudder; a label."""
        out = self._last_output
        if out is None:
            return
        stamp = self.get_clock().now().to_msg()
        markers = MarkerArray()

        def arrow(mid: int, angle_stbd: float, length: float, rgb, origin=(0.0, 0.0)):
            m = Marker(id=mid, ns='autopilot', type=Marker.ARROW, action=Marker.ADD)
            m.header.frame_id = 'base_link'
            m.header.stamp = stamp
            m.scale.x, m.scale.y, m.scale.z = 0.15, 0.3, 0.3
            m.color.r, m.color.g, m.color.b, m.color.a = (*rgb, 1.0)
            # Angles to starboard are negative about REP-103 z (y is left).
            x0, y0 = origin
            m.points = [Point(x=x0, y=y0), Point(x=x0 + length * math.cos(angle_stbd),
                                                 y=y0 - length * math.sin(angle_stbd))]
            return m

        markers.markers.append(arrow(0, 0.0, 4.0, (0.2, 0.4, 1.0)))  # heading: the bow
        if math.isfinite(out.heading_error):
            markers.markers.append(arrow(1, out.heading_error, 5.0, (0.1, 0.9, 0.1)))
        wind = self.pilot.inputs.wind
        if wind is not None:
            # Drawn pointing where the wind comes from.
            markers.markers.append(arrow(2, wind.awa, 3.0, (1.0, 0.6, 0.0)))
        rudder = arrow(3, math.pi - out.command * math.radians(35.0), 1.0, (1.0, 0.1, 0.1),
                       origin=(-2.0, 0.0))
        markers.markers.append(rudder)
        text = Marker(id=4, ns='autopilot', type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        text.header.frame_id = 'base_link'
        text.header.stamp = stamp
        text.pose.position.z = 2.0
        text.scale.z = 0.5
        text.color.r = text.color.g = text.color.b = text.color.a = 1.0
        err = f'{math.degrees(out.heading_error):+.0f} deg' if math.isfinite(
            out.heading_error) else '--'
        text.text = f'{out.mode} {POLICY_NAMES[out.policy]} err {err} rudder {out.command:+.2f}'
        markers.markers.append(text)
        self.marker_pub.publish(markers)


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
