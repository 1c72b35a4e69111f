"""Conventions at their edges: calms, light air, a bow pointing straight down, range limits.

The cases here are where a sign or a bound would go wrong unnoticed in open water: a true
wind of nothing, a target the wind triangle cannot reach, a non-unit quaternion at 90 deg
pitch, a target exactly on the edge of its mode's range.
"""

import math

import pytest

from autopilot_ros.conventions import (
    TWO_PI,
    apparent_wind,
    quaternion_to_roll_pitch,
    roll_pitch_to_quaternion,
    true_wind,
    twa_for_awa,
    validate_mode,
    wind_target_heading,
    wrap_2pi,
)

DEG = math.pi / 180


def test_a_true_calm_reads_speed_zero_and_keeps_the_apparent_angle():
    # Motoring at 5 m/s into a 5 m/s head wind... with no true wind at all.
    assert true_wind(0.0, 5.0, 5.0) == (0.0, 0.0)
    assert true_wind(0.3, 0.0, 0.0) == pytest.approx((0.3, 0.0))
    # Light air is not a calm: 0.5 m/s of true wind has an angle and a speed.
    twa, tws = true_wind(90 * DEG, 0.5, 0.0)
    assert math.isclose(twa, 90 * DEG) and math.isclose(tws, 0.5)


def test_running_at_wind_speed_is_an_apparent_calm():
    assert apparent_wind(math.pi, 5.0, 5.0) == (math.pi, 0.0)
    awa, aws = apparent_wind(90 * DEG, 0.5, 0.0)
    assert math.isclose(awa, 90 * DEG) and math.isclose(aws, 0.5)


@pytest.mark.parametrize('tws, speed', [(0.5, 0.3), (0.4, 0.1), (8.0, 3.0)])
@pytest.mark.parametrize('target_awa', [40 * DEG, 90 * DEG, -120 * DEG])
def test_awa_target_becomes_the_twa_that_gives_it_in_light_air_too(tws, speed, target_awa):
    twa = twa_for_awa(target_awa, tws, speed)
    awa, _ = apparent_wind(twa, tws, speed)
    assert math.isclose(awa, target_awa, abs_tol=1e-9)


def test_a_beam_true_wind_is_found_from_its_apparent_angle():
    # True wind on the beam: the apparent wind's forward part is the boat's own speed.
    tws, speed = 6.0, 4.0
    assert math.isclose(twa_for_awa(math.atan2(tws, speed), tws, speed), 90 * DEG)


def test_no_wind_at_all_keeps_the_awa_target_as_the_twa_target():
    assert twa_for_awa(0.0, 0.0, 2.0) == 0.0


def test_twa_mode_with_way_on_uses_the_true_wind_not_the_apparent_conversion():
    # Wind from starboard, TWA 110 deg sailed for 100 deg wanted: 10 deg to starboard, with
    # the target taken as a true wind angle as it is (an AWA conversion would move it).
    heading = 1.0
    out = wind_target_heading('wind_twa', 100 * DEG, heading, 110 * DEG, 8.0, 4.0)
    assert math.isclose(out, heading + 10 * DEG)


def test_the_bow_straight_down_or_up_is_pitch_of_90_deg_even_off_unit_length():
    # Slightly longer than unit length: 2(wy - zx) is a little over 1, asin would raise.
    # (Roll is undefined there: gimbal lock.)
    assert quaternion_to_roll_pitch(0.0, 0.7072, 0.0, 0.7072)[1] == math.pi / 2
    assert quaternion_to_roll_pitch(0.0, -0.7072, 0.0, 0.7072)[1] == -math.pi / 2


def _yaw(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


@pytest.mark.parametrize('roll, pitch, yaw', [
    (10 * DEG, -5 * DEG, 30 * DEG), (-25 * DEG, 8 * DEG, -140 * DEG), (3 * DEG, 2 * DEG, 0.0)])
def test_attitude_to_quaternion_round_trips_with_any_yaw(roll, pitch, yaw):
    q = roll_pitch_to_quaternion(roll, pitch, yaw)
    assert math.isclose(math.hypot(*q), 1.0)
    back = quaternion_to_roll_pitch(*q)
    assert math.isclose(back[0], roll, abs_tol=1e-12)
    assert math.isclose(back[1], pitch, abs_tol=1e-12)
    assert math.isclose(_yaw(*q), yaw, abs_tol=1e-12)


def test_attitude_to_quaternion_has_no_yaw_unless_asked():
    assert _yaw(*roll_pitch_to_quaternion(10 * DEG, 5 * DEG)) == pytest.approx(0.0, abs=1e-15)


def test_a_heading_a_hair_below_north_wraps_to_north_not_to_two_pi():
    for angle in (-1e-18, -TWO_PI - 1e-18):
        assert wrap_2pi(angle) == 0.0
    assert 0.0 <= wrap_2pi(-1e-9) < TWO_PI


def test_mode_range_edges_are_the_documented_ones():
    validate_mode('compass', 0.0)
    validate_mode('wind_twa', math.pi)
    with pytest.raises(ValueError, match=r'compass target 6\.28\d* rad not in \[0, 2\*pi\)'):
        validate_mode('compass', TWO_PI)
    with pytest.raises(ValueError, match=r'wind angle target -3\.14\d* rad not in \(-pi, pi\]'):
        validate_mode('wind_awa', -math.pi)


def test_a_refused_mode_says_which_modes_there_are():
    with pytest.raises(ValueError, match="mode 'auto' is not one of standby, compass, wind_awa, "
                                         'wind_twa'):
        validate_mode('auto', 0.0)
    with pytest.raises(ValueError, match='^target must be finite$'):
        validate_mode('compass', math.inf)


@pytest.mark.parametrize('target_awa', [30 * DEG, 100 * DEG, 179 * DEG, -100 * DEG])
def test_an_awa_target_out_of_reach_steers_for_the_widest_awa_there_is(target_awa):
    """Faster than the wind (a light-air cat, a foiler), the apparent wind stays within
    asin(TWS / V) of the bow: a wider target gets that widest AWA on its own side, never
    a dead run (AWA 0, a gybe waiting to happen) for a target aft of the beam."""
    tws, speed = 1.0, 5.0
    awa, _ = apparent_wind(twa_for_awa(target_awa, tws, speed), tws, speed)
    assert awa == pytest.approx(math.copysign(math.asin(tws / speed), target_awa), abs=1e-6)


def test_at_wind_speed_an_awa_aft_of_the_beam_is_only_reached_running_dead_downwind():
    """V = TWS: the apparent wind tends to AWA 90 deg as it dies away on a dead run."""
    assert twa_for_awa(100 * DEG, 4.0, 4.0) == pytest.approx(math.pi)
    assert twa_for_awa(-100 * DEG, 4.0, 4.0) == pytest.approx(math.pi)
