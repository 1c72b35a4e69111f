"""autopilot_node: the thin ROS 2 layer around the Pilot.

It only wires parameters, QoS, subscriptions, the control tick and publishers to the
pure core: the inputs come from inputs.INPUTS, every change reaches the pilot through
Pilot.reconfigure, and every outgoing message is built by ros_messages. Callbacks spin on
one thread (rclpy's MultiThreadedExecutor cost about three times the CPU per callback and
busy-polls while a group is busy). The control tick has a thread of its own in wall time
(in sim time the clock drives it): a parameter change is validated in full, a new model
loaded and checked, in the on-set callback, and however long that takes the helm keeps
its 10 Hz; the change is applied in the post-set callback under the pilot's lock.
"""

import dataclasses
import json
import math
import os
import signal
import threading
import time

from ament_index_python.packages import get_package_share_directory
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
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    LivelinessPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import SetBool
from visualization_msgs.msg import MarkerArray

from autopilot_ros.conventions import MODES, STEERING_MODES, validate_mode, wrap_2pi, wrap_pi
from autopilot_ros.features import course_in_mode
from autopilot_ros.guards import GUARD_RANGES, GUARD_SWITCHES, GuardConfig
from autopilot_ros.inputs import (
    DEFAULT_STALE_LIMITS,
    INPUT_NAMES,
    INPUTS,
    PER_BOAT_RANGES,
    InputDef,
    trusted_stamp,
)
from autopilot_ros.launch_config import SHIPPED, resolve_model_path
from autopilot_ros.msg import AutopilotStatus, RudderCommand
from autopilot_ros.parameter_errors import parameter_error_message
from autopilot_ros.pid_pilot import GAIN_RANGES, PIDGains
from autopilot_ros.pilot import KEEP, POLICY_NAMES, Pilot, PilotConfig
from autopilot_ros.policy import ModelError, OnnxPolicy, check_model_path
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
from autopilot_ros.srv import Steer
from autopilot_ros.status import command_valid_for, released_output
from autopilot_ros.systemd_notify import SystemdNotifier


def _no_model(path: str) -> bool:
    """'' or 'none' (any case): the PID pilot alone. `model_path:=none` survives a shell,
    where `model_path:=''` reaches launch as `model_path:=` and is refused."""
    return path.strip().lower() in ('', 'none')


def _course(mode: str, target: float) -> str:
    """'compass 90.0 deg' or 'standby': a mode and target as a log line says them."""
    return mode if mode == 'standby' else f'{mode} {math.degrees(target):.1f} deg'


def _number_list(p: Parameter) -> list[float] | None:
    """The floats an integer list or a '[0, 12.5]' string means, or None if it means none."""
    value = p.value
    if p.type_ == Parameter.Type.STRING:
        try:
            value = json.loads(value)
        except ValueError:
            return None
    elif p.type_ == Parameter.Type.INTEGER_ARRAY:
        value = list(value)  # an array.array from a service request
    else:
        return None
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    return [float(v) for v in value]


def _check_budget(budget: float, rate_hz: float) -> None:
    """ValueError unless one inference fits in a tick: checked on every change, not only
    when a model loads, so the parameter never holds a budget the next load would refuse."""
    if not budget < 1.0 / rate_hz:
        raise ValueError(f'inference_budget {budget} s is not under one tick '
                         f'({1.0 / rate_hz:g} s)')


# (parameter prefix, defaults, bounds, description prefix): the ranged settings, each
# declared from its one table.
_BOUNDED = (('pid', PIDGains(), GAIN_RANGES, 'PID pilot: '),
            ('guard', GuardConfig(), GUARD_RANGES, ''))


def _range(lo: float, hi: float, description: str, read_only: bool = False):
    return ParameterDescriptor(
        description=description, read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=lo, to_value=hi, step=0.0)])


def command_qos_profile(valid_for: float) -> QoSProfile:
    """The command contract's QoS (docs/design.md, Topics), for rudder_command and status.

    Reliable, depth 10, and two promises a rudder driver can hold the node to: a message at
    least every `valid_for` seconds (deadline) from a process that is alive (AUTOMATIC
    liveliness, lease `valid_for`). DDS matches an offered deadline or lease with any
    request of the same length or longer, so a driver asking for 0.3 s at 10 Hz matches
    and is told (deadline missed, liveliness lost) when the stream stops - also after a
    kill -9, which no final command can announce. No lifespan: it compares the two hosts'
    clocks and would drop every command when they disagree.
    """
    period = Duration(nanoseconds=round(valid_for * 1e9))
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, deadline=period,
                      liveliness=LivelinessPolicy.AUTOMATIC,
                      liveliness_lease_duration=period)


# rclpy runs a Python signal handler only when the executor's wait returns: this bounds the
# wait, and so how long SIGINT or SIGTERM waits for the final command (main()).
SIGNAL_POLL = 0.1  # s
# How long the final command waits for every reliable subscriber's acknowledgement before
# the node exits anyway. Fast DDS acknowledges on the writer's heartbeat, every 3 s by
# default (measured here: 2.1 s after SIGTERM), not on delivery.
FINAL_COMMAND_ACK_TIMEOUT = 3.5  # s


DIAGNOSTICS_PERIOD = 1.0  # s, as diagnostic_aggregator expects
# Where a sailor's own models go by default (allowed_model_dirs), beside the shipped one.
USER_MODEL_DIR = '~/.local/share/autopilot_ros/models'
TICK_SILENCE_LIMIT = 1.0  # wall s without a control tick before diagnostics say ERROR
MARKERS_PERIOD = 0.25  # s: a few Hz is enough for rviz


class _Ticker:
    """Calls `tick` every `period` s of steady time on a daemon thread, on a fixed grid.

    A tick that runs late does not make the next ones burst: after missed periods the grid
    starts again from now.
    """

    def __init__(self, period: float, tick) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period, tick),
                                        name='control-tick', daemon=True)
        self._thread.start()

    def _run(self, period: float, tick) -> None:
        due = time.monotonic() + period
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            tick()
            due += period
            behind = time.monotonic() - due
            if behind > period:
                due += period * math.ceil(behind / period)

    def stop(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)


class AutopilotNode(Node):
    """Parameters, subscriptions and publishers around one Pilot (docs/design.md)."""

    def __init__(self, *, sensor_qos: QoSProfile = qos_profile_sensor_data,
                 command_qos: QoSProfile | None = None, **kwargs) -> None:
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
        self._unload_logged = ''  # the pilot's last drop of its model, once logged
        self._rx = {name: [] for name in INPUT_NAMES}  # receive times for rate estimates
        self._skew_warned = set()
        path = self._param('model_path')
        if not _no_model(path):
            try:
                self.pilot.reconfigure(policy=self._load_model(path, config.rate_hz))
                self.get_logger().info(f'model loaded: {self.pilot.policy.identity}')
            except (ModelError, ValueError) as exc:
                self.get_logger().error(f'model refused, steering with the PID pilot: {exc}')
        else:
            self.get_logger().info(f'no model: steering with the PID pilot (model_path '
                                   f"'{SHIPPED}' or a path loads one)")
        self._course_unknown = ''  # a mode change with no target, and no course to keep
        self.add_pre_set_parameters_callback(self._prepare_parameters)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        sensors = MutuallyExclusiveCallbackGroup()
        for spec in INPUTS:
            self.create_subscription(message_class(spec.msg_type), spec.name,
                                     self._subscriber(spec), sensor_qos,
                                     callback_group=sensors)
        # The command contract (msg/RudderCommand.msg): a sequence number per command and a
        # validity period, offered as the QoS deadline and liveliness lease too (the default
        # command_qos, also used by autopilot/status so a display can tell the pilot died).
        self.command_valid_for = command_valid_for(config.rate_hz)
        self._command_sequence = 0  # the next command's RudderCommand.sequence
        if command_qos is None:
            command_qos = command_qos_profile(self.command_valid_for)
        self.command_pub = self.create_publisher(RudderCommand, 'rudder_command', command_qos)
        self.status_pub = self.create_publisher(AutopilotStatus, 'autopilot/status',
                                                command_qos)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.marker_pub = self.create_publisher(MarkerArray, 'autopilot/markers', 10)
        self.create_service(SetBool, 'autopilot/engage', self._on_engage)
        self.create_service(Steer, 'autopilot/steer', self._on_steer)
        self._period = 1.0 / config.rate_hz
        self._tick_origin: tuple[float | None, int] = (None, -1)  # sim time, last tick
        self._ticking = True
        # Under systemd (NOTIFY_SOCKET): READY=1 and the watchdog, from the tick.
        self._systemd = SystemdNotifier(self.get_logger().error)
        if self.get_parameter('use_sim_time').value:
            # rclpy runs a sim-time timer only on the executor's next wake-up after /clock
            # has moved; a simulator faster than real time then outruns the pilot (measured:
            # 1.0x instead of 10x in lockstep). Tick from the clock update itself instead.
            self._jump = self.get_clock().create_jump_callback(
                JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=None,
                              on_clock_change=False),
                post_callback=self._on_clock_moved)
            self._ticker = None
        else:
            # Wall time: the tick runs on a thread of its own, so nothing the executor does
            # (a model loading in a parameter callback, a burst of messages) can delay it.
            # ONNX Runtime releases the GIL while it loads and runs a model.
            self._ticker = _Ticker(self._period, self._tick_safely)
        self._last_tick_wall = time.monotonic()
        self.create_timer(DIAGNOSTICS_PERIOD, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(MARKERS_PERIOD, self._publish_markers)

    # -- parameters ---------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        d = self.declare_parameter
        share = get_package_share_directory('autopilot_ros')
        # Precedence: command line > params file > this default: the PID pilot alone; the
        # shipped model is worse than it on some boats it has not seen (docs/held_out_boats.md).
        d('model_path', 'none', ParameterDescriptor(
            description=f"ONNX model; 'none' (or empty) = the PID pilot only; '{SHIPPED}' = "
                        "the package's own model. Set at runtime to swap models."))
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
        for key, (low, high) in PER_BOAT_RANGES.items():
            d(f'plausible.{key}', [low, high], ParameterDescriptor(
                description=f'[low, high]: {key} readings outside are dropped as implausible; '
                            f'may narrow [{low:g}, {high:g}] for this boat, not widen it'))
        d('inference_budget', 0.03, _range(
            0.001, 0.5, 's one inference may take (less than a tick): a slower model is '
                        'refused at load, a late answer is a PID tick'))
        d('max_model_mb', 50.0, _range(0.1, 2000.0, 'larger model files are refused unread'))
        d('allowed_model_dirs', [os.path.join(share, 'resource'), USER_MODEL_DIR],
          ParameterDescriptor(read_only=True,
                              description='folders models may be loaded from (symbolic links '
                                          'resolved; not world-writable); set at launch only'))
        d('model_sha256', '', ParameterDescriptor(
            read_only=True, description='if set, only the model file with this SHA-256 is '
                                        'loaded; set at launch only'))
        d('stamp_future_tolerance', 0.05, _range(
            0.0, 1.0, 's a header stamp may lead the node clock; further ahead, or zero, or '
                      'over 1 s behind, the receive time is used'))
        for prefix, defaults, bounds, what in _BOUNDED:
            for name, (low, high, meaning) in bounds.items():
                d(f'{prefix}.{name}', getattr(defaults, name),
                  _range(low, high, f'{what}{meaning}'))
        guards = GuardConfig()
        for name, meaning in GUARD_SWITCHES.items():
            d(f'guard.{name}', getattr(guards, name), ParameterDescriptor(description=meaning))

    def _param(self, name: str, pending: dict | None = None):
        """A parameter's value: the one in `pending` (a change being checked), else the set one."""
        return pending[name] if pending and name in pending else self.get_parameter(name).value

    def _config_from_parameters(self, pending: dict | None = None) -> PilotConfig:
        def get(name):
            return self._param(name, pending)
        limits = SafetyLimits(
            max_rudder=get('max_rudder'), max_rudder_rate=get('max_rudder_rate'),
            stale_limits={n: get(f'stale_limit.{n}') for n in DEFAULT_STALE_LIMITS},
            plausible={k: tuple(get(f'plausible.{k}')) for k in PER_BOAT_RANGES})
        config = PilotConfig(rate_hz=get('rate_hz'), limits=limits,
                             pid=PIDGains(**{n: get(f'pid.{n}') for n in GAIN_RANGES}),
                             guards=GuardConfig(**{n: get(f'guard.{n}')
                                                   for n in (*GUARD_SWITCHES, *GUARD_RANGES)}))
        config.validate()
        return config

    def _prepare_parameters(self, params: list[Parameter]) -> list[Parameter]:
        """Pre-set: what `ros2 param set` sends, made into what the node means.

        - An integer for a floating-point parameter is that number (`target 2` is 2.0 rad;
          the CLI sends 2 as an integer), and so are integers for a list of floats; a list
          mixing both (`[0, 12.5]`, which the CLI sends as a string) is that list.
        - A mode change with no target keeps the boat on its course: the new mode's target
          is the current heading, AWA or TWA. Otherwise the old mode's target would be read
          in the new mode: a TWA of -90 deg refused as a compass heading, an AWA of 0.5 rad
          steered as heading 0.5 rad, a boat put on the other tack.
        """
        out = []
        for p in params:
            held = self.get_parameter(p.name).type_ if self.has_parameter(p.name) else None
            if p.type_ == Parameter.Type.INTEGER and held == Parameter.Type.DOUBLE:
                p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            elif held == Parameter.Type.DOUBLE_ARRAY:
                numbers = _number_list(p)
                if numbers is not None:
                    p = Parameter(p.name, Parameter.Type.DOUBLE_ARRAY, numbers)
            out.append(p)
        self._course_unknown = ''
        new = {p.name: p.value for p in out}
        mode = new.get('mode')
        if 'target' not in new and mode in STEERING_MODES and mode != self.pilot.mode:
            now = self.get_clock().now().nanoseconds * 1e-9
            with self._lock:
                course = course_in_mode(mode, self.pilot.inputs, self.pilot.fresh(now))
            if course is None:
                self._course_unknown = mode
            else:
                out.append(Parameter('target', Parameter.Type.DOUBLE, course))
        return out

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """On-set: check everything (load a new model) and refuse all of it on any fault."""
        new = {p.name: p.value for p in params}
        self._staged_policy = KEEP
        if self._course_unknown and new.get('mode') == self._course_unknown:
            reason = (f'mode {self._course_unknown}: the current course in that mode is not '
                      'known (stale heading or wind); set the target with the mode')
            self.get_logger().error(f'parameter change refused: {reason}')
            return SetParametersResult(successful=False, reason=reason)
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
            _check_budget(self._param('inference_budget', new), config.rate_hz)
            if 'model_path' in new:
                path = new['model_path']
                self._staged_policy = self._load_model(path, config.rate_hz, new) \
                    if not _no_model(path) else None
        except (ValueError, TypeError, ModelError) as exc:
            self.get_logger().error(f'parameter change refused: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _load_model(self, path: str, rate_hz: float, pending: dict | None = None):
        """An OnnxPolicy under this node's budget and size limit; ModelError if refused."""
        budget = self._param('inference_budget', pending)
        _check_budget(budget, rate_hz)
        share = get_package_share_directory('autopilot_ros')
        real = check_model_path(resolve_model_path(path, share),
                                self._param('allowed_model_dirs', pending))
        return OnnxPolicy(real, rate_hz, budget=budget,
                          max_bytes=int(self._param('max_model_mb', pending) * 1e6),
                          expected_sha256=self._param('model_sha256', pending))

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Post-set: the parameters now hold the accepted values; hand them to the pilot.

        Every change of who steers to what is logged with the old and new values: a log
        that says when the target moved, and from what, is how a skipper finds out why.
        """
        names = {p.name for p in params}
        policy, self._staged_policy = self._staged_policy, KEEP
        with self._lock:
            pilot = self.pilot
            before = (pilot.mode, pilot.target, pilot.hand_steering, pilot.policy)
            pilot.reconfigure(
                config=self._config_from_parameters(), mode=self._param('mode'),
                target=self._param('target'), policy=policy if 'model_path' in names else KEEP,
                hand_steering=self._param('hand_steering') if 'hand_steering' in names
                else None)
            after = (pilot.mode, pilot.target, pilot.hand_steering, pilot.policy)
        log = self.get_logger().info
        if before[:2] != after[:2]:
            log(f'steering: {_course(*before[:2])} -> {_course(*after[:2])}')
        if before[2] != after[2]:
            log(f'hand_steering: {before[2]} -> {after[2]}')
        if 'model_path' in names:
            old = before[3].identity if before[3] else 'none (PID)'
            log(f'model: {old} -> ' + (policy.identity if policy else 'none: PID only'))

    def _on_engage(self, request: SetBool.Request, response: SetBool.Response):
        """Engage on the current heading (compass mode) or go to standby.

        Through the mode and target parameters, so it is checked, applied and logged like
        any other change and the parameters always say what the pilot does.
        """
        now = self.get_clock().now().nanoseconds * 1e-9
        with self._lock:
            # The current heading, or None when the compass is silent or stale: an old
            # heading is where the boat was, and engaging on it would turn the boat back.
            heading = course_in_mode('compass', self.pilot.inputs, self.pilot.fresh(now))
            mode = self.pilot.mode
        if not request.data:
            change, message = ('standby', 0.0), 'standby'
        elif mode != 'standby':
            response.success, response.message = True, f'already engaged ({mode})'
            return response
        elif heading is None:
            response.success = False
            response.message = 'no heading (none received, or stale): cannot engage'
            return response
        else:
            change = ('compass', heading)
            message = f'compass {math.degrees(change[1]):.0f} deg'
        result = self._set_course(*change)
        response.success = result.successful
        response.message = message if result.successful else result.reason
        return response

    def _set_course(self, mode: str, target: float | None) -> SetParametersResult:
        """Mode and target as one atomic parameter change (target None: keep the course)."""
        params = [Parameter('mode', value=mode)]
        if target is not None:
            params.append(Parameter('target', value=target))
        return self.set_parameters_atomically(params)

    def _on_steer(self, request: Steer.Request, response: Steer.Response):
        """Mode and target (degrees) in one atomic parameter change: checked and logged."""
        mode = request.mode.strip()
        if mode not in MODES:
            response.success = False
            response.message = f"mode '{mode}' is not one of {', '.join(MODES)}"
            return response
        target = None
        if mode != 'standby' and math.isfinite(request.target_deg):
            angle = math.radians(request.target_deg)
            target = wrap_2pi(angle) if mode == 'compass' else wrap_pi(angle)
        result = self._set_course(mode, target)
        response.success = result.successful
        response.message = _course(self.pilot.mode, self.pilot.target) if result.successful \
            else result.reason
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
        if not self._ticking:
            return
        now = self.get_clock().now().nanoseconds * 1e-9
        origin, last = self._tick_origin
        if origin is None or now < origin + (last - 1) * self._period:
            origin, last = now, -1  # the first clock message, or the clock went back
        k = math.floor((now - origin) / self._period + 1e-6)
        self._tick_origin = (origin, max(k, last))
        if k > last:
            self._tick()

    def _tick_safely(self) -> None:
        """The control thread's tick: an error is logged, and the next tick comes anyway."""
        try:
            self._tick()
        except Exception as exc:  # noqa: BLE001 - the helm must not stop for a bug
            self.get_logger().error(f'tick failed: {type(exc).__name__}: {exc}',
                                    throttle_duration_sec=5.0)

    def stop_ticking(self) -> None:
        """No more ticks (before the final command and before the node is destroyed)."""
        self._ticking = False  # sim time: the clock's jump callback stops ticking
        # getattr: rclpy destroys a node whose __init__ failed (a parameter of the wrong
        # type) at shutdown, before it had a ticker.
        if getattr(self, '_ticker', None) is not None:
            self._ticker.stop()

    def destroy_node(self) -> None:
        self.stop_ticking()
        super().destroy_node()

    def _tick(self) -> None:
        now = self.get_clock().now()
        self._last_tick_wall = time.monotonic()
        with self._lock:
            out = self.pilot.step(now.nanoseconds * 1e-9)
            policy = self.pilot.policy
            unloaded = self.pilot.unloaded_reason
        self._last_output = out
        if unloaded != self._unload_logged:
            self._unload_logged = unloaded
            if unloaded:
                self.get_logger().error(unloaded)
        stamp = now.to_msg()
        self.command_pub.publish(self._command_msg(out, stamp))
        self.status_pub.publish(status_msg(out, stamp, policy))
        if out.policy != self._last_policy:
            self.get_logger().info(f'policy: {POLICY_NAMES[out.policy]}'
                                   + (f' ({out.reason})' if out.reason else ''))
            self._last_policy = out.policy
        self._systemd.tick(f'steering: {POLICY_NAMES[out.policy]}')  # a hung tick: no ping

    # -- the command contract -------------------------------------------------------------
    def _command_msg(self, out, stamp) -> RudderCommand:
        """The next command: the tick's output with the next sequence number."""
        msg = command_msg(out, stamp, sequence=self._command_sequence,
                          valid_for=self.command_valid_for)
        self._command_sequence += 1
        return msg

    def release_helm(self, reason: str,
                     ack_timeout: float = FINAL_COMMAND_ACK_TIMEOUT) -> RudderCommand:
        """Publish one final disengaged command (shutdown) and wait for its delivery.

        The driver then lets go of the rudder at once instead of after the deadline. Call it
        when nothing ticks any more: it takes the next sequence number.
        """
        self.stop_ticking()
        self._systemd.stopping()
        now = self.get_clock().now()
        msg = self._command_msg(released_output(now.nanoseconds * 1e-9, reason), now.to_msg())
        self.command_pub.publish(msg)
        acked = self.command_pub.wait_for_all_acked(Duration(seconds=ack_timeout))
        self.get_logger().warning(
            f'{reason}: published the final command (sequence {msg.sequence}, engaged false, '
            'rudder released)' + ('' if acked else f'; not acknowledged by every subscriber '
                                                   f'within {ack_timeout:g} s'))
        return msg

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
        publishers = {spec.name: self.count_publishers(spec.name) for spec in INPUTS}
        self.diag_pub.publish(diagnostics_msg(
            self.pilot, self._last_output, now=now.nanoseconds * 1e-9, stamp=now.to_msg(),
            rates=rates, tick_age=tick_age, tick_limit=limit, publishers=publishers))

    def _publish_markers(self) -> None:
        out = self._last_output
        if out is not None:
            self.marker_pub.publish(markers_msg(out, self.pilot.inputs.wind,
                                                self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> None:
    # rclpy's own SIGINT/SIGTERM handlers shut the context down at once, after which nothing
    # can be published. These only ask the loop below to stop, so that the node can send the
    # driver a final disengaged command first (kill -9 cannot be caught: the QoS deadline
    # tells the driver then).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop: list[str] = []

    def on_signal(signum: int, _frame) -> None:
        stop.append(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        node = AutopilotNode()
    except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
        print(f'autopilot_node: {parameter_error_message(exc)}', flush=True)
        rclpy.shutdown()
        raise SystemExit(2) from None
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop and rclpy.ok():
            executor.spin_once(timeout_sec=SIGNAL_POLL)
        if stop:
            node.release_helm(f'{stop[0]} received')
    except ExternalShutdownException:
        pass  # the context is gone: nothing can be published any more
    except KeyboardInterrupt:
        node.release_helm('KeyboardInterrupt')
    except BaseException as exc:
        try:
            node.release_helm(f'{type(exc).__name__} escaped the executor ({exc})')
        except Exception as release_exc:  # noqa: BLE001 - the first error is the one to see
            node.get_logger().error(f'could not publish the final command: {release_exc}')
        raise
    finally:
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
