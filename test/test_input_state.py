"""What the pilot knows of its inputs: derived rates, stale readings, targets, the row.

A stale input must read as nothing (zeros, speed 0), never as its last value; rates carry
the sign of the motion; the wind modes resolve their target with what is fresh now.
"""

import math

import numpy as np
import pytest

from autopilot_ros.conventions import GRAVITY, true_wind, wind_target_heading
from autopilot_ros.features import (
    INDEX,
    NUM_FEATURES,
    SCALES,
    Fresh,
    InputState,
    build_features,
    course_in_mode,
    target_heading,
    wind_triangle,
)
from autopilot_ros.inputs import (
    PER_BOAT_RANGES,
    Rejected,
    check_sample,
    input_of,
    trusted_stamp,
    validate_ranges,
)
from autopilot_ros.samples import HeadingSample, ImuSample, RudderSample, SpeedSample, WindSample

DEG = math.pi / 180
ALL_FRESH = Fresh(imu=True, heading=True, wind=True, speed=True, rudder_angle=True)


def fresh(**stale: bool) -> Fresh:
    """All inputs fresh but those named False."""
    flags = {name: True for name in ALL_FRESH.__slots__}
    flags.update(stale)
    return Fresh(**flags)


def sailing(t: float = 1.0) -> InputState:
    """A boat on starboard tack: heading 90 deg, wind 60 deg from starboard, 3 m/s through
    the water, turning to starboard, rudder 0.2 to starboard."""
    state = InputState()
    state.update(ImuSample(t, 0.1, 0.02, 0.2, 0.3, -0.15, 0.5, 0.6, GRAVITY + 0.7))
    state.update(HeadingSample(t, 90 * DEG))
    state.update(WindSample(t, 60 * DEG, 8.0))
    state.update(SpeedSample(t, 3.0))
    state.update(RudderSample(t, 0.2))
    return state


def row(state: InputState, flags: Fresh, mode: str = 'compass', target: float = 1.7,
        target_hdg: float = 100 * DEG, last_command: float = -0.3) -> np.ndarray:
    out = build_features(mode, target, target_hdg, state, flags, last_command,
                         np.full(NUM_FEATURES, 7.0, np.float32))
    return out / SCALES


# -- derived rates --------------------------------------------------------------------------
def test_a_new_state_has_no_rates_and_no_rejection():
    state = InputState()
    assert (state.awa_rate, state.rudder_rate, state.heading_rate) == (0.0, 0.0, 0.0)
    assert state.last_rejection is None
    state.update(WindSample(1.0, 0.5, 6.0))
    state.update(RudderSample(1.0, 0.4))
    assert (state.awa_rate, state.rudder_rate) == (0.0, 0.0)  # one reading is no rate


def test_rates_carry_the_sign_and_size_of_the_motion():
    state = InputState()
    for t, awa, rudder, heading in ((1.0, 170 * DEG, 0.1, 359 * DEG),
                                    (1.5, -170 * DEG, -0.2, 1 * DEG)):
        state.update(WindSample(t, awa, 6.0))
        state.update(RudderSample(t, rudder))
        state.update(HeadingSample(t, heading))
    # Across +-180 deg and across north: the short way round, per second.
    assert state.awa_rate == pytest.approx(20 * DEG / 0.5)
    assert state.heading_rate == pytest.approx(2 * DEG / 0.5)
    assert state.rudder_rate == pytest.approx(-0.3 / 0.5)  # moving to port


def test_each_rate_spans_the_interval_since_the_reading_it_was_last_taken_from():
    state = InputState()
    for t, angle in ((0.0, 0.0), (0.01, 0.1), (0.02, 0.1), (0.52, 0.6)):
        state.update(RudderSample(t, angle))
        if t == 0.01:  # 10 ms apart (100 Hz) is the shortest interval still taken
            assert state.rudder_rate == pytest.approx(10.0)
    assert state.rudder_rate == pytest.approx(1.0)  # 0.5 over the last 0.5 s


def test_a_repeated_stamp_does_not_restart_the_rate_interval():
    state = InputState()
    state.update(HeadingSample(1.0, 0.0))
    state.update(HeadingSample(1.0, 0.1))  # same stamp, corrected value
    state.update(HeadingSample(1.1, 0.2))
    assert state.heading_rate == pytest.approx(2.0)
    assert state.heading.heading == 0.2


# -- stale inputs read as nothing -----------------------------------------------------------
def test_a_stale_imu_reads_zero_and_the_pd_suggestion_uses_no_turn_rate():
    r = row(sailing(), fresh(imu=False))
    for name in ('turn_rate_stbd', 'roll', 'roll_rate', 'pitch', 'pitch_rate', 'accel_surge',
                 'accel_sway', 'accel_heave'):
        assert r[INDEX[name]] == 0.0, name
    assert r[INDEX['pd_suggestion']] == pytest.approx(3.0 * 10 * DEG, rel=1e-5)


def test_a_fresh_imu_damps_the_pd_suggestion_by_the_starboard_turn():
    r = row(sailing(), ALL_FRESH)
    assert r[INDEX['turn_rate_stbd']] == pytest.approx(0.15)
    assert r[INDEX['pd_suggestion']] == pytest.approx(3.0 * 10 * DEG - 5.0 * 0.15, rel=1e-5)


def test_the_pd_suggestion_saturates_at_full_rudder_both_ways():
    state = sailing()
    assert row(state, ALL_FRESH, target_hdg=150 * DEG)[INDEX['pd_suggestion']] == 1.0
    assert row(state, ALL_FRESH, target_hdg=30 * DEG)[INDEX['pd_suggestion']] == -1.0


def test_a_stale_wind_reads_zero():
    r = row(sailing(), fresh(wind=False))
    for name in ('sin_awa', 'cos_awa', 'aws', 'awa_rate', 'sin_twa', 'cos_twa', 'tws'):
        assert r[INDEX[name]] == 0.0, name


def test_speed_reads_only_while_fresh_and_says_so():
    r = row(sailing(), ALL_FRESH)
    assert r[INDEX['stw']] == pytest.approx(3.0) and r[INDEX['speed_valid']] == 1.0
    twa, tws = true_wind(60 * DEG, 8.0, 3.0)
    assert r[INDEX['tws']] == pytest.approx(tws, rel=1e-5)
    assert r[INDEX['sin_twa']] == pytest.approx(math.sin(twa), rel=1e-5)
    r = row(sailing(), fresh(speed=False))
    assert r[INDEX['stw']] == 0.0 and r[INDEX['speed_valid']] == 0.0
    assert r[INDEX['tws']] == pytest.approx(true_wind(60 * DEG, 8.0, 0.0)[1], rel=1e-5)


def test_a_stale_rudder_sensor_reads_as_the_last_command():
    r = row(sailing(), fresh(rudder_angle=False), last_command=-0.3)
    assert r[INDEX['rudder_angle']] == pytest.approx(-0.3) and r[INDEX['rudder_rate']] == 0.0
    assert row(sailing(), ALL_FRESH)[INDEX['rudder_angle']] == pytest.approx(0.2)


# -- targets --------------------------------------------------------------------------------
def test_no_target_heading_from_a_stale_heading_or_wind():
    state = sailing()
    assert target_heading('compass', 1.0, state, fresh(heading=False)) is None
    assert target_heading('compass', 7.0, state, ALL_FRESH) == pytest.approx(7.0 - 2 * math.pi)
    assert target_heading('wind_twa', 1.0, state, fresh(wind=False)) is None
    assert wind_triangle(state, fresh(wind=False)) is None
    assert target_heading('standby', 0.0, state, ALL_FRESH) is None


@pytest.mark.parametrize('mode', ['wind_awa', 'wind_twa'])
def test_a_stale_or_missing_log_is_boat_speed_zero_in_the_wind_modes(mode):
    state = sailing()
    twa, tws = true_wind(60 * DEG, 8.0, 0.0)
    still = wind_target_heading(mode, 50 * DEG, 90 * DEG, twa, tws, 0.0)
    assert target_heading(mode, 50 * DEG, state, fresh(speed=False)) == pytest.approx(still)
    state.speed = None
    assert target_heading(mode, 50 * DEG, state, ALL_FRESH) == pytest.approx(still)
    assert wind_triangle(state, ALL_FRESH) == pytest.approx((twa, tws))


def test_course_in_mode_is_what_the_boat_sails_now_in_that_mode():
    state = sailing()
    assert course_in_mode('compass', state, ALL_FRESH) == pytest.approx(90 * DEG)
    assert course_in_mode('wind_awa', state, ALL_FRESH) == pytest.approx(60 * DEG)
    assert course_in_mode('wind_twa', state, ALL_FRESH) == pytest.approx(
        true_wind(60 * DEG, 8.0, 3.0)[0])
    assert course_in_mode('standby', state, ALL_FRESH) is None


def test_course_in_mode_is_none_when_its_inputs_are_stale():
    state = sailing()
    assert course_in_mode('compass', state, fresh(heading=False)) is None
    assert course_in_mode('wind_awa', state, fresh(wind=False)) is None
    assert course_in_mode('wind_twa', state, fresh(wind=False)) is None
    assert course_in_mode('wind_twa', InputState(), ALL_FRESH) is None
    assert course_in_mode('wind_awa', InputState(), ALL_FRESH) is None
    assert course_in_mode('compass', InputState(), ALL_FRESH) is None


# -- input table helpers --------------------------------------------------------------------
def test_only_per_boat_ranges_follow_the_boat_the_physics_ones_do_not():
    # A boat's table that (wrongly) names a physics field is ignored for it.
    imu = ImuSample(1.0, 0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, GRAVITY)
    assert check_sample(imu, {'imu.yaw_rate_z': (-1.0, 1.0)}) is None
    wind = WindSample(1.0, 0.0, 30.0)
    assert check_sample(wind, {'wind.aws': (0.0, 25.0)})[0] is Rejected.IMPLAUSIBLE


def test_anything_but_a_sample_is_refused_by_name():
    with pytest.raises(TypeError, match='^not a sensor sample: dict$'):
        input_of({'heading': 1.0})


def test_a_stamp_of_one_second_or_exactly_at_the_edges_is_a_real_stamp():
    assert trusted_stamp(1.0, 1.5, 0.05) == (1.0, True)
    assert trusted_stamp(0.0, 0.5, 0.05) == (0.5, False)  # zero: the sender has no clock
    assert trusted_stamp(100.25, 100.0, 0.25) == (100.25, True)
    assert trusted_stamp(99.0, 100.0, 0.25) == (99.0, True)


def test_an_unknown_per_boat_range_lists_the_ones_there_are():
    listed = ', '.join(PER_BOAT_RANGES)
    assert listed == 'wind.aws, speed.stw, rudder_angle.angle'
    with pytest.raises(ValueError, match=rf"^no per-boat plausible range 'imu.roll_rate' "
                                         rf'\(there are: {listed}\)$'):
        validate_ranges({'imu.roll_rate': (-1.0, 1.0)})
