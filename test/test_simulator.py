"""The boat simulator: determinism, sign conventions, physics that make steering hard, the
expert helmsman, and the instruments. Each test checks one fact stated in its name."""

from dataclasses import replace
import functools
import math
from pathlib import Path
import re

import numpy as np
import pytest

from autopilot_ros.samples import HeadingSample, ImuSample, RudderSample, SpeedSample, WindSample
from autopilot_ros.sim.boat import Boat, BoatParams, BoatState, WaveField, WindModel
from autopilot_ros.sim.helmsman import ExpertHelmsman
from autopilot_ros.sim.scenarios import SCENARIOS, Scenario
from autopilot_ros.sim.simulator import Simulator

GRAVITY = 9.80665
CONTROL_DT = 0.1  # the pilots below run at 10 Hz, like the node


def _scenario(**overrides) -> Scenario:
    """A quiet compass scenario (no gusts, shifts or waves) with the given changes."""
    base = Scenario(name='test', description='quiet water', mode='compass', target=0.0,
                    duration_s=60.0, tws=6.0, wind_from=math.radians(90.0), gust=0.0,
                    shift=0.0, step_shift=0.0, wave_height=0.0)
    return replace(base, **overrides)


def _flat_boat(speed: float, rudder: float = 0.0) -> Boat:
    """A boat motoring at constant speed in flat water and no wind."""
    params = BoatParams(speed_lag_s=1e12)
    rng = np.random.default_rng(0)
    wind = WindModel(0.0, 0.0, rng, gust=0.0, shift=0.0, step_shift=0.0)
    waves = WaveField(0.0, 5.0, 0.0, rng, params)
    boat = Boat(BoatState(heading=1.0, speed=speed, rudder=rudder), wind, waves, params)
    boat.rudder_command = rudder
    return boat


def _pd(sim: Simulator) -> float:
    """The simple reference pilot: rudder = kp * heading error - kd * turn rate."""
    kp, kd = 1.0, 2.0
    err = sim.truth_heading_error(sim.target_heading())
    return max(-1.0, min(1.0, kp * err - kd * sim.state.yaw_rate))


@functools.cache
def _heading_error_rms_deg(name: str, seed: int, pilot: str) -> float:
    """Closed-loop heading error RMS over a whole scenario (cached: several tests use it)."""
    scenario = SCENARIOS[name]
    sim = Simulator(scenario, seed)
    expert = ExpertHelmsman(seed + 1000)
    errors = []
    while sim.time < scenario.duration_s - 1e-9:
        target = sim.target_at(sim.time)
        if pilot == 'zero':
            cmd = 0.0
        elif pilot == 'pd':
            cmd = _pd(sim)
        else:
            cmd = expert.command(sim, scenario.mode, target)
        sim.set_rudder_command(cmd)
        sim.step(CONTROL_DT)
        sim.poll_samples()
        errors.append(sim.truth_heading_error(sim.target_heading()))
    return math.degrees(math.sqrt(float(np.mean(np.square(errors)))))


def _run_trace(seed: int, name: str = 'downwind_quartering', seconds: float = 20.0) -> list:
    sim = Simulator(SCENARIOS[name], seed)
    trace = []
    for i in range(int(seconds / CONTROL_DT)):
        sim.set_rudder_command(0.4 * math.sin(0.3 * i))
        sim.step(CONTROL_DT)
        trace.extend(sim.poll_samples())
    trace.append(sim.state.copy())
    return trace


# -- determinism ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_identical_run():
    assert _run_trace(3) == _run_trace(3)


def test_a_different_seed_gives_a_different_run():
    assert _run_trace(3) != _run_trace(4)


def test_how_the_caller_slices_time_does_not_change_the_run():
    a, b = Simulator(SCENARIOS['beam_reach'], 1), Simulator(SCENARIOS['beam_reach'], 1)
    a.step(5.0)
    for _ in range(50):
        b.step(0.1)
    assert a.state == b.state
    assert a.poll_samples() == b.poll_samples()


# -- sign conventions ----------------------------------------------------------------------


def test_positive_rudder_turns_the_boat_to_starboard_so_heading_increases():
    sim = Simulator(_scenario(), seed=0)
    start = sim.state.heading
    sim.set_rudder_command(0.5)
    sim.step(5.0)
    assert sim.state.yaw_rate > 0.0
    turned = math.atan2(math.sin(sim.state.heading - start), math.cos(sim.state.heading - start))
    assert turned > math.radians(5.0)


def test_imu_angular_velocity_z_is_negative_while_turning_to_starboard():
    sim = Simulator(_scenario(), seed=0)
    sim.set_rudder_command(0.6)
    sim.step(5.0)
    sim.poll_samples()
    sim.step(2.0)
    imu = [s for s in sim.poll_samples() if isinstance(s, ImuSample)]
    assert sim.state.yaw_rate > 0.02
    assert np.mean([s.yaw_rate_z for s in imu]) == pytest.approx(-sim.state.yaw_rate, abs=0.01)


def test_heading_stays_in_zero_to_two_pi_while_circling_both_ways():
    for cmd in (1.0, -1.0):
        sim = Simulator(_scenario(target=math.radians(350.0)), seed=0)
        sim.set_rudder_command(cmd)
        headings = []
        for _ in range(600):
            sim.step(CONTROL_DT)
            headings.append(sim.state.heading)
            headings += [s.heading for s in sim.poll_samples() if isinstance(s, HeadingSample)]
        assert all(0.0 <= h < 2.0 * math.pi for h in headings)
        assert max(headings) - min(headings) > math.pi  # it went round through north


def test_wind_from_starboard_gives_positive_wind_angles():
    # Heading north, wind from the east: the wind comes over the starboard side.
    sim = Simulator(_scenario(target=0.0, wind_from=math.radians(90.0)), seed=0)
    assert sim.true_wind()[0] == pytest.approx(math.pi / 2, abs=0.01)
    assert sim.apparent_wind()[0] > 0.0
    sim.step(2.0)
    wind = [s for s in sim.poll_samples() if isinstance(s, WindSample)]
    assert wind and all(s.awa > 0.0 for s in wind)


def test_wind_from_starboard_heels_the_boat_to_port_which_is_negative_roll():
    # REP-103: roll > 0 is starboard side down, so a boat pushed over to port has roll < 0.
    sim = Simulator(_scenario(target=0.0, wind_from=math.radians(60.0), tws=10.0), seed=0)
    for _ in range(100):
        sim.set_rudder_command(_pd(sim))
        sim.step(CONTROL_DT)
    assert sim.true_wind()[0] > math.radians(40.0)
    imu = [s for s in sim.poll_samples() if isinstance(s, ImuSample)]
    assert sim.state.roll < math.radians(-5.0)
    assert np.mean([s.roll for s in imu]) < math.radians(-5.0)
    # Port side down tips the accelerometer's y axis (left) towards the ground.
    assert np.mean([s.accel_y for s in imu]) < -0.5


def test_accelerometer_reads_plus_g_on_z_when_the_boat_is_at_rest():
    sim = Simulator(_scenario(tws=0.0), seed=0)
    sim.step(5.0)
    imu = [s for s in sim.poll_samples() if isinstance(s, ImuSample)]
    assert sim.state.speed == 0.0
    assert np.mean([s.accel_z for s in imu]) == pytest.approx(GRAVITY, abs=0.02)
    assert np.mean([s.accel_x for s in imu]) == pytest.approx(0.0, abs=0.02)
    assert np.mean([s.accel_y for s in imu]) == pytest.approx(0.0, abs=0.02)


def test_wind_angles_are_wrapped_to_minus_pi_pi_and_headings_to_zero_two_pi():
    sim = Simulator(SCENARIOS['downwind_quartering'], seed=2)
    sim.set_rudder_command(0.0)  # it rounds up and swings through many wind angles
    sim.step(60.0)
    samples = sim.poll_samples()
    assert all(-math.pi < s.awa <= math.pi for s in samples if isinstance(s, WindSample))
    assert all(0.0 <= s.heading < 2 * math.pi for s in samples if isinstance(s, HeadingSample))


# -- the rudder ----------------------------------------------------------------------------


def test_the_rudder_actuator_never_moves_faster_than_its_slew_limit():
    sim = Simulator(_scenario(), seed=0)
    slew = sim.params.rudder_slew
    previous = sim.state.rudder
    for cmd in (1.0, -1.0, 0.3):
        sim.set_rudder_command(cmd)
        for _ in range(200):
            sim.step(sim.physics_dt)
            assert abs(sim.state.rudder - previous) <= slew * sim.physics_dt + 1e-12
            previous = sim.state.rudder
    sim.set_rudder_command(0.0)
    sim.step(5.0)
    sim.set_rudder_command(1.0)
    sim.step(1.0)
    assert sim.state.rudder == pytest.approx(slew * 1.0, abs=1e-6)


def test_the_rudder_stays_within_its_range_whatever_is_commanded():
    sim = Simulator(_scenario(), seed=0)
    sim.set_rudder_command(7.0)
    sim.step(10.0)
    assert sim.state.rudder == 1.0
    sim.set_rudder_command(float('nan'))  # garbage is ignored, the last command stands
    sim.step(1.0)
    assert sim.state.rudder == 1.0
    rudder = [s.angle for s in sim.poll_samples() if isinstance(s, RudderSample)]
    assert max(rudder) <= 1.0


def test_rudder_authority_grows_with_speed_but_a_drifting_boat_still_turns_a_little():
    rates = {}
    for speed in (0.0, 1.5, 3.0):
        boat = _flat_boat(speed, rudder=0.5)
        for _ in range(100):  # 2 s
            boat.step(0.02)
        rates[speed] = boat.state.yaw_rate
    assert 0.0 < rates[0.0] < rates[1.5] < rates[3.0]
    assert rates[3.0] > 2.0 * rates[1.5]


# -- disturbances --------------------------------------------------------------------------


def test_the_sea_yaws_a_boat_most_when_it_comes_from_the_quarter():
    params = BoatParams()
    waves = WaveField(2.5, 6.5, 0.0, np.random.default_rng(0), params)
    offsets = np.arange(0.0, 120.0, 0.1)

    def yaw_std(wave_angle_deg: float) -> float:
        # Waves come from north; the boat heads so that they arrive at wave_angle_deg.
        heading = math.radians(-wave_angle_deg) % (2 * math.pi)
        return float(np.std(waves.yaw_moment_forecast(0.0, 0.0, 0.0, heading, 3.0,
                                                      offsets, params)))

    quarter = yaw_std(140.0)
    assert quarter > 2.0 * yaw_std(30.0)  # on the bow
    assert quarter > 1.5 * yaw_std(90.0)  # on the beam


def test_flat_water_has_no_wave_yaw():
    sim = Simulator(_scenario(), seed=0)
    assert np.all(sim.wave_yaw_forecast() == 0.0)


def test_gusts_and_shifts_move_the_true_wind():
    sim = Simulator(SCENARIOS['heavy_weather'], seed=0)
    tws, direction = [], []
    for _ in range(300):
        sim.step(0.5)
        tws.append(sim.boat.wind.tws)
        direction.append(sim.boat.wind.wind_from)
    assert np.std(tws) > 0.1 * SCENARIOS['heavy_weather'].tws
    assert np.ptp(np.unwrap(direction)) > math.radians(5.0)


# -- steering ------------------------------------------------------------------------------


def test_with_the_rudder_amidships_the_boat_wanders_off_in_quartering_seas():
    assert _heading_error_rms_deg('downwind_quartering', 0, 'zero') > 30.0


def test_the_expert_holds_the_course_in_quartering_seas():
    assert _heading_error_rms_deg('downwind_quartering', 0, 'expert') < 8.0


@pytest.mark.parametrize('name', ['calm_compass', 'downwind_quartering'])
def test_the_expert_beats_a_simple_pd_pilot(name):
    seeds = (0, 1)
    expert = [_heading_error_rms_deg(name, s, 'expert') for s in seeds]
    pd = [_heading_error_rms_deg(name, s, 'pd') for s in seeds]
    assert all(e < p for e, p in zip(expert, pd, strict=True)), (expert, pd)


def test_a_perfect_expert_is_deterministic_and_commands_within_range():
    def commands() -> list[float]:
        scenario = SCENARIOS['heavy_weather']
        sim = Simulator(scenario, 0)
        expert = ExpertHelmsman(5, imperfection=0.0)
        out = []
        for _ in range(100):
            out.append(expert.command(sim, scenario.mode, sim.target_at(sim.time)))
            sim.set_rudder_command(out[-1])
            sim.step(CONTROL_DT)
        return out

    first = commands()
    assert first == commands()
    assert all(-1.0 <= c <= 1.0 for c in first)


# -- scenarios -----------------------------------------------------------------------------


def test_the_required_scenarios_exist_with_valid_modes():
    required = {'calm_compass', 'upwind_chop', 'beam_reach', 'downwind_quartering',
                'heavy_weather', 'recovery'}
    assert required <= set(SCENARIOS)
    assert all(s.mode in ('compass', 'wind_awa', 'wind_twa') for s in SCENARIOS.values())


def test_target_changes_apply_from_their_time_on():
    scenario = SCENARIOS['calm_compass']
    (when, value), = scenario.target_changes
    sim = Simulator(scenario, 0)
    assert sim.target_at(when - 0.1) == scenario.target
    assert sim.target_at(when) == value
    assert abs(math.degrees(value - scenario.target)) == pytest.approx(30.0, abs=5.0)


def test_wind_mode_runs_start_on_their_target_wind_angle():
    twa_run = Simulator(SCENARIOS['downwind_quartering'], 0)
    assert twa_run.true_wind()[0] == pytest.approx(SCENARIOS['downwind_quartering'].target,
                                                   abs=math.radians(5.0))
    awa_run = Simulator(SCENARIOS['upwind_chop'], 0)
    assert awa_run.apparent_wind()[0] == pytest.approx(SCENARIOS['upwind_chop'].target,
                                                       abs=math.radians(5.0))


def test_recovery_starts_30_to_90_degrees_off_course_depending_on_the_seed():
    offsets = []
    for seed in range(6):
        sim = Simulator(SCENARIOS['recovery'], seed)
        offsets.append(abs(math.degrees(sim.truth_heading_error(sim.target_heading()))))
    assert all(30.0 <= o <= 90.0 for o in offsets)
    assert len({round(o, 3) for o in offsets}) == len(offsets)


# -- instruments ---------------------------------------------------------------------------


def test_sensor_rates_are_about_right_over_ten_seconds():
    sim = Simulator(SCENARIOS['beam_reach'], seed=0)
    sim.step(10.0)
    samples = sim.poll_samples()
    counts = {kind: sum(isinstance(s, kind) for s in samples)
              for kind in (ImuSample, HeadingSample, WindSample, SpeedSample, RudderSample)}
    expected = {ImuSample: 500, HeadingSample: 100, WindSample: 50, SpeedSample: 20,
                RudderSample: 200}
    for kind, n in expected.items():
        assert abs(counts[kind] - n) <= max(1, 0.02 * n), (kind.__name__, counts[kind])


def test_samples_are_stamped_with_sim_time_in_order_and_polled_once():
    sim = Simulator(SCENARIOS['upwind_chop'], seed=0)
    sim.step(3.0)
    first = sim.poll_samples()
    sim.step(3.0)
    second = sim.poll_samples()
    stamps = [s.stamp for s in first + second]
    assert stamps == sorted(stamps)
    assert 0.0 < stamps[0] and stamps[-1] <= 6.0 + 1e-9
    assert max(s.stamp for s in first) < min(s.stamp for s in second)
    assert sim.poll_samples() == []


def test_the_simulator_code_does_not_import_rclpy():
    sim_dir = Path(__file__).resolve().parents[1] / 'autopilot_ros' / 'sim'
    imports = re.compile(r'^\s*(import|from)\s+rclpy\b', re.MULTILINE)
    for path in sim_dir.glob('*.py'):
        assert not imports.search(path.read_text()), path.name


def test_the_closed_loop_hands_every_sample_to_the_sink_and_follows_target_changes():
    """One loop for evaluation, recordings and sim_node: same boat, same samples, same run."""
    from autopilot_ros.pilot import Pilot
    from autopilot_ros.sim.loop import ClosedLoop, PilotSteer

    scenario = SCENARIOS['calm_compass']  # a 30 deg alteration at 90 s
    runs = []
    for _ in range(2):
        sunk = []
        steer = PilotSteer(Pilot(), scenario.mode, scenario.target_at(0.0))
        loop = ClosedLoop(scenario, 3, rate_hz=10.0, steer=steer, sink=sunk.append).run()
        runs.append((loop, sunk, steer))
    (loop, sunk, steer), (again, sunk_again, _) = runs
    assert loop.changes == [0.0, 90.0] and loop.ticks == 1800 and loop.done
    assert steer.pilot.target == pytest.approx(scenario.target_at(100.0))
    trace = loop.trace()
    assert len(trace['t']) == 1800 and trace['t'][-1] == pytest.approx(scenario.duration_s)
    assert sunk == sunk_again and np.array_equal(trace['err'], again.trace()['err'])
    free = Simulator(scenario, 3)  # the same boat with the rudder held amidships ...
    free.step(0.1)
    first = free.poll_samples()
    assert sunk[:len(first)] == first  # ... emitted the same samples before the first command
    assert abs(np.degrees(trace['err'][-100:])).max() < 5.0  # and the PD pilot is on course
