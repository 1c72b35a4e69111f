"""The pilot's sensor inputs, declared once: topic, message type, conversion, staleness.

Everything that knows about an input derives from INPUTS: the pilot's freshness rules, the
node's subscriptions, parameters and diagnostics, the simulator node's publishers, the bag
reader and the bag writer. Adding a sensor means a row here, a sample type with its
converters in samples.py, and its features in features.py (docs/design.md, "Module map").
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
import enum
import math
from types import MappingProxyType
from typing import Any

from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SensorSample,
    SpeedSample,
    WindSample,
    absent_fields,
    fill_heading_msg,
    fill_imu_msg,
    fill_rudder_msg,
    fill_speed_msg,
    fill_wind_msg,
    heading_from_msg,
    imu_from_msg,
    rudder_from_msg,
    speed_from_msg,
    wind_from_msg,
)


@dataclass(frozen=True)
class Range:
    """The plausible span of one measured field; outside it a reading is dropped.

    `per_boat` ranges are node parameters (`plausible.<input>.<field>`) that may narrow the
    span for one boat (a dinghy's log reading 25 m/s is broken); none may widen it, as the
    table's span is also what keeps every feature inside float32 and the model's world.
    """

    field: str
    low: float
    high: float
    per_boat: bool = False

    @property
    def span(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class InputDef:
    """One sensor input of the pilot."""

    name: str  # the relative topic name, and the key of stale_limit.<name> and samples
    msg_type: str  # ROS type name, 'package/msg/Type'
    sample_type: type
    from_msg: Callable[[Any], SensorSample]  # reads attributes only: rclpy or rosbags
    fill_msg: Callable[[Any, Any], None]  # the inverse; sets attributes only
    required: bool  # the model needs it fresh; an optional input reads as absent when stale
    stale_limit: float  # default seconds after which a reading is too old to use
    # A finite reading outside these is implausible and dropped. Wide enough for any
    # yacht's instruments, narrow enough to keep a broken one out of float32.
    ranges: tuple[Range, ...] = ()


MAX_RATE = 10.0  # rad/s: 570 deg/s, beyond any boat's motion, inside any gyro's range
MAX_ACCEL = 100.0  # m/s^2: about 10 g, beyond a slamming hull


INPUTS: tuple[InputDef, ...] = (
    InputDef('imu', 'sensor_msgs/msg/Imu', ImuSample, imu_from_msg, fill_imu_msg,
             required=True, stale_limit=0.5,
             # Physics, the same on every boat: not parameters.
             ranges=(Range('roll_rate', -MAX_RATE, MAX_RATE),
                     Range('pitch_rate', -MAX_RATE, MAX_RATE),
                     Range('yaw_rate_z', -MAX_RATE, MAX_RATE),
                     Range('accel_x', -MAX_ACCEL, MAX_ACCEL),
                     Range('accel_y', -MAX_ACCEL, MAX_ACCEL),
                     Range('accel_z', -MAX_ACCEL, MAX_ACCEL),
                     Range('orientation_norm', 0.9, 1.1))),
    InputDef('heading', 'autopilot_ros/msg/Heading', HeadingSample, heading_from_msg,
             fill_heading_msg, required=True, stale_limit=1.0),  # any finite angle wraps
    InputDef('wind', 'autopilot_ros/msg/Wind', WindSample, wind_from_msg, fill_wind_msg,
             required=True, stale_limit=3.0,
             ranges=(Range('aws', 0.0, 75.0, per_boat=True),)),  # m/s: 146 kn
    # geometry_msgs/TwistStamped: twist.linear.x is the speed through water.
    InputDef('speed', 'geometry_msgs/msg/TwistStamped', SpeedSample, speed_from_msg,
             fill_speed_msg, required=False, stale_limit=5.0,
             # m/s: sternway to a foiling multihull
             ranges=(Range('stw', -5.0, 30.0, per_boat=True),)),
    # The measured rudder, normalised like the command; training's label. A sensor a little
    # past its calibrated stops still reads; 1.2 is a broken one.
    InputDef('rudder_angle', 'autopilot_ros/msg/RudderAngle', RudderSample, rudder_from_msg,
             fill_rudder_msg, required=False, stale_limit=1.0,
             ranges=(Range('angle', -1.2, 1.2, per_boat=True),)),
)

INPUT_NAMES = tuple(i.name for i in INPUTS)
REQUIRED_INPUTS = tuple(i.name for i in INPUTS if i.required)
OPTIONAL_INPUTS = tuple(i.name for i in INPUTS if not i.required)
DEFAULT_STALE_LIMITS = {i.name: i.stale_limit for i in INPUTS}
INPUT_BY_NAME = {i.name: i for i in INPUTS}
_BY_SAMPLE = {i.sample_type: i for i in INPUTS}
# 'input.field' -> the widest span a boat may set for it (node parameter plausible.<key>).
PER_BOAT_RANGES = {f'{i.name}.{r.field}': r.span for i in INPUTS for r in i.ranges
                   if r.per_boat}


def validate_ranges(ranges: dict[str, tuple[float, float]]) -> None:
    """Raise ValueError unless every span is a per-boat one, ordered and inside the table's."""
    for key, span in ranges.items():
        if key not in PER_BOAT_RANGES:
            raise ValueError(f'no per-boat plausible range {key!r} '
                             f'(there are: {", ".join(PER_BOAT_RANGES)})')
        widest = PER_BOAT_RANGES[key]
        if len(span) != 2 or not all(math.isfinite(v) for v in span):
            raise ValueError(f'plausible.{key} must be two finite numbers [low, high]')
        low, high = span
        if not widest[0] <= low < high <= widest[1]:
            raise ValueError(f'plausible.{key} [{low:g}, {high:g}] must be an ordered span '
                             f'inside [{widest[0]:g}, {widest[1]:g}]')


class Rejected(enum.Enum):
    """Why a sample was dropped before it reached the pilot's state."""

    NONFINITE = 'non-finite'
    IMPLAUSIBLE = 'out of range'
    NO_TURN_RATE = 'no turn rate'  # an IMU without angular velocity: nothing the pilot can use


# The measured fields (not the stamp, not an ImuSample's flags of what it measures).
_VALUE_FIELDS = {i.sample_type: tuple(f.name for f in fields(i.sample_type)
                                      if f.name != 'stamp' and not f.name.endswith('_known'))
                 for i in INPUTS}


_NO_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType({})


def check_sample(sample: SensorSample, ranges: Mapping[str, tuple[float, float]] = _NO_RANGES
                 ) -> tuple[Rejected, str] | None:
    """None for a usable sample, else why not and which field: (reason, 'aws=-1').

    Every measured field must be finite and inside its input's range (a boat's own span from
    `ranges`, keyed 'input.field', where it has one), so no reading can put a non-finite
    value (float32 overflow included) into a feature row. Fields the sensor says it does not
    measure (samples.absent_fields: an IMU without accelerations, say) are NaN and pass;
    an IMU without a turn rate does not, as the PID steers on it whenever the IMU is fresh.
    """
    spec = input_of(sample)
    absent = absent_fields(sample)
    if isinstance(sample, ImuSample) and not sample.rates_known \
            and math.isnan(sample.yaw_rate_z):
        return Rejected.NO_TURN_RATE, 'angular_velocity absent'
    for name in _VALUE_FIELDS[type(sample)]:
        if name in absent:
            continue
        value = getattr(sample, name)
        if not math.isfinite(value):
            return Rejected.NONFINITE, f'{name}={value}'
    for r in spec.ranges:
        name = r.field
        if name in absent:
            continue
        low, high = ranges.get(f'{spec.name}.{name}', r.span) if r.per_boat else r.span
        value = getattr(sample, name)
        if not low <= value <= high:
            return Rejected.IMPLAUSIBLE, f'{name}={value:.6g} not in [{low:g}, {high:g}]'
    return None


# A header stamp older than this is a sender's clock that is off, not a late message.
MAX_STAMP_AGE = 1.0


def trusted_stamp(stamp: float, now: float, future_tolerance: float) -> tuple[float, bool]:
    """The stamp to judge a reading's age by, and whether the sender's own was usable.

    A reading is as old as its header says, within limits: a stamp up to `future_tolerance`
    ahead of this clock is kept (so rates between readings stay exact; a sender's clock can
    stretch staleness by at most that much), one further ahead, more than MAX_STAMP_AGE
    behind, or zero is replaced by the receive time.
    """
    if stamp == 0.0 or stamp > now + future_tolerance or stamp < now - MAX_STAMP_AGE:
        return now, False
    return stamp, True


def input_of(sample: object) -> InputDef:
    """The input a sample belongs to; TypeError for anything that is not a sensor sample."""
    spec = _BY_SAMPLE.get(type(sample))
    if spec is None:
        raise TypeError(f'not a sensor sample: {type(sample).__name__}')
    return spec
