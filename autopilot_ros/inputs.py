"""The pilot's sensor inputs, declared once: topic, message type, conversion, staleness.

Everything that knows about an input derives from INPUTS: the pilot's freshness rules, the
node's subscriptions, parameters and diagnostics, the simulator node's publishers, the bag
reader and the bag writer. Adding a sensor means a row here, a sample type with its
converters in samples.py, and its features in features.py (docs/design.md, "Module map").
"""

from collections.abc import Callable
from dataclasses import dataclass, fields
import enum
import math
from typing import Any

from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SensorSample,
    SpeedSample,
    WindSample,
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
class InputDef:
    """One sensor input of the pilot."""

    name: str  # the relative topic name, and the key of stale_limit.<name> and samples
    msg_type: str  # ROS type name, 'package/msg/Type'
    sample_type: type
    from_msg: Callable[[Any], SensorSample]  # reads attributes only: rclpy or rosbags
    fill_msg: Callable[[Any, Any], None]  # the inverse; sets attributes only
    required: bool  # the model needs it fresh; an optional input reads as absent when stale
    stale_limit: float  # default seconds after which a reading is too old to use
    # (field, low, high): a finite reading outside these is implausible and dropped. Wide
    # enough for any yacht's instruments, narrow enough to keep a broken one out of float32.
    ranges: tuple[tuple[str, float, float], ...] = ()


MAX_RATE = 10.0  # rad/s: 570 deg/s, beyond any boat's motion, inside any gyro's range
MAX_ACCEL = 100.0  # m/s^2: about 10 g, beyond a slamming hull


INPUTS: tuple[InputDef, ...] = (
    InputDef('imu', 'sensor_msgs/msg/Imu', ImuSample, imu_from_msg, fill_imu_msg,
             required=True, stale_limit=0.5,
             ranges=(('roll_rate', -MAX_RATE, MAX_RATE), ('pitch_rate', -MAX_RATE, MAX_RATE),
                     ('yaw_rate_z', -MAX_RATE, MAX_RATE), ('accel_x', -MAX_ACCEL, MAX_ACCEL),
                     ('accel_y', -MAX_ACCEL, MAX_ACCEL), ('accel_z', -MAX_ACCEL, MAX_ACCEL),
                     ('orientation_norm', 0.9, 1.1))),
    InputDef('heading', 'autopilot_ros/msg/Heading', HeadingSample, heading_from_msg,
             fill_heading_msg, required=True, stale_limit=1.0),  # any finite angle wraps
    InputDef('wind', 'autopilot_ros/msg/Wind', WindSample, wind_from_msg, fill_wind_msg,
             required=True, stale_limit=3.0,
             ranges=(('aws', 0.0, 75.0),)),  # m/s: 146 kn
    # geometry_msgs/TwistStamped: twist.linear.x is the speed through water.
    InputDef('speed', 'geometry_msgs/msg/TwistStamped', SpeedSample, speed_from_msg,
             fill_speed_msg, required=False, stale_limit=5.0,
             ranges=(('stw', -5.0, 30.0),)),  # m/s: sternway to a foiling multihull
    # The measured rudder, normalised like the command; training's label. A sensor a little
    # past its calibrated stops still reads; 1.2 is a broken one.
    InputDef('rudder_angle', 'autopilot_ros/msg/RudderAngle', RudderSample, rudder_from_msg,
             fill_rudder_msg, required=False, stale_limit=1.0,
             ranges=(('angle', -1.2, 1.2),)),
)

INPUT_NAMES = tuple(i.name for i in INPUTS)
REQUIRED_INPUTS = tuple(i.name for i in INPUTS if i.required)
OPTIONAL_INPUTS = tuple(i.name for i in INPUTS if not i.required)
DEFAULT_STALE_LIMITS = {i.name: i.stale_limit for i in INPUTS}
INPUT_BY_NAME = {i.name: i for i in INPUTS}
_BY_SAMPLE = {i.sample_type: i for i in INPUTS}


class Rejected(enum.Enum):
    """Why a sample was dropped before it reached the pilot's state."""

    NONFINITE = 'non-finite'
    IMPLAUSIBLE = 'out of range'


_VALUE_FIELDS = {i.sample_type: tuple(f.name for f in fields(i.sample_type) if f.name != 'stamp')
                 for i in INPUTS}


def check_sample(sample: SensorSample) -> tuple[Rejected, str] | None:
    """None for a usable sample, else why not and which field: (reason, 'aws=-1').

    Every measured field must be finite and inside its input's range, so no reading can put
    a non-finite value (float32 overflow included) into a feature row.
    """
    spec = input_of(sample)
    for name in _VALUE_FIELDS[type(sample)]:
        value = getattr(sample, name)
        if not math.isfinite(value):
            return Rejected.NONFINITE, f'{name}={value}'
    for name, low, high in spec.ranges:
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
