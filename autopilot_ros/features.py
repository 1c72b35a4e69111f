"""The one feature implementation: the node, the simulator evaluation and training call it.

The feature list is data (FEATURE_SPEC). Its hash goes into every exported model and the
node refuses a model built for another spec, so training and serving can never silently
disagree on what a column means.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, make_dataclass
import hashlib
import json
import math

import numpy as np

from autopilot_ros.conventions import (
    GRAVITY,
    MODES,
    STEERING_MODES,
    WIND_MODES,
    heading_error,
    true_wind,
    turn_rate_starboard,
    wind_target_heading,
    wrap_2pi,
    wrap_pi,
)
from autopilot_ros.inputs import INPUT_NAMES, Rejected, check_sample, input_of
from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SensorSample,
    SpeedSample,
    WindSample,
)

__all__ = [  # MODES and STEERING_MODES are conventions', re-exported for the features' users
    'FEATURE_NAMES', 'FEATURE_SPEC', 'FEATURE_SPEC_HASH', 'INDEX', 'MODES', 'NUM_FEATURES',
    'MIRROR_SIGNS', 'SCALES', 'STEERING_MODES', 'WINDOW_LENGTH', 'FeatureDef', 'Fresh',
    'InputState',
    'build_features', 'course_in_mode', 'spec_hash', 'target_heading', 'wind_triangle',
]

WINDOW_LENGTH = 20
# Derived rates (heading, AWA, rudder) span at least this long: 100 Hz at most.
MIN_RATE_INTERVAL = 0.01

# Gains of the PD-suggestion feature. Part of the spec (and its hash): a model learns on top
# of this exact suggestion, so it must not follow the node's tunable fallback gains.
FEATURE_PD_KP = 3.0  # rudder per rad of heading error
FEATURE_PD_KD = 5.0  # rudder per rad/s of turn rate to starboard


@dataclass(frozen=True)
class FeatureDef:
    name: str
    unit: str
    scale: float  # the model sees value * scale
    source: str
    description: str


def _f(name: str, unit: str, scale: float, source: str, description: str) -> FeatureDef:
    return FeatureDef(name, unit, scale, source, description)


FEATURE_SPEC: tuple[FeatureDef, ...] = (
    _f('heading_error', 'rad', 1.0, 'heading+mode',
       'wrap(target heading - heading), (-pi, pi]; > 0 needs starboard rudder'),
    _f('mode_compass', '1', 1.0, 'mode', 'one-hot: compass course'),
    _f('mode_wind_awa', '1', 1.0, 'mode', 'one-hot: apparent wind angle'),
    _f('mode_wind_twa', '1', 1.0, 'mode', 'one-hot: true wind angle'),
    _f('turn_rate_stbd', 'rad/s', 5.0, 'imu', '-angular_velocity.z (REP-103 z is up)'),
    _f('roll', 'rad', 2.0, 'imu', 'REP-103 roll, > 0 = starboard side down'),
    _f('roll_rate', 'rad/s', 2.0, 'imu', 'angular_velocity.x'),
    _f('pitch', 'rad', 5.0, 'imu', 'REP-103 pitch, > 0 = bow down'),
    _f('pitch_rate', 'rad/s', 2.0, 'imu', 'angular_velocity.y'),
    _f('accel_surge', 'm/s^2', 0.2, 'imu', 'linear_acceleration.x (forward)'),
    _f('accel_sway', 'm/s^2', 0.2, 'imu', 'linear_acceleration.y (left)'),
    _f('accel_heave', 'm/s^2', 0.2, 'imu', 'linear_acceleration.z - g (up)'),
    _f('sin_awa', '1', 1.0, 'wind', 'sin of apparent wind angle (> 0 = from starboard)'),
    _f('cos_awa', '1', 1.0, 'wind', 'cos of apparent wind angle'),
    _f('aws', 'm/s', 0.1, 'wind', 'apparent wind speed'),
    _f('awa_rate', 'rad/s', 2.0, 'wind', 'rate of change of AWA between the last two readings'),
    _f('sin_twa', '1', 1.0, 'wind+speed', 'sin of true wind angle'),
    _f('cos_twa', '1', 1.0, 'wind+speed', 'cos of true wind angle'),
    _f('tws', 'm/s', 0.1, 'wind+speed', 'true wind speed'),
    _f('stw', 'm/s', 0.2, 'speed', 'speed through water (0 when unknown)'),
    _f('speed_valid', '1', 1.0, 'speed', '1 when the speed input is fresh'),
    _f('rudder_angle', '1', 1.0, 'rudder_angle',
       'measured rudder, [-1, 1] > 0 = starboard (last command if no sensor)'),
    _f('rudder_rate', '1/s', 2.0, 'rudder_angle', 'rate between the last two readings'),
    _f('pd_suggestion', '1', 1.0, 'derived',
       f'clip({FEATURE_PD_KP} * heading_error - {FEATURE_PD_KD} * turn_rate_stbd, -1, 1)'),
    _f('sin_wind_target', '1', 1.0, 'mode',
       'sin of the wind-mode target angle (0 in compass mode)'),
)
FEATURE_NAMES = tuple(f.name for f in FEATURE_SPEC)
NUM_FEATURES = len(FEATURE_SPEC)
INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
SCALES = np.array([f.scale for f in FEATURE_SPEC], dtype=np.float32)

# The boat's mirror image (port and starboard swapped) is as real a boat as the original:
# a feature row times MIRROR_SIGNS is the row the mirrored boat would give, and its rudder
# is the negated rudder. Training uses it to double the data without inventing physics
# (train.py). -1 for everything measured across the boat (roll, sway, yaw, wind side,
# rudder, errors), +1 for what is symmetric. Not part of the spec hash: it follows from
# the conventions, and test_features_mirror.py derives it from build_features itself.
_MIRRORED = frozenset({
    'heading_error', 'turn_rate_stbd', 'roll', 'roll_rate', 'accel_sway', 'sin_awa',
    'awa_rate', 'sin_twa', 'rudder_angle', 'rudder_rate', 'pd_suggestion', 'sin_wind_target',
})
MIRROR_SIGNS = np.array([-1.0 if f.name in _MIRRORED else 1.0 for f in FEATURE_SPEC],
                        dtype=np.float32)


def spec_hash() -> str:
    """A stable short hash of the spec: names, units, scales, sources and PD gains."""
    payload = {
        'features': [asdict(f) for f in FEATURE_SPEC],
        'pd_kp': FEATURE_PD_KP,
        'pd_kd': FEATURE_PD_KD,
        'window_length': WINDOW_LENGTH,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(',', ':')).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


FEATURE_SPEC_HASH = spec_hash()


class InputState:
    """Latest reading of every input plus the rates derived between consecutive readings.

    Samples arrive in any order and at any rate; the control tick reads this state. The
    node, the simulator loop and the dataset builder all feed it the same samples, which
    is what makes their feature windows identical. One attribute per input of
    inputs.INPUTS, named like it (None until its first reading).
    """

    def __init__(self) -> None:
        self.imu: ImuSample | None = None
        self.heading: HeadingSample | None = None
        self.wind: WindSample | None = None
        self.speed: SpeedSample | None = None
        self.rudder_angle: RudderSample | None = None
        self.awa_rate = 0.0
        self.rudder_rate = 0.0
        self.heading_rate = 0.0  # rad/s to starboard, from the compass (IMU fallback)
        self._rate_from: dict[str, SensorSample] = {}  # the reading each rate is taken from
        self.last_rejection: tuple[Rejected, str] | None = None
        # A boat's own plausible spans ('input.field' -> (low, high)); the table's otherwise.
        self.ranges: Mapping[str, tuple[float, float]] = {}

    def update(self, sample: SensorSample) -> bool:
        """Take one sample; False (and nothing changed) if it is not usable (last_rejection).

        Derived rates span at least MIN_RATE_INTERVAL: readings stamped microseconds apart
        would otherwise turn a compass step into thousands of rad/s.
        """
        name = input_of(sample).name
        self.last_rejection = check_sample(sample, self.ranges)
        if self.last_rejection is not None:
            return False
        prev = self._rate_from.get(name)
        if prev is None or sample.stamp < prev.stamp:
            self._rate_from[name] = sample
        elif sample.stamp - prev.stamp >= MIN_RATE_INTERVAL:
            dt = sample.stamp - prev.stamp
            if isinstance(sample, HeadingSample):
                self.heading_rate = wrap_pi(sample.heading - prev.heading) / dt
            elif isinstance(sample, WindSample):
                self.awa_rate = wrap_pi(sample.awa - prev.awa) / dt
            elif isinstance(sample, RudderSample):
                self.rudder_rate = (sample.angle - prev.angle) / dt
            self._rate_from[name] = sample
        setattr(self, name, sample)
        return True

    def age(self, name: str, now: float) -> float:
        """Seconds since the input's last reading (inf if it never came)."""
        sample = getattr(self, name)
        return math.inf if sample is None else now - sample.stamp


Fresh = make_dataclass('Fresh', [(name, bool) for name in INPUT_NAMES], frozen=True,
                       slots=True)
Fresh.__doc__ = 'Which inputs are fresh at this tick (by the safety limits): a flag per input.'


def wind_triangle(state: InputState, fresh: Fresh) -> tuple[float, float] | None:
    """(TWA, TWS) from the latest apparent wind and speed; boat speed 0 if speed is stale."""
    if state.wind is None or not fresh.wind:
        return None
    stw = state.speed.stw if (fresh.speed and state.speed is not None) else 0.0
    return true_wind(state.wind.awa, state.wind.aws, stw)


def target_heading(mode: str, target: float, state: InputState, fresh: Fresh) -> float | None:
    """The compass heading a mode steers to, or None when the inputs cannot tell.

    Compass: the target itself; wind modes: conventions.wind_target_heading with the wind
    triangle as the instruments measure it.
    """
    if state.heading is None or not fresh.heading:
        return None
    if mode == 'compass':
        return wrap_2pi(target)
    triangle = wind_triangle(state, fresh)
    if triangle is None:
        return None
    if mode not in WIND_MODES:
        return None
    twa, tws = triangle
    stw = state.speed.stw if (fresh.speed and state.speed is not None) else 0.0
    return wind_target_heading(mode, target, state.heading.heading, twa, tws, stw)


def course_in_mode(mode: str, state: InputState, fresh: Fresh) -> float | None:
    """What the boat sails now, as a target of `mode`: its heading, AWA or TWA.

    None when the inputs that say it are not fresh. A mode change with no target takes
    this, so the boat keeps its course as it changes mode (as pypilot does).
    """
    if mode == 'compass':
        return wrap_2pi(state.heading.heading) if state.heading and fresh.heading else None
    if mode == 'wind_awa':
        return wrap_pi(state.wind.awa) if state.wind and fresh.wind else None
    if mode == 'wind_twa':
        triangle = wind_triangle(state, fresh)
        return None if triangle is None else triangle[0]
    return None


def build_features(
    mode: str,
    target: float,
    target_hdg: float,
    state: InputState,
    fresh: Fresh,
    last_command: float,
    out: np.ndarray,
) -> np.ndarray:
    """Fill `out` (float32, NUM_FEATURES) with one scaled feature row and return it.

    Every value is written by feature name through INDEX, so the spec decides the order.
    Inputs that are stale read as 0 (their validity is the pilot's business: it does not
    run a model on a window that holds stale rows).
    """
    row = out
    row[:] = 0.0

    def put(name: str, value: float) -> None:
        row[INDEX[name]] = value

    err = heading_error(target_hdg, state.heading.heading)
    put('heading_error', err)
    if mode in STEERING_MODES:
        put(f'mode_{mode}', 1.0)
    rate = 0.0
    imu = state.imu
    if imu is not None and fresh.imu:
        rate = turn_rate_starboard(imu.yaw_rate_z)
        put('turn_rate_stbd', rate)
        put('roll', imu.roll)
        put('roll_rate', imu.roll_rate)
        put('pitch', imu.pitch)
        put('pitch_rate', imu.pitch_rate)
        put('accel_surge', imu.accel_x)
        put('accel_sway', imu.accel_y)
        put('accel_heave', imu.accel_z - GRAVITY)
    wind = state.wind
    if wind is not None and fresh.wind:
        put('sin_awa', math.sin(wind.awa))
        put('cos_awa', math.cos(wind.awa))
        put('aws', wind.aws)
        put('awa_rate', state.awa_rate)
        twa, tws = wind_triangle(state, fresh)
        put('sin_twa', math.sin(twa))
        put('cos_twa', math.cos(twa))
        put('tws', tws)
    if state.speed is not None and fresh.speed:
        put('stw', state.speed.stw)
        put('speed_valid', 1.0)
    if state.rudder_angle is not None and fresh.rudder_angle:
        put('rudder_angle', state.rudder_angle.angle)
        put('rudder_rate', state.rudder_rate)
    else:
        put('rudder_angle', last_command)
    put('pd_suggestion', min(1.0, max(-1.0, FEATURE_PD_KP * err - FEATURE_PD_KD * rate)))
    if mode in WIND_MODES:
        put('sin_wind_target', math.sin(target))
    row *= SCALES
    return row
