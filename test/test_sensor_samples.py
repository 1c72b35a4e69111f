"""Messages to samples and back, without ROS: stamps, wraps, signs and broken orientations.

The converters only read and set attributes, so plain namespaces stand in for rclpy and
rosbags messages here; test_messages.py and test_bags.py cross the real libraries.
"""

from dataclasses import fields
import math
from types import SimpleNamespace as NS

import pytest

from autopilot_ros.conventions import quaternion_to_roll_pitch, roll_pitch_to_quaternion
from autopilot_ros.inputs import INPUTS
from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SpeedSample,
    WindSample,
    heading_from_msg,
    imu_from_msg,
    rudder_from_msg,
    speed_from_msg,
    stamp_seconds,
    wind_from_msg,
)

DEG = math.pi / 180


def header(sec: int = 12, nanosec: int = 250_000_000) -> NS:
    return NS(stamp=NS(sec=sec, nanosec=nanosec))


def vec(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> NS:
    return NS(x=x, y=y, z=z)


def blank(input_name: str) -> NS:
    """An empty message of the input's shape, as a fill_*_msg writer finds it."""
    return {
        'imu': lambda: NS(header=header(), orientation=NS(x=0.0, y=0.0, z=0.0, w=0.0),
                          angular_velocity=vec(), linear_acceleration=vec()),
        'heading': lambda: NS(header=header(), heading=0.0),
        'wind': lambda: NS(header=header(), angle=0.0, speed=0.0),
        'speed': lambda: NS(header=header(), twist=NS(linear=vec(), angular=vec())),
        'rudder_angle': lambda: NS(header=header(), angle=0.0),
    }[input_name]()


def imu_msg(q: tuple[float, float, float, float]) -> NS:
    x, y, z, w = q
    return NS(header=header(), orientation=NS(x=x, y=y, z=z, w=w),
              angular_velocity=vec(0.1, -0.2, -0.3), linear_acceleration=vec(0.5, -1.0, 9.8))


def test_a_header_stamp_is_seconds_plus_nanoseconds():
    assert stamp_seconds(header(12, 250_000_000)) == 12.25
    assert stamp_seconds(header(0, 1)) == 1e-9


SAMPLES = {
    'imu': ImuSample(12.25, 10 * DEG, -4 * DEG, 0.1, -0.2, -0.3, 0.5, -1.0, 9.8),
    'heading': HeadingSample(12.25, 350 * DEG),
    'wind': WindSample(12.25, -40 * DEG, 7.5),
    'speed': SpeedSample(12.25, -0.4),  # sternway
    'rudder_angle': RudderSample(12.25, -0.6),  # to port
}


@pytest.mark.parametrize('spec', INPUTS, ids=lambda i: i.name)
def test_every_input_fills_a_message_that_reads_back_as_the_same_sample(spec):
    msg = blank(spec.name)
    spec.fill_msg(msg, SAMPLES[spec.name])
    back = spec.from_msg(msg)
    assert type(back) is spec.sample_type
    for field in fields(back):
        want = getattr(SAMPLES[spec.name], field.name)
        assert getattr(back, field.name) == pytest.approx(want, abs=1e-12), field.name


def test_converters_read_each_field_where_it_travels():
    assert speed_from_msg(NS(header=header(), twist=NS(linear=vec(x=3.5, y=9.0)))) == \
        SpeedSample(12.25, 3.5)
    assert rudder_from_msg(NS(header=header(), angle=0.3)) == RudderSample(12.25, 0.3)
    assert wind_from_msg(NS(header=header(), angle=0.5, speed=6.0)) == WindSample(12.25, 0.5, 6.0)


def test_angles_wrap_into_their_ranges_and_non_finite_ones_pass_on_to_be_rejected():
    heading = heading_from_msg(NS(header=header(), heading=-10 * DEG))
    assert heading.stamp == 12.25 and math.isclose(heading.heading, 350 * DEG)
    wind = wind_from_msg(NS(header=header(), angle=200 * DEG, speed=4.0))
    assert math.isclose(wind.awa, -160 * DEG) and wind.aws == 4.0
    assert math.isnan(heading_from_msg(NS(header=header(), heading=math.nan)).heading)
    assert heading_from_msg(NS(header=header(), heading=-math.inf)).heading == -math.inf
    assert wind_from_msg(NS(header=header(), angle=math.inf, speed=1.0)).awa == math.inf


def test_a_unit_quaternion_is_read_as_sent_and_a_longer_one_normalised():
    q = roll_pitch_to_quaternion(12 * DEG, -3 * DEG)
    sample = imu_from_msg(imu_msg(q))
    assert sample.stamp == 12.25 and sample.orientation_norm == pytest.approx(1.0)
    assert sample.roll == pytest.approx(12 * DEG) and sample.pitch == pytest.approx(-3 * DEG)
    assert (sample.roll_rate, sample.pitch_rate, sample.yaw_rate_z) == (0.1, -0.2, -0.3)
    assert (sample.accel_x, sample.accel_y, sample.accel_z) == (0.5, -1.0, 9.8)
    # 5 % long (an IMU's rounding): the same attitude, and the norm kept for the range check.
    longer = imu_from_msg(imu_msg(tuple(1.05 * c for c in q)))
    assert longer.orientation_norm == pytest.approx(1.05)
    assert longer.roll == pytest.approx(12 * DEG) and longer.pitch == pytest.approx(-3 * DEG)


def test_a_hair_off_unit_length_is_read_as_is():
    """Within 1e-9 of unit length the components are used unscaled (bit-exact round trips)."""
    q = (0.0, 0.0, 0.0, 1.0 + 5e-10)
    assert imu_from_msg(imu_msg(q)).orientation_norm == 1.0 + 5e-10
    q = roll_pitch_to_quaternion(30 * DEG, 0.0)
    scaled = tuple(c * (1.0 + 5e-10) for c in q)
    exact = imu_from_msg(imu_msg(scaled))
    assert (exact.roll, exact.pitch) == quaternion_to_roll_pitch(*scaled)


def test_no_orientation_reads_level_and_a_broken_one_reads_nan():
    level = imu_from_msg(imu_msg((0.0, 0.0, 0.0, 0.0)))
    assert (level.roll, level.pitch, level.orientation_norm) == (0.0, 0.0, 1.0)
    broken = imu_from_msg(imu_msg((math.nan, 0.0, 0.0, 1.0)))
    assert math.isnan(broken.roll) and math.isnan(broken.pitch)
