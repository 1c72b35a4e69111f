"""The boat family: ranges held, physics consistent with size, seeds reproducible, held-out
boats fixed, and every instrument imperfection doing what it says on the true state."""

import dataclasses
import math

import numpy as np
import pytest

from autopilot_ros.conventions import wrap_pi
from autopilot_ros.samples import HeadingSample, ImuSample, WindSample
from autopilot_ros.sim.boat import BoatParams
from autopilot_ros.sim.boats import (
    FAMILY,
    HELD_OUT,
    INSTRUMENTS,
    REFERENCE,
    boat_by_name,
    boat_params,
    boats_by_names,
    draw_boat,
    outside_family,
    sensor_config,
)
from autopilot_ros.sim.evaluate import main, run_episode
from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.sim.sensors import SensorConfig
from autopilot_ros.sim.simulator import Simulator

DEG = math.pi / 180


def test_drawn_boats_stay_in_the_documented_ranges_and_cover_them():
    boats = [draw_boat(seed) for seed in range(200)]
    spans = {**FAMILY, **INSTRUMENTS}
    for b in boats:
        assert outside_family(b) == [], b.name
        assert set(b.traits) == set(spans)
    for name, span in spans.items():  # the draws reach both ends of every range
        values = [b.traits[name] for b in boats]
        width = span.high - span.low
        assert min(values) < span.low + 0.1 * width and max(values) > span.high - 0.1 * width
    assert all(0.1 <= b.params.rudder_slew <= 0.5 for b in boats)
    assert all(5.0 <= b.sensors.imu_hz <= 25.0 for b in boats)


def test_the_reference_yacht_is_a_member_of_the_family():
    made = dataclasses.asdict(boat_params())
    for name, value in dataclasses.asdict(BoatParams()).items():
        assert made[name] == pytest.approx(value, rel=1e-12), name
    assert sensor_config() == SensorConfig()


def test_size_decides_what_follows_from_size():
    small, big = boat_params(length=6.0), boat_params(length=18.0)
    # Hull speed ~ sqrt(length): 1.34 kn per sqrt(ft).
    assert small.hull_speed == pytest.approx(1.34 * math.sqrt(6.0 / 0.3048) * 0.514444, rel=0.02)
    assert big.hull_speed / small.hull_speed == pytest.approx(math.sqrt(3.0))
    # A big boat turns more slowly for the same rudder and speed, takes longer to speed up,
    # and is yawed less by the same waves.
    assert big.rudder_gain < small.rudder_gain / 8
    assert big.speed_lag_s > small.speed_lag_s
    assert big.wave_yaw_gain < small.wave_yaw_gain
    assert big.pitch_period_s > small.pitch_period_s


def test_a_seed_is_a_boat():
    assert draw_boat(7) == draw_boat(7)
    assert draw_boat(7).params != draw_boat(8).params

    def trace(boat):
        return run_episode('pid', SCENARIOS['upwind_chop'], 3, keep_trace=True, boat=boat).trace
    a, b = trace(draw_boat(11)), trace(draw_boat(11))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a['heading'], trace(draw_boat(12))['heading'])


def test_the_held_out_boats_are_fixed_named_and_two_are_outside_the_family():
    assert len(HELD_OUT) >= 6
    outside = {name for name, b in HELD_OUT.items() if outside_family(b)}
    assert len(outside) >= 2 and len(HELD_OUT) - len(outside) >= 6
    # No seed of the family draws a held-out boat (training draws from the family).
    params = {b.params for b in HELD_OUT.values()}
    assert not params & {draw_boat(seed).params for seed in range(300)}
    assert boat_by_name('tender_weather_helm') is HELD_OUT['tender_weather_helm']
    assert boat_by_name('reference') is REFERENCE
    assert boat_by_name('family_3') == draw_boat(3)
    assert [b.name for b in boats_by_names(['reference', 'held_out'])] == \
        ['reference', *HELD_OUT]
    with pytest.raises(ValueError, match='unknown boat'):
        boat_by_name('titanic')


# -- instruments -----------------------------------------------------------------------
def _samples(config: SensorConfig, seconds: float = 60.0, scenario: str = 'beam_reach',
             rudder: float = 0.6):
    """(sample, true state at the time the sample reached the pilot) pairs; by default in
    a steady turn, so the compass and the wind keep changing."""
    sim = Simulator(SCENARIOS[scenario], 4, sensor_config=config)
    sim.set_rudder_command(rudder)
    out = []
    for _ in range(int(seconds * 50)):
        sim.step(0.02)
        st = sim.state.copy()
        out += [(s, st) for s in sim.poll_samples()]
    return out


QUIET = dict(noise_scale=0.0, gyro_bias_std=0.0)


def test_a_misaligned_imu_reads_its_mounting_offset_as_heel_and_trim():
    config = sensor_config(**QUIET, imu_misalignment_deg=3.0, misalignment_sign=(1, -1))
    imu = [(s, st) for s, st in _samples(config, 10.0) if isinstance(s, ImuSample)]
    roll = np.mean([s.roll - st.roll for s, st in imu])
    pitch = np.mean([s.pitch - st.pitch for s, st in imu])
    assert roll == pytest.approx(3 * DEG, abs=1e-9) and pitch == pytest.approx(-3 * DEG, abs=1e-9)


def test_a_damped_compass_lags_a_turn_and_an_undamped_one_does_not():
    def lag_deg(config):
        heading = [(s, st) for s, st in _samples(config) if isinstance(s, HeadingSample)]
        return np.mean([abs(wrap_pi(st.heading - s.heading)) for s, st in heading[100:]]) / DEG
    turning = np.mean([abs(st.yaw_rate) for _, st in _samples(sensor_config(**QUIET))[500:]])
    assert lag_deg(sensor_config(**QUIET)) < 1e-6
    # A first-order lag of 0.8 s trails a steady turn by 0.8 s of it.
    assert lag_deg(sensor_config(**QUIET, compass_lag_s=0.8)) == pytest.approx(
        0.8 * turning / DEG, rel=0.25)


def test_a_damped_wind_instrument_smooths_the_mast_swinging_in_a_sea():
    def awa_jitter(config):  # sample-to-sample change: the vane swinging with the mast
        awa = [s.awa for s, _ in _samples(config, 30.0, 'upwind_chop', rudder=0.0)
               if isinstance(s, WindSample)]
        return float(np.std(np.diff(np.unwrap(awa))))
    assert awa_jitter(sensor_config(**QUIET, wind_damping_s=2.0)) < \
        0.3 * awa_jitter(sensor_config(**QUIET))


def test_late_readings_are_stamped_on_arrival_and_show_the_past():
    late = sensor_config(**QUIET, latency_s=0.14)
    pairs = [(s, st) for s, st in _samples(late) if isinstance(s, HeadingSample)]
    assert all(s.stamp == pytest.approx(st.time) for s, st in pairs)  # arrival time
    rate = np.mean([st.yaw_rate for _, st in pairs[100:]])
    behind = np.mean([wrap_pi(st.heading - s.heading) for s, st in pairs[100:]])
    assert behind == pytest.approx(0.14 * rate, rel=0.2)  # 140 ms of the turn behind
    on_time = [(s, st) for s, st in _samples(sensor_config(**QUIET))
               if isinstance(s, HeadingSample)]
    assert all(abs(wrap_pi(st.heading - s.heading)) < 1e-9 for s, st in on_time)


def test_autopilot_eval_takes_boats_and_refuses_unknown_ones(capsys, tmp_path):
    assert main(['--pilots', 'pid', '--boats', 'small_lively', 'family_2', '--scenarios',
                 'calm_compass', '--seeds', '1', '--plot', str(tmp_path / 't.png')]) == 0
    out = capsys.readouterr().out
    assert 'boat: small_lively' in out and 'boat: family_2' in out
    with pytest.raises(SystemExit):
        main(['--boats', 'titanic'])
    assert 'unknown boat' in capsys.readouterr().err


def test_no_family_boat_is_knocked_flat_its_crew_reefs():
    """Heel follows from the design heel: a long roll period and a tender hull must not
    multiply into a boat lying on its side in a gale (no pilot could steer it)."""
    worst = []
    for seed in range(12):
        boat = draw_boat(seed)
        trace = run_episode('pid', SCENARIOS['heavy_weather'], 0, keep_trace=True, boat=boat)
        sim = Simulator(SCENARIOS['heavy_weather'], 0, params=boat.params,
                        sensor_config=boat.sensors)
        heel = []
        for _ in range(1500):  # 30 s on the wind, rudder amidships
            sim.step(0.02)
            heel.append(abs(sim.state.roll))
        worst.append(max(heel))
        assert trace.rms_deg < 15.0, (boat.name, trace.rms_deg)
    assert max(worst) < math.radians(45.0)
