"""autopilot-train tune-pid: the PID's gains searched on a boat in closed loop.

Small budgets and short scenarios (the search's machinery, not its figures: those are
bench/bench_tune_pid.py's), on the real closed loop and scipy's real optimiser. The written
params file is loaded by the installed autopilot node and read back over DDS.
"""

from dataclasses import replace
import math
import os
import pathlib
import subprocess
import time

import numpy as np
import pytest
import yaml

from autopilot_ros.pid_pilot import GAIN_RANGES, PIDGains
from autopilot_ros.sim.boats import HELD_OUT, REFERENCE
from autopilot_ros.sim.evaluate import RunResult
from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.training import tune_pid as tp
from autopilot_ros.training.cli import main as cli_main

pytest.importorskip('scipy')

# A sluggish pilot: a fifth of the default P, a tenth of its D, no integral.
BAD = PIDGains(kp=0.4, ki=0.0, kd=0.5)


def short(*names: str, seconds: float = 60.0) -> list:
    return [replace(SCENARIOS[n], duration_s=seconds) for n in names]


def run(scenario: str, seed: int, rms: float, travel: float, worst: float = 5.0) -> RunResult:
    return RunResult(pilot='pid', scenario=scenario, seed=seed, rms_deg=rms, max_deg=worst,
                     settle_s=math.nan, rudder_travel_per_min=travel, fallback_frac=math.nan)


# -- the objective, from runs made up to the point --------------------------------------------
def test_the_objective_is_one_for_the_default_and_charges_travel_and_lost_boats():
    ref = [run('a', 0, 2.0, 10.0), run('a', 1, 4.0, 14.0), run('b', 0, 1.0, 8.0)]
    assert tp.objective(ref, ref) == pytest.approx(1.0)
    one = [run('a', 0, 3.0, 10.0)]  # by hand: R = (1.5 + 2) / (3 + 2), T = 1
    assert tp.objective([replace(one[0], rms_deg=1.5)], one) == \
        pytest.approx((3.5 / 5.0 + tp.TRAVEL_WEIGHT) / (1.0 + tp.TRAVEL_WEIGHT))
    # Half the error for twice the travel, on every scenario: not better.
    doubled = [run(r.scenario, r.seed, r.rms_deg / 2, r.rudder_travel_per_min * 2)
               for r in ref]
    assert tp.objective(doubled, ref) >= 1.0
    # Half the error for the same travel: better; the same error for less travel: better.
    assert tp.objective([replace(r, rms_deg=r.rms_deg / 2) for r in ref], ref) < 0.9
    assert tp.objective([replace(r, rudder_travel_per_min=r.rudder_travel_per_min / 2)
                         for r in ref], ref) < 1.0
    # A degree gained in a gale counts for more than half a degree gained in a calm.
    calm_ref, gale_ref = run('calm', 0, 0.6, 10.0), run('gale', 0, 5.0, 10.0)
    calm_better = [replace(calm_ref, rms_deg=0.3), replace(gale_ref, rms_deg=5.5)]
    gale_better = [replace(calm_ref, rms_deg=0.8), replace(gale_ref, rms_deg=4.0)]
    assert tp.objective(gale_better, [calm_ref, gale_ref]) < \
        tp.objective(calm_better, [calm_ref, gale_ref])
    # One run of one scenario loses the boat: far above anything that keeps it, and worse
    # the further it went.
    lost = [replace(ref[0], max_deg=90.0), *ref[1:]]
    worse = [replace(ref[0], max_deg=150.0), *ref[1:]]
    assert tp.objective(lost, ref) > 1.0 + tp.LOST_PENALTY / 4
    assert tp.objective(worse, ref) > tp.objective(lost, ref)
    assert tp.objective([replace(ref[0], rms_deg=math.nan, max_deg=math.nan), *ref[1:]],
                        ref) > tp.objective(worse, ref)  # no number: lost at 180 deg
    assert tp.objective([replace(ref[0], max_deg=tp.LOST_DEG), *ref[1:]], ref) == \
        pytest.approx(1.0)  # at the limit it is still steered
    with pytest.raises(ValueError, match='other seeds'):
        tp.objective([replace(r, seed=r.seed + 10) for r in ref], ref)


def test_the_search_space_and_the_gains_round_trip():
    g = PIDGains(kp=2.5, ki=0.4, kd=6.0, integral_limit=0.5, leak_s=200.0)
    assert tp.vector_to_gains(tp.gains_to_vector(g), g) == g
    assert tp.vector_to_gains(tp.gains_to_vector(g), PIDGains()).leak_s == 300.0
    for name, (low, high, _) in tp.SEARCH_SPACE.items():  # every point is a valid pilot
        assert GAIN_RANGES[name][0] <= low < high <= GAIN_RANGES[name][1]
    corners = [tp.vector_to_gains(np.array(b)[:, i], PIDGains()) for i in (0, 1)
               for b in [tp.search_bounds()]]
    for c in corners:
        c.validate()
    pop = tp.initial_population(BAD, 16, seed=4)
    assert pop.shape == (16, len(tp.SEARCH_SPACE))
    assert tp.vector_to_gains(pop[0], BAD) == tp.clamp_to_space(BAD)  # the start is in it
    bounds = np.array(tp.search_bounds())
    assert np.all((pop >= bounds[:, 0]) & (pop <= bounds[:, 1]))
    assert np.array_equal(pop, tp.initial_population(BAD, 16, seed=4))
    assert not np.array_equal(pop, tp.initial_population(BAD, 16, seed=5))


# -- the search, on the real closed loop ------------------------------------------------------
@pytest.fixture(scope='module')
def tuned_from_bad() -> tp.TuneResult:
    """A sluggish start on a tender boat, 10 candidates on two 60 s scenarios, 1 seed."""
    return tp.tune_pid(HELD_OUT['tender_weather_helm'], trials=10, seeds=[300], workers=1,
                       start=BAD, scenarios=short('calm_compass', 'beam_reach'),
                       check_seeds=[0], optimiser_seed=1)


def test_the_search_finds_better_gains_than_a_bad_start(tuned_from_bad):
    r = tuned_from_bad
    assert r.objective_before > 1.2  # the sluggish pilot against the default PID
    assert r.objective_after < r.objective_before - 0.2
    assert r.gains != BAD and r.improved
    assert r.check_after < r.check_before  # and on a seed it never sailed in the search
    assert r.evaluations == 10 and len(r.history) == 2  # 5 candidates x 2 generations
    assert r.history == sorted(r.history, reverse=True)  # the best so far never worsens
    # Per scenario: reference, start and candidates (cached ones counted) on the boat and
    # its two margin boats, then default, start and tuned on the check seed, on the boat alone.
    assert r.runs == 2 * (3 * (2 + 10) + 3)
    assert [x.seed for x in r.before] == [0, 0] == [x.seed for x in r.after]
    table = tp.comparison_table(r)
    assert 'calm_compass' in table and 'beam_reach' in table and 'check seeds 0' in table
    assert f'{r.objective_before:.3f} -> {r.objective_after:.3f}' in table


def test_the_search_is_reproducible_for_a_seed_and_parallel_runs_change_nothing():
    kwargs = dict(trials=10, seeds=[301], start=BAD, scenarios=short('recovery', seconds=40.0),
                  optimiser_seed=7)
    boat = HELD_OUT['small_lively']
    notes = []
    first = tp.tune_pid(boat, workers=1, progress=lambda d, t, n: notes.append((d, t, n)),
                        **kwargs)
    second = tp.tune_pid(boat, workers=2, **kwargs)
    assert (first.gains, first.objective_after, first.history) == \
        (second.gains, second.objective_after, second.history)
    assert [r.rms_deg for r in first.after] == [r.rms_deg for r in second.after]
    dones = [d for d, _, _ in notes]
    assert dones == sorted(dones) and notes[-1][0] == notes[-1][1]  # the bar ends full
    assert any('generation 2/2' in n for _, _, n in notes)


def test_the_tuned_gains_never_lose_to_the_start_on_the_tuning_seeds():
    """One trial: the start alone is sailed, and it is what comes back."""
    r = tp.tune_pid(REFERENCE, trials=1, seeds=[302], scenarios=short('calm_compass',
                                                                        seconds=40.0))
    assert r.gains == PIDGains() and r.objective_after == r.objective_before == 1.0
    with pytest.raises(ValueError, match='trials'):
        tp.tune_pid(REFERENCE, trials=0)


def test_gains_tuned_elsewhere_are_sailed_on_a_boat_as_the_search_sails_them(tuned_from_bad):
    """The study's route: gains tuned on a twin, judged on the true boat."""
    from autopilot_ros.pilot import PilotConfig
    from autopilot_ros.sim.evaluate import run_episode
    scenarios = short('beam_reach', seconds=40.0)
    boat = HELD_OUT['tender_weather_helm']
    default, tuned = tp.evaluate_gains(boat, [PIDGains(), tuned_from_bad.gains], [0, 1],
                                       scenarios=scenarios)
    direct = run_episode('pid', scenarios[0], 1, boat=boat,
                         config=PilotConfig(pid=tuned_from_bad.gains))
    assert [r.seed for r in tuned] == [0, 1] and tuned[1].rms_deg == direct.rms_deg
    assert tp.objective(default, default) == 1.0
    assert tp.objective(tuned, default) < 1.0  # the integral limit holds the weather helm
    with pytest.raises(ValueError, match='kp'):
        tp.evaluate_gains(boat, [PIDGains(kp=-1.0)], [0], scenarios=scenarios)


# -- the params file in the real node -----------------------------------------------------------
def test_the_params_file_is_one_the_node_accepts(tuned_from_bad, tmp_path):
    path = tp.write_params(tuned_from_bad, str(tmp_path / 'sub' / 'pid.yaml'), 'cmd')
    data = yaml.safe_load(pathlib.Path(path).read_text())
    pid = data['/**/autopilot']['ros__parameters']['pid']
    assert set(pid) == set(GAIN_RANGES)
    assert all(isinstance(v, float) for v in pid.values())  # doubles, as declared
    assert PIDGains(**pid) == tuned_from_bad.gains
    assert tp._yaml_float(1e-5) == '0.00001' and tp._yaml_float(2) == '2.0'


@pytest.mark.dds
def test_the_written_params_file_loads_in_the_installed_node(tuned_from_bad, tmp_path,
                                                             rclpy_context):
    """`autopilot_node --ros-args --params-file pid.yaml`, parameters read back over DDS."""
    pytest.importorskip('rclpy')
    from ament_index_python.packages import get_package_prefix
    from rcl_interfaces.srv import GetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    gains = tuned_from_bad.gains
    path = tp.write_params(tuned_from_bad, str(tmp_path / 'pid.yaml'))
    exe = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros/autopilot_node'
    log = tmp_path / 'node.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen([str(exe), '--ros-args', '--params-file', path,
                                 '-r', '__ns:=/tuned'], stdout=out, stderr=subprocess.STDOUT,
                                env=os.environ.copy())
    try:
        probe = Node('probe', context=rclpy_context)
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(probe)
        client = probe.create_client(GetParameters, '/tuned/autopilot/get_parameters')
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not client.service_is_ready():
            executor.spin_once(timeout_sec=0.1)
        assert client.service_is_ready(), log.read_text()
        names = [f'pid.{n}' for n in GAIN_RANGES]
        future = client.call_async(GetParameters.Request(names=names))
        executor.spin_until_future_complete(future, timeout_sec=15.0)
        values = [v.double_value for v in future.result().values]
        assert dict(zip(GAIN_RANGES, values, strict=True)) == vars(gains), log.read_text()
        assert gains != PIDGains()  # not the defaults the node would have had anyway
        executor.shutdown()
        probe.destroy_node()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_the_search_starts_from_a_params_file(tuned_from_bad, tmp_path):
    shipped = pathlib.Path(__file__).resolve().parents[1] / 'config' / 'autopilot.yaml'
    assert tp.load_start(str(shipped)) == PIDGains()  # the node's own file: its defaults
    written = tp.write_params(tuned_from_bad, str(tmp_path / 'pid.yaml'))
    assert tp.load_start(written) == tuned_from_bad.gains
    flat = tmp_path / 'flat.yaml'
    flat.write_text('autopilot:\n  ros__parameters:\n    pid.kp: 3\n    mode: compass\n')
    assert tp.load_start(str(flat)) == PIDGains(kp=3.0)  # dotted names, an integer
    for text, words in (('a: [1\n', 'not YAML'),
                        ('autopilot:\n  ros__parameters:\n    mode: compass\n', 'no pid.*'),
                        ('n:\n  ros__parameters:\n    pid:\n      kq: 1.0\n', 'kq'),
                        ('n:\n  ros__parameters:\n    pid:\n      kp: fast\n', 'not a number'),
                        ('n:\n  ros__parameters:\n    pid:\n      kp: 30.0\n', 'pid.kp 30')):
        bad = tmp_path / 'bad.yaml'
        bad.write_text(text)
        with pytest.raises(ValueError, match=words):
            tp.load_start(str(bad))
    with pytest.raises(ValueError, match='cannot read'):
        tp.load_start(str(tmp_path / 'missing.yaml'))


# -- the command line ---------------------------------------------------------------------------
@pytest.mark.parametrize('args, words', [
    (['--boat', 'nowhere/boat.yaml'], 'boat.yaml'),
    (['--boat', 'no_such_boat'], "unknown boat 'no_such_boat'"),
    (['--boat', 'reference', '--trials', '0'], '--trials'),
    (['--boat', 'reference', '--seeds', '0'], '--seeds'),
    (['--boat', 'reference', '--duration', '10'], '--duration'),
    (['--boat', 'reference', '--start', 'nowhere.yaml'], 'cannot read params file'),
])
def test_bad_input_is_one_message_and_exit_2(args, words, capsys, tmp_path):
    assert cli_main(['tune-pid', *args, '--plot', str(tmp_path / 'p.png')]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and err.startswith('autopilot-train: ') and len(err.splitlines()) == 1
    assert 'Traceback' not in err
    assert not (tmp_path / 'p.png').exists()


def test_a_broken_boat_file_or_an_unwritable_out_is_one_message_before_any_sailing(
        capsys, tmp_path):
    broken = tmp_path / 'boat.yaml'
    broken.write_text('format: autopilot_ros/boat 1\nname: x\nparams:\n  rudder_gain: fast\n')
    assert cli_main(['tune-pid', '--boat', str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert 'rudder_gain' in err and len(err.splitlines()) == 1
    # A file where the folder should be: unwritable for root too (a locked folder is not).
    blocker = tmp_path / 'not_a_folder'
    blocker.write_text('')
    assert cli_main(['tune-pid', '--boat', 'reference', '--out',
                     str(blocker / 'p.yaml')]) == 2
    assert 'is not a writable folder' in capsys.readouterr().err


def test_the_command_tunes_on_a_boat_file_and_prints_and_writes_the_params(capsys, tmp_path):
    """The twin's route: a boat file (as identification writes one) in, gains out."""
    from autopilot_ros.sim.boat_file import save_boat_file
    boat_file = save_boat_file(HELD_OUT['tender_weather_helm'], tmp_path / 'twin.yaml')
    out_file, plot = tmp_path / 'pid.yaml', tmp_path / 'tune.png'
    assert cli_main(['tune-pid', '--boat', str(boat_file), '--trials', '5', '--seeds', '1',
                     '--check-seeds', '1', '--scenarios', 'calm_compass', '--duration', '40',
                     '--workers', '1', '--out', str(out_file), '--plot', str(plot),
                     '--start', str(pathlib.Path(__file__).resolve().parents[1] / 'config' /
                                    'autopilot.yaml')]) == 0
    printed = capsys.readouterr()
    assert 'calm_compass' in printed.out and 'RMS deg' in printed.out
    block = printed.out[printed.out.index('# PID gains'):
                        printed.out.index('\n# on a running pilot')]
    assert yaml.safe_load(block) == yaml.safe_load(out_file.read_text())
    gains = yaml.safe_load(block)['/**/autopilot']['ros__parameters']['pid']
    for name in tp.SEARCH_SPACE:
        assert f'ros2 param set /autopilot pid.{name} {tp._yaml_float(gains[name])}\n' in \
            printed.out
    assert f'autopilot-train tune-pid --boat {boat_file}' in out_file.read_text()
    assert "on boat 'tender_weather_helm'" in out_file.read_text()
    assert plot.stat().st_size > 10_000
    assert 'generation 1/1' in printed.err  # the progress, as lines off a terminal


def test_the_margin_boats_are_what_a_twin_may_hide_and_every_candidate_sails_them_too():
    """Gains tuned on a quick, quiet twin lost its laggy true boat (twin_study.py): every
    candidate also sails the boat later, noisier, more damped and with its rudder weaker and
    stronger (identification's rudder gain errs both ways)."""
    boat = HELD_OUT['laggy_instruments']
    weaker, stronger = tp.margin_boats(boat)
    for hidden in (weaker, stronger):
        assert hidden.sensors.latency_s == pytest.approx(boat.sensors.latency_s + 0.15)
        assert hidden.sensors.compass_lag_s == pytest.approx(boat.sensors.compass_lag_s + 0.4)
        assert hidden.sensors.gyro_noise == pytest.approx(2.0 * boat.sensors.gyro_noise)
        assert hidden.params.weather_helm == boat.params.weather_helm
    assert weaker.params.rudder_gain == pytest.approx(0.8 * boat.params.rudder_gain)
    assert stronger.params.rudder_gain == pytest.approx(1.25 * boat.params.rudder_gain)
    calm = [SCENARIOS['calm_compass']]
    with_margin = tp.tune_pid(boat, trials=5, seeds=[300], scenarios=calm)
    alone = tp.tune_pid(boat, trials=5, seeds=[300], scenarios=calm, margin=False)
    assert with_margin.runs == 3 * alone.runs
    # The table is the boat's own runs either way: the same default-gain run on both.
    assert [r.boat for r in with_margin.before] == [boat.name]
    assert with_margin.before[0].rms_deg == alone.before[0].rms_deg
