"""Sensor samples: the plain-Python form of every input the pilot reads.

The node, the simulator and the bag reader all turn messages into these, so the pure core
never sees a ROS type. The `*_from_msg` converters only read attributes, so they accept
rclpy messages and the objects `rosbags` deserialises alike: one conversion for serving
and for training.
"""

from dataclasses import dataclass
import math
from typing import Any

from autopilot_ros.conventions import quaternion_to_roll_pitch, wrap_2pi, wrap_pi


@dataclass(frozen=True, slots=True)
class ImuSample:
    """REP-103 body frame: x forward, y left, z up. Angles in rad, rates in rad/s."""

    stamp: float
    roll: float
    pitch: float
    roll_rate: float
    pitch_rate: float
    yaw_rate_z: float  # angular_velocity.z: > 0 is a turn to PORT
    accel_x: float  # m/s^2, includes gravity as an accelerometer measures it
    accel_y: float
    accel_z: float


@dataclass(frozen=True, slots=True)
class HeadingSample:
    stamp: float
    heading: float  # rad, clockwise from north, [0, 2*pi)


@dataclass(frozen=True, slots=True)
class WindSample:
    stamp: float
    awa: float  # rad, (-pi, pi], positive = wind from starboard
    aws: float  # m/s


@dataclass(frozen=True, slots=True)
class SpeedSample:
    stamp: float
    stw: float  # speed through water, m/s


@dataclass(frozen=True, slots=True)
class RudderSample:
    stamp: float
    angle: float  # normalised [-1, 1], positive = to starboard


def stamp_seconds(header: Any) -> float:
    """Seconds from a std_msgs/Header (rclpy or rosbags object)."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def imu_from_msg(msg: Any) -> ImuSample:
    q = msg.orientation
    roll, pitch = quaternion_to_roll_pitch(q.x, q.y, q.z, q.w)
    w = msg.angular_velocity
    a = msg.linear_acceleration
    return ImuSample(
        stamp_seconds(msg.header), roll, pitch, w.x, w.y, w.z, a.x, a.y, a.z
    )


def heading_from_msg(msg: Any) -> HeadingSample:
    heading = msg.heading
    return HeadingSample(stamp_seconds(msg.header), wrap_2pi(heading) if math.isfinite(heading)
                         else heading)


def wind_from_msg(msg: Any) -> WindSample:
    angle = msg.angle
    return WindSample(stamp_seconds(msg.header), wrap_pi(angle) if math.isfinite(angle)
                      else angle, msg.speed)


def speed_from_msg(msg: Any) -> SpeedSample:
    """geometry_msgs/TwistStamped: twist.linear.x is the speed through water."""
    return SpeedSample(stamp_seconds(msg.header), msg.twist.linear.x)


def rudder_from_msg(msg: Any) -> RudderSample:
    return RudderSample(stamp_seconds(msg.header), msg.angle)


# Topic name (DESIGN.md, relative) -> (ROS type name, converter). Shared by node and bags.
INPUT_TOPICS = {
    'imu': ('sensor_msgs/msg/Imu', imu_from_msg),
    'heading': ('autopilot_ros/msg/Heading', heading_from_msg),
    'wind': ('autopilot_ros/msg/Wind', wind_from_msg),
    'speed': ('geometry_msgs/msg/TwistStamped', speed_from_msg),
    'rudder_angle': ('autopilot_ros/msg/RudderAngle', rudder_from_msg),
}
