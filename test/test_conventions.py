"""The sign conventions of docs/design.md, each stated in plain words.

Never edit one of these to make another test pass: if one fails, the code is wrong.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from autopilot_ros.conventions import (
    apparent_wind,
    heading_error,
    quaternion_to_roll_pitch,
    roll_pitch_to_quaternion,
    true_wind,
    turn_rate_starboard,
    twa_for_awa,
    wrap_2pi,
    wrap_pi,
)
from autopilot_ros.features import FEATURE_NAMES, Fresh, InputState, target_heading
from autopilot_ros.pid_pilot import PIDPilot
from autopilot_ros.samples import HeadingSample, SpeedSample, WindSample

FRESH = Fresh(imu=True, heading=True, wind=True, speed=True, rudder_angle=True)
DEG = math.pi / 180


def test_compass_heading_wraps_to_zero_up_to_two_pi():
    assert wrap_2pi(-10 * DEG) == wrap_2pi(350 * DEG)
    assert wrap_2pi(2 * math.pi) == 0.0
    assert 0.0 <= wrap_2pi(-1e-12) < 2 * math.pi


def test_wind_angles_and_errors_wrap_to_minus_pi_exclusive_plus_pi_inclusive():
    assert wrap_pi(math.pi) == math.pi
    assert wrap_pi(-math.pi) == math.pi
    assert math.isclose(wrap_pi(190 * DEG), -170 * DEG)


def test_target_to_starboard_gives_positive_error_across_north():
    # Heading 350 deg, target 10 deg: turn 20 deg to starboard.
    assert math.isclose(heading_error(10 * DEG, 350 * DEG), 20 * DEG)
    # Heading 10 deg, target 350 deg: turn 20 deg to port.
    assert math.isclose(heading_error(350 * DEG, 10 * DEG), -20 * DEG)


def test_positive_error_asks_for_positive_starboard_rudder_from_the_pid():
    assert PIDPilot().command(0.2, 0.0, None, 0.1) > 0
    assert PIDPilot().command(-0.2, 0.0, None, 0.1) < 0


def test_turning_to_starboard_is_negative_imu_z_and_damps_the_pid():
    # REP-103: z up, so turning clockwise seen from above (to starboard) is negative z.
    assert turn_rate_starboard(-0.1) == 0.1
    assert PIDPilot().command(0.0, turn_rate_starboard(-0.1), None, 0.1) < 0


def test_starboard_side_down_is_positive_roll():
    x, y, z, w = roll_pitch_to_quaternion(10 * DEG, 0.0)
    # A positive rotation about x (forward) takes y (left) up: the starboard side goes down.
    roll, _ = quaternion_to_roll_pitch(x, y, z, w)
    assert math.isclose(roll, 10 * DEG)
    left = np.array([0.0, 1.0, 0.0])
    c, s = math.cos(roll), math.sin(roll)
    rotated = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ left
    assert rotated[2] > 0  # the left (port) side rises


def _rotate(q: tuple[float, float, float, float], v: np.ndarray) -> np.ndarray:
    """v rotated by the unit quaternion q = (x, y, z, w): q v q*, by the textbook formula."""
    u, w = np.array(q[:3]), q[3]
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


def _imu_msg(q: tuple[float, ...]) -> SimpleNamespace:
    """An Imu-shaped message (the converters read and write attributes only)."""
    vec = SimpleNamespace
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=5, nanosec=0)),
        orientation=vec(x=q[0], y=q[1], z=q[2], w=q[3]),
        angular_velocity=vec(x=0.0, y=0.0, z=0.0), linear_acceleration=vec(x=0.0, y=0.0, z=9.8))


# Worked by hand, not by the code under test: a rotation by angle a about a unit axis n is
# q = (n sin(a/2), cos(a/2)). sin 5 deg, cos 5 deg; sin 2 deg, cos 2 deg.
HEEL_10_TO_STARBOARD = (0.0871557427, 0.0, 0.0, 0.9961946981)  # +10 deg about x (forward)
BOW_DOWN_4 = (0.0, 0.0348994967, 0.0, 0.9993908270)  # +4 deg about y (left)


def test_a_heel_to_starboard_is_a_fixed_quaternion_both_ways():
    """10 deg to starboard in an IMU message reads as roll +10 deg, and roll +10 deg is
    written as that very quaternion (a sign flipped in both directions fails here)."""
    from autopilot_ros.samples import ImuSample, fill_imu_msg, imu_from_msg

    # The quaternion really is starboard side down: the left (port) axis rises.
    left = _rotate(HEEL_10_TO_STARBOARD, np.array([0.0, 1.0, 0.0]))
    assert left[2] == pytest.approx(math.sin(10 * DEG))
    assert quaternion_to_roll_pitch(*HEEL_10_TO_STARBOARD) == pytest.approx((10 * DEG, 0.0))
    assert roll_pitch_to_quaternion(10 * DEG, 0.0) == pytest.approx(HEEL_10_TO_STARBOARD)
    sample = imu_from_msg(_imu_msg(HEEL_10_TO_STARBOARD))
    assert (sample.roll, sample.pitch) == pytest.approx((10 * DEG, 0.0))
    msg = _imu_msg((0.0, 0.0, 0.0, 0.0))
    fill_imu_msg(msg, ImuSample(5.0, 10 * DEG, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.8))
    o = msg.orientation
    assert (o.x, o.y, o.z, o.w) == pytest.approx(HEEL_10_TO_STARBOARD)
    # To port is the mirror image.
    port = (-HEEL_10_TO_STARBOARD[0], 0.0, 0.0, HEEL_10_TO_STARBOARD[3])
    assert imu_from_msg(_imu_msg(port)).roll == pytest.approx(-10 * DEG)


def test_bow_down_is_a_fixed_quaternion_both_ways():
    from autopilot_ros.samples import ImuSample, fill_imu_msg, imu_from_msg

    bow = _rotate(BOW_DOWN_4, np.array([1.0, 0.0, 0.0]))
    assert bow[2] == pytest.approx(-math.sin(4 * DEG))  # the bow (x) goes down
    sample = imu_from_msg(_imu_msg(BOW_DOWN_4))
    assert (sample.roll, sample.pitch) == pytest.approx((0.0, 4 * DEG))
    msg = _imu_msg((0.0, 0.0, 0.0, 0.0))
    fill_imu_msg(msg, ImuSample(5.0, 0.0, 4 * DEG, 0.0, 0.0, 0.0, 0.0, 0.0, 9.8))
    o = msg.orientation
    assert (o.x, o.y, o.z, o.w) == pytest.approx(BOW_DOWN_4)


def test_wind_from_starboard_is_a_positive_angle_and_the_head_wind_narrows_it():
    awa, aws = apparent_wind(90 * DEG, 10.0, 5.0)
    assert 0 < awa < 90 * DEG  # boat speed brings the apparent wind forward
    assert aws > 10.0
    twa, tws = true_wind(awa, aws, 5.0)
    assert math.isclose(twa, 90 * DEG) and math.isclose(tws, 10.0)
    assert apparent_wind(-90 * DEG, 10.0, 5.0)[0] < 0  # from port: negative


def test_twa_mode_sailing_too_low_turns_up_towards_the_wind():
    # Wind from starboard at TWA 100 deg; target TWA 90 deg: head up = turn to starboard.
    state = InputState()
    heading = 200 * DEG
    state.update(HeadingSample(0.0, heading))
    awa, aws = apparent_wind(100 * DEG, 10.0, 0.0)
    state.update(WindSample(0.0, awa, aws))
    state.update(SpeedSample(0.0, 0.0))
    target = target_heading('wind_twa', 90 * DEG, state, FRESH)
    assert math.isclose(heading_error(target, heading), 10 * DEG, abs_tol=1e-9)


def test_twa_mode_on_port_tack_heads_up_by_turning_to_port():
    state = InputState()
    heading = 200 * DEG
    state.update(HeadingSample(0.0, heading))
    state.update(WindSample(0.0, -100 * DEG, 10.0))
    state.update(SpeedSample(0.0, 0.0))
    target = target_heading('wind_twa', -90 * DEG, state, FRESH)
    assert math.isclose(heading_error(target, heading), -10 * DEG, abs_tol=1e-9)


def test_awa_mode_target_is_the_twa_that_gives_that_awa_with_this_wind_triangle():
    tws, speed = 8.0, 3.0
    twa = twa_for_awa(35 * DEG, tws, speed)
    assert math.isclose(apparent_wind(twa, tws, speed)[0], 35 * DEG, abs_tol=1e-9)
    # And the mode steers by it: sailing at the target AWA gives zero error.
    state = InputState()
    state.update(HeadingSample(0.0, 1.0))
    awa, aws = apparent_wind(twa, tws, speed)
    state.update(WindSample(0.0, awa, aws))
    state.update(SpeedSample(0.0, speed))
    assert abs(heading_error(target_heading('wind_awa', 35 * DEG, state, FRESH), 1.0)) < 1e-9


def test_feature_spec_has_twenty_five_named_columns():
    assert len(FEATURE_NAMES) == 25
    assert len(set(FEATURE_NAMES)) == 25
