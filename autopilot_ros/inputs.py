"""The pilot's sensor inputs, declared once: topic, message type, conversion, staleness.

Everything that knows about an input derives from INPUTS: the pilot's freshness rules, the
node's subscriptions, parameters and diagnostics, the simulator node's publishers, the bag
reader and the bag writer. Adding a sensor means a row here, a sample type with its
converters in samples.py, and its features in features.py (docs/design.md, "Module map").
"""

from collections.abc import Callable
from dataclasses import dataclass
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


INPUTS: tuple[InputDef, ...] = (
    InputDef('imu', 'sensor_msgs/msg/Imu', ImuSample, imu_from_msg, fill_imu_msg,
             required=True, stale_limit=0.5),
    InputDef('heading', 'autopilot_ros/msg/Heading', HeadingSample, heading_from_msg,
             fill_heading_msg, required=True, stale_limit=1.0),
    InputDef('wind', 'autopilot_ros/msg/Wind', WindSample, wind_from_msg, fill_wind_msg,
             required=True, stale_limit=3.0),
    # geometry_msgs/TwistStamped: twist.linear.x is the speed through water.
    InputDef('speed', 'geometry_msgs/msg/TwistStamped', SpeedSample, speed_from_msg,
             fill_speed_msg, required=False, stale_limit=5.0),
    # The measured rudder, normalised like the command; training's label.
    InputDef('rudder_angle', 'autopilot_ros/msg/RudderAngle', RudderSample, rudder_from_msg,
             fill_rudder_msg, required=False, stale_limit=1.0),
)

INPUT_NAMES = tuple(i.name for i in INPUTS)
REQUIRED_INPUTS = tuple(i.name for i in INPUTS if i.required)
OPTIONAL_INPUTS = tuple(i.name for i in INPUTS if not i.required)
DEFAULT_STALE_LIMITS = {i.name: i.stale_limit for i in INPUTS}
INPUT_BY_NAME = {i.name: i for i in INPUTS}
_BY_SAMPLE = {i.sample_type: i for i in INPUTS}


def input_of(sample: object) -> InputDef:
    """The input a sample belongs to; TypeError for anything that is not a sensor sample."""
    spec = _BY_SAMPLE.get(type(sample))
    if spec is None:
        raise TypeError(f'not a sensor sample: {type(sample).__name__}')
    return spec
