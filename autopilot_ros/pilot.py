"""The Pilot: sensor samples in, one safe rudder command and a status out, per tick.

The ROS node, the simulator's closed-loop evaluation and training's evaluation all run
this very object, so what is measured in the simulator is what steers the boat.
"""

from collections import Counter
from dataclasses import dataclass, field
import math

import numpy as np

from autopilot_ros.conventions import (
    heading_error,
    turn_rate_starboard,
    validate_mode,
    wrap_pi,
)
from autopilot_ros.features import (
    NUM_FEATURES,
    WINDOW_LENGTH,
    Fresh,
    InputState,
    build_features,
    target_heading,
)
from autopilot_ros.guards import GuardConfig, ModelGuard
from autopilot_ros.inputs import INPUT_NAMES, OPTIONAL_INPUTS, REQUIRED_INPUTS
from autopilot_ros.pid_pilot import PIDGains, PIDPilot
from autopilot_ros.policy import one_line
from autopilot_ros.safety import SafetyLayer, SafetyLimits
from autopilot_ros.samples import absent_fields
from autopilot_ros.window import FeatureWindow

# Same numbers as the POLICY_* constants of RudderCommand.msg / AutopilotStatus.msg.
POLICY_STANDBY = 0
POLICY_MODEL = 1
POLICY_FALLBACK_PID = 2
POLICY_NAMES = {POLICY_STANDBY: 'standby', POLICY_MODEL: 'model', POLICY_FALLBACK_PID: 'pid'}

# A model taking the helm from the PID blends in over this long (the PID's live request
# fades out), so a handover never jumps the rudder; the other way the PID's integral has
# tracked the model's offset all along.
HANDOVER_S = 1.0
# A target moved further than this is a new course (a tack, a gybe, a turn): the PID's
# integral starts again and the watchdog lets the turn settle before it judges. A sailor's
# nudge of a few degrees keeps the boat's trim, and keeps the watch: nudging every few
# seconds must not keep a bad model from ever being judged.
NEW_COURSE = math.radians(10.0)

# Failed model ticks in a row (exception, malformed or non-finite output) before the pilot
# drops the model: 1 s at 10 Hz of PID is a fallback, 10 failures in a row is a broken model.
MODEL_FAILURE_LIMIT = 10

# reconfigure(policy=KEEP) leaves the running model in place (None means: no model).
KEEP = object()


@dataclass
class PilotConfig:
    rate_hz: float = 10.0
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    pid: PIDGains = field(default_factory=PIDGains)
    guards: GuardConfig = field(default_factory=GuardConfig)

    def validate(self) -> None:
        if not 1.0 <= self.rate_hz <= 100.0:
            raise ValueError(f'rate_hz {self.rate_hz} not in [1, 100]')
        self.limits.validate()
        self.pid.validate()
        self.guards.validate()


@dataclass
class PilotOutput:
    stamp: float
    command: float
    raw_command: float
    engaged: bool
    policy: int
    reason: str
    mode: str
    target: float
    target_heading: float
    heading_error: float
    window_fill: int
    stale_inputs: list[str]
    inference_time: float

    @property
    def policy_name(self) -> str:
        return POLICY_NAMES[self.policy]


class Pilot:
    """Ties features, window, policy, PID fallback and safety layer together."""

    def __init__(self, config: PilotConfig | None = None, policy=None) -> None:
        self.config = config or PilotConfig()
        self.config.validate()
        self.inputs = InputState()
        self.inputs.ranges = self.config.limits.plausible
        self.safety = SafetyLayer(self.config.limits)
        self.pid = PIDPilot(self.config.pid)
        self.guard = ModelGuard(self.config.guards, getattr(policy, 'envelope', None))
        self._model_ticks_in_a_row = 0  # for the PID -> model blend
        self.window = FeatureWindow(WINDOW_LENGTH, NUM_FEATURES)
        self._row = np.zeros(NUM_FEATURES, dtype=np.float32)
        self.policy = policy
        self.mode = 'standby'
        self.target = 0.0
        self._last_target_heading: float | None = None
        self._last_stamp: float | None = None
        self.engaged = False
        # Recording mode: resolve the target, build features and report, but leave the helm
        # to a person (command 0, not engaged). A bag recorded like this tells training what
        # the helmsman was steering to.
        self.hand_steering = False
        self.rejected_by_reason: Counter[str] = Counter()  # dropped samples, by Rejected value
        self.nonfinite_outputs = 0
        self.model_errors = 0  # ticks on which the model raised or returned no single value
        self._failed_in_a_row = 0
        # Why the pilot dropped its model by itself ('' until it does; cleared by set_policy).
        self.unloaded_reason = ''

    # -- inputs -------------------------------------------------------------------------
    def update(self, sample: object) -> bool:
        """Take one sensor sample; a non-finite one is counted and dropped (never used)."""
        ok = self.inputs.update(sample)
        if not ok:
            self.rejected_by_reason[self.inputs.last_rejection[0].value] += 1
        return ok

    @property
    def rejected_samples(self) -> int:
        """Samples dropped for any reason."""
        return sum(self.rejected_by_reason.values())

    def set_mode(self, mode: str, target: float) -> None:
        """Change mode/target between ticks; raises ValueError and keeps the old ones."""
        validate_mode(mode, target)
        if mode != self.mode or abs(wrap_pi(float(target) - self.target)) > NEW_COURSE:
            self.pid.reset()
            self.guard.restart_watch()
        self.mode = mode
        self.target = float(target)
        self._last_target_heading = None

    def set_policy(self, policy) -> None:
        """Swap the model between two ticks (None: the PID only). The window is kept."""
        if self.policy is not None and self.policy is not policy:
            _close(self.policy)
        self.policy = policy
        self._failed_in_a_row = 0
        self.unloaded_reason = ''
        if policy is not None:  # the guards judge each model afresh, on its own envelope
            self.guard = ModelGuard(self.config.guards, getattr(policy, 'envelope', None))

    def reconfigure(self, *, config: PilotConfig | None = None, mode: str | None = None,
                    target: float | None = None, policy=KEEP,
                    hand_steering: bool | None = None) -> None:
        """Apply a change between two ticks: all of it, or (ValueError) none of it.

        The one way to change a running pilot (the node calls it after validating new
        parameters). A mode or target equal to the current one keeps the target heading;
        the rate is fixed for the pilot's life (the model and window depend on it).
        """
        new_mode = self.mode if mode is None else mode
        new_target = self.target if target is None else float(target)
        validate_mode(new_mode, new_target)
        if config is not None:
            config.validate()
            if config.rate_hz != self.config.rate_hz:
                raise ValueError(f'rate_hz is fixed at {self.config.rate_hz:g} Hz')
            self.config = config
            self.safety.limits = config.limits
            self.pid.gains = config.pid
            self.guard.config = config.guards
            self.inputs.ranges = config.limits.plausible
        if (new_mode, new_target) != (self.mode, self.target):
            self.set_mode(new_mode, new_target)
        if policy is not KEEP:
            self.set_policy(policy)
        if hand_steering is not None:
            self.hand_steering = bool(hand_steering)

    # -- the tick -----------------------------------------------------------------------
    def fresh(self, now: float) -> Fresh:
        limits = self.config.limits.stale_limits
        state = self.inputs
        return Fresh(*(state.age(name, now) <= limits.get(name, math.inf)
                       for name in INPUT_NAMES))

    def step(self, now: float) -> PilotOutput:
        dt = 1.0 / self.config.rate_hz if self._last_stamp is None else now - self._last_stamp
        self._last_stamp = now
        fresh = self.fresh(now)
        stale = [name for name in INPUT_NAMES if not getattr(fresh, name)]
        state = self.inputs

        if self.mode == 'standby':
            return self._standby(now, 'mode is standby', stale)
        if not fresh.heading:
            return self._standby(now, 'heading unknown or stale', stale)

        reasons = []
        tgt = target_heading(self.mode, self.target, state, fresh)
        if tgt is None:
            if self._last_target_heading is None:
                return self._standby(now, 'wind unknown: cannot resolve the wind target', stale)
            tgt = self._last_target_heading
            reasons.append('wind stale: holding last target heading')
        self._last_target_heading = tgt
        err = heading_error(tgt, state.heading.heading)

        if not self.engaged:
            self.engaged = True
            rudder = state.rudder_angle
            start = rudder.angle if (fresh.rudder_angle and rudder) else 0.0
            self.safety.reset(start)
            self.pid.reset()

        # The model reads every required input's features in every mode: all must be fresh.
        model_inputs_fresh = all(getattr(fresh, name) for name in REQUIRED_INPUTS)
        if model_inputs_fresh:
            build_features(self.mode, self.target, tgt, state, fresh, self.safety.command,
                           self._row)
            if np.isfinite(self._row).all():  # the inputs' ranges make this hold; be sure
                self.window.push(self._row)
            else:
                model_inputs_fresh = False
                self.window.clear()
                absent = absent_fields(state.imu) if state.imu else ()
                reasons.append(f'the IMU does not measure {", ".join(absent)}: no model can '
                               'steer on it' if absent else 'feature row not finite')
        else:
            self.window.clear()
            reasons.append('inputs stale: ' + ', '.join(n for n in stale
                                                         if n not in OPTIONAL_INPUTS))

        rate = (turn_rate_starboard(state.imu.yaw_rate_z) if fresh.imu and state.imu
                else state.heading_rate)
        speed = state.speed.stw if fresh.speed and state.speed else None
        raw = math.nan
        policy = POLICY_FALLBACK_PID
        if self.policy is None:
            reasons.append('no model loaded')
        elif not self.window.full:
            if model_inputs_fresh:
                reasons.append(f'window filling {self.window.fill}/{WINDOW_LENGTH}')
        elif held := self.guard.before_model(now, self._row if model_inputs_fresh else None):
            reasons.append(held)
        else:
            raw, failure = self._run_model()
            if failure:
                reasons.append(failure)
            elif stop := self.guard.after_model(now, raw, self._pid_request(err, rate, speed),
                                                err):
                raw = math.nan
                reasons.append(stop)
            else:
                policy = POLICY_MODEL
        max_rudder = self.config.limits.max_rudder
        if policy == POLICY_FALLBACK_PID:
            self._model_ticks_in_a_row = 0
            raw = self.pid.command(err, rate, speed, dt, max_rudder)
        else:
            self._model_ticks_in_a_row += 1
            share = self._model_ticks_in_a_row / (HANDOVER_S * self.config.rate_hz)
            if share < 1.0:
                raw = share * raw + (1.0 - share) * self._pid_request(err, rate, speed)
                reasons.append(f'taking the helm from the PID ({share:.0%})')
        command = self.safety.apply(raw, dt)
        if policy == POLICY_MODEL:
            self.pid.track(command, err, rate, speed, dt)
        engaged = not self.hand_steering
        if not engaged:
            self.engaged = False  # taking the helm later slews from the measured rudder
            command, policy, reasons = 0.0, POLICY_STANDBY, ['hand steering: the helmsman steers']
        return PilotOutput(
            stamp=now, command=command, raw_command=raw, engaged=engaged, policy=policy,
            reason='; '.join(reasons), mode=self.mode, target=self.target,
            target_heading=tgt, heading_error=err, window_fill=self.window.fill,
            stale_inputs=stale, inference_time=self._inference_time())

    def _pid_request(self, error: float, rate: float, speed: float | None) -> float:
        """What the PID would ask for now, without advancing it."""
        m = self.config.limits.max_rudder
        return max(-m, min(m, self.pid.response(error, rate, speed) + self.pid.integral))

    def _run_model(self) -> tuple[float, str]:
        """(raw output, '') or (NaN, why not). Whatever the model does, the tick goes on.

        After MODEL_FAILURE_LIMIT failed ticks in a row the model is dropped (the PID steers) and
        `unloaded_reason` says why: a model that fails that often is not to be trusted.
        """
        try:
            raw = self.policy.infer(self.window.array())
        except Exception as exc:  # noqa: BLE001 - a model's run-time error must not stop the helm
            self.model_errors += 1
            failure = f'model failed: {type(exc).__name__}: {one_line(exc)[:200]}'
        else:
            if math.isfinite(raw):
                self._failed_in_a_row = 0
                return raw, ''
            self.nonfinite_outputs += 1
            failure = 'model output not finite'
        self._failed_in_a_row += 1
        if self._failed_in_a_row >= MODEL_FAILURE_LIMIT:
            self.unloaded_reason = (f'model dropped after {self._failed_in_a_row} failed ticks '
                                    f'in a row (last: {failure}); the PID steers')
            _close(self.policy)
            self.policy = None
            self._failed_in_a_row = 0
        return math.nan, failure

    def _standby(self, now: float, reason: str, stale: list[str]) -> PilotOutput:
        self.engaged = False
        self._model_ticks_in_a_row = 0
        self.window.clear()
        self.safety.reset(0.0)
        return PilotOutput(
            stamp=now, command=0.0, raw_command=math.nan, engaged=False,
            policy=POLICY_STANDBY, reason=reason, mode=self.mode, target=self.target,
            target_heading=math.nan, heading_error=math.nan, window_fill=0,
            stale_inputs=stale, inference_time=self._inference_time())

    def _inference_time(self) -> float:
        return self.policy.last_inference_time if self.policy is not None else math.nan


def _close(policy) -> None:
    """Release what a policy holds (an OnnxPolicy's inference thread), if it holds any."""
    close = getattr(policy, 'close', None)
    if close is not None:
        close()
