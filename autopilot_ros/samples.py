"""Sensor samples: the plain-Python form of every input the pilot reads.

The node, the simulator and the bag reader all turn messages into these, so the pure core
never sees a ROS type. The `*_from_msg` converters only read attributes, so they accept
rclpy messages and the objects `rosbags` deserialises alike: one conversion for serving
and for training. The `fill_*_msg` writers are their inverses and only set attributes, so
the simulator node (rclpy) and the bag writer (rosbags) publish one mapping, too. Which
topic and message type each sample travels on is declared in inputs.INPUTS.
"""

from dataclasses import dataclass
import math
from typing import Any

from autopilot_ros.conventions import (
    quaternion_to_roll_pitch,
    roll_pitch_to_quaternion,
    wrap_2pi,
    wrap_pi,
)


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
    # |q| of the orientation as received (1 when the IMU gives none: roll and pitch read 0);
    # a quaternion far from unit length is a broken message, not an attitude.
    orientation_norm: float = 1.0
    # What the sensor does not measure (REP-145: covariance[0] = -1 on the block) is NaN,
    # never a made-up 0: the feature row is then not finite, so no model steers on it, while
    # the PID still steers on heading and yaw_rate_z. An instrument bridge's rate-of-turn
    # sensor gives z alone (x and y NaN in the message): rates_known False, yaw_rate_z kept.
    orientation_known: bool = True  # roll, pitch
    rates_known: bool = True  # roll_rate, pitch_rate (yaw_rate_z is always needed)
    accel_known: bool = True  # accel_x, accel_y, accel_z


# The fields each flag of ImuSample vouches for (absent ones are NaN).
IMU_OPTIONAL = {'orientation_known': ('roll', 'pitch'),
                'rates_known': ('roll_rate', 'pitch_rate'),
                'accel_known': ('accel_x', 'accel_y', 'accel_z')}


def absent_fields(sample: object) -> tuple[str, ...]:
    """The fields of a sample its sensor does not measure (an ImuSample's, by its flags)."""
    if not isinstance(sample, ImuSample):
        return ()
    return tuple(name for flag, names in IMU_OPTIONAL.items() if not getattr(sample, flag)
                 for name in names)


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


SensorSample = ImuSample | HeadingSample | WindSample | SpeedSample | RudderSample


def stamp_seconds(header: Any) -> float:
    """Seconds from a std_msgs/Header (rclpy or rosbags object)."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def _absent(msg: Any, block: str) -> bool:
    """REP-145: covariance[0] = -1 says the sensor does not give this block at all."""
    covariance = getattr(msg, f'{block}_covariance', None)
    return covariance is not None and len(covariance) > 0 and covariance[0] == -1.0


def imu_from_msg(msg: Any) -> ImuSample:
    """Roll and pitch from the normalised orientation; its norm is kept for the range check.

    A block whose covariance[0] is -1 is absent (REP-145) and reads as NaN with its flag
    False; so do angular_velocity x and y when both are NaN and z is not (a rate-of-turn
    sensor: instruments_node). An all-zero quaternion with no such mark is an older way of
    saying "no orientation": roll and pitch 0.
    """
    q = msg.orientation
    norm = math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)
    w = msg.angular_velocity
    a = msg.linear_acceleration
    orientation_known = not _absent(msg, 'orientation')
    rates_absent = _absent(msg, 'angular_velocity')
    rates_known = not rates_absent and not (math.isnan(w.x) and math.isnan(w.y)
                                            and not math.isnan(w.z))
    accel_known = not _absent(msg, 'linear_acceleration')
    nan = math.nan
    if not orientation_known:
        roll = pitch = nan
        norm = 1.0
    elif norm == 0.0:
        roll = pitch = 0.0
        norm = 1.0
    elif math.isfinite(norm):
        k = 1.0 if abs(norm - 1.0) < 1e-9 else 1.0 / norm  # unit as sent: read it as is
        roll, pitch = quaternion_to_roll_pitch(q.x * k, q.y * k, q.z * k, q.w * k)
    else:
        roll = pitch = math.nan
    return ImuSample(
        stamp_seconds(msg.header), roll, pitch,
        w.x if rates_known else nan, w.y if rates_known else nan,
        nan if rates_absent else w.z,
        *((a.x, a.y, a.z) if accel_known else (nan, nan, nan)),
        norm, orientation_known, rates_known, accel_known,
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


def fill_imu_msg(msg: Any, sample: ImuSample) -> None:
    """Orientation from roll and pitch (yaw 0: heading has its own topic), rates, accels.

    What the sample does not know is marked as REP-145 says (covariance[0] = -1, zeros in
    the block), the x and y rates of a rate-of-turn sensor as NaN: imu_from_msg's inverse.
    """
    o = msg.orientation
    if sample.orientation_known:
        o.x, o.y, o.z, o.w = roll_pitch_to_quaternion(sample.roll, sample.pitch)
    else:
        o.x, o.y, o.z, o.w = 0.0, 0.0, 0.0, 0.0
        msg.orientation_covariance[0] = -1.0
    w = msg.angular_velocity
    if sample.rates_known or not math.isnan(sample.yaw_rate_z):
        w.x, w.y, w.z = sample.roll_rate, sample.pitch_rate, sample.yaw_rate_z
    else:  # no angular velocity at all (an attitude sensor)
        w.x, w.y, w.z = 0.0, 0.0, 0.0
        msg.angular_velocity_covariance[0] = -1.0
    a = msg.linear_acceleration
    if sample.accel_known:
        a.x, a.y, a.z = sample.accel_x, sample.accel_y, sample.accel_z
    else:
        a.x, a.y, a.z = 0.0, 0.0, 0.0
        msg.linear_acceleration_covariance[0] = -1.0


def fill_heading_msg(msg: Any, sample: HeadingSample) -> None:
    msg.heading = sample.heading


def fill_wind_msg(msg: Any, sample: WindSample) -> None:
    msg.angle, msg.speed = sample.awa, sample.aws


def fill_speed_msg(msg: Any, sample: SpeedSample) -> None:
    msg.twist.linear.x = sample.stw


def fill_rudder_msg(msg: Any, sample: RudderSample) -> None:
    msg.angle = sample.angle
