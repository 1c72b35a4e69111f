"""autopilot-train identify: a simulated boat's parameters recovered from real bags.

The recordings are real rosbag2 bags written by the package's BagWriter (write_demo_bag: the
simulator's expert steering by hand, as `autopilot-train simulate` records), read back by the
bag reader and fitted by scipy's least_squares through the command line, as a sailor runs it.
"""

from __future__ import annotations

from dataclasses import replace
import math
from pathlib import Path

import pytest

from autopilot_ros.sim.boat_file import load_boat_file
from autopilot_ros.sim.boats import REFERENCE, boat_by_name
from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.sim.simulator import Simulator
from autopilot_ros.training import identify as idm
from autopilot_ros.training.bags import BagWriter
from autopilot_ros.training.cli import main
from autopilot_ros.training.demos import demo_recording, write_demo_bag

pytest.importorskip('scipy')

FIT = (('calm_compass', 1000), ('upwind_chop', 1001), ('recovery', 1002))
HOLDOUT = ('recovery', 1100)


def _steady_turn(params, u: float = 3.0) -> float:
    """Steady turn rate per unit rudder at speed u: what a helmsman feels of the boat."""
    return params.rudder_gain * u * u / (params.yaw_damping_base
                                         + params.yaw_damping_per_speed * u)


@pytest.fixture(scope='module')
def identified(tmp_path_factory) -> tuple[Path, int, str]:
    """Eight minutes of the reference yacht in three scenarios, and a held-out recovery."""
    root = tmp_path_factory.mktemp('identify')
    for name, seed in FIT:
        write_demo_bag(root / 'bags' / f'{name}_{seed}', SCENARIOS[name], seed,
                       storage='mcap' if seed % 2 else 'sqlite3')
    write_demo_bag(root / 'holdout', SCENARIOS[HOLDOUT[0]], HOLDOUT[1])
    out = root / 'out' / 'twin.yaml'
    code = main(['identify', '--bags', str(root / 'bags'), '--holdout', str(root / 'holdout'),
                 '--out', str(out)])
    return out, code, ''


def test_identify_recovers_the_yachts_yaw_rudder_and_speed(identified):
    """Tolerances: the yaw parameters within 15 % (the issue's aim where the data identify
    them; the bench finds 2-6 % on this data), weather helm within 0.05 (it is identified
    from ~3 deg of heel variation), hull speed within 3 % (hundreds of log readings on a
    known polar), slew within 5 % (the expert's commands saturate the actuator a quarter of
    the time). Damping base and per speed are not asked for one by one: with 2-3 m/s of
    speed in these eight minutes they trade against each other (the report says so); their
    effect, the steady turn rate per unit rudder, is."""
    out, code, _ = identified
    assert code == 0
    twin = load_boat_file(out).params
    true = REFERENCE.params
    assert twin.rudder_gain == pytest.approx(true.rudder_gain, rel=0.15)
    assert _steady_turn(twin) == pytest.approx(_steady_turn(true), rel=0.15)
    assert twin.weather_helm == pytest.approx(true.weather_helm, abs=0.05)
    assert twin.hull_speed == pytest.approx(true.hull_speed, rel=0.03)
    assert twin.length == pytest.approx(true.length, rel=0.06)
    assert twin.rudder_slew == pytest.approx(true.rudder_slew, rel=0.05)


def test_the_report_beats_both_naive_predictors_and_says_what_is_assumed(identified):
    out, _, _ = identified
    import yaml

    doc = yaml.safe_load(out.read_text())
    block = doc['identified']
    for horizon in ('10s', '30s'):
        errors = block['holdout'][f'heading_rms_deg_{horizon}']
        assert errors['model'] < 0.7 * errors['constant turn rate'], errors
        assert errors['model'] < 0.7 * errors['keeps heading'], errors
    params = block['params']
    assert params['rudder_gain']['identified'] and params['rudder_gain']['std'] > 0
    assert not params['wave_yaw_gain']['identified']
    assert params['wave_yaw_gain']['how'].startswith('assumed, not identified')
    # What the data could not identify: one line each, in the YAML and in the report.
    report = out.with_name('twin_fit.md').read_text()
    assert 'keeps heading' in report
    for warning in block['warnings']:
        assert f'- {warning}' in report
    assert out.with_name('twin_fit.png').stat().st_size > 10_000
    assert block['disturbance'][0]['gust_level'] > 0.0


def test_the_simulator_sails_the_identified_boat(identified):
    out, _, _ = identified
    spec = load_boat_file(out)
    sim = Simulator(SCENARIOS['beam_reach'], seed=3, params=spec.params,
                    sensor_config=spec.sensors)
    sim.set_rudder_command(0.1)
    sim.step(20.0)
    assert sim.poll_samples()
    assert math.isfinite(sim.state.heading) and sim.state.speed > 0.5


def _bag_without(path: Path, scenario: str, seed: int, drop: str = '',
                 duration: float | None = None, speed: float | None = None) -> Path:
    """A real bag of the expert sailing, without one input (or with a constant log)."""
    sc = SCENARIOS[scenario]
    if duration is not None:
        sc = replace(sc, duration_s=duration)
    rec = demo_recording(sc, seed)
    with BagWriter(path, 'mcap') as bag:
        for key, samples in rec.samples.items():
            if key == drop:
                continue
            for s in samples:
                if key == 'speed' and speed is not None:
                    s = replace(s, stw=speed)
                bag.write_sample(s)
    return path


@pytest.mark.parametrize('drop, duration, message', [
    ('rudder_angle', None, 'has no rudder angle (topic rudder_angle): identification needs'),
    ('speed', None, 'has no speed through water (topic speed): identification needs the log'),
    ('', 60.0, 'too short to fit: 45 s to fit and 15 s to check'),
])
def test_bad_input_is_one_message(tmp_path: Path, capsys, drop, duration, message):
    bag = _bag_without(tmp_path / 'bag', 'calm_compass', 5, drop=drop, duration=duration)
    code = main(['identify', '--bags', str(bag), '--out', str(tmp_path / 'boat.yaml')])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err, err
    # Progress lines go to stderr too; the failure is one line, and no traceback.
    assert [line for line in err.splitlines() if line.startswith('autopilot-train:')] == [
        next(line for line in err.splitlines() if message in line)]
    assert 'Traceback' not in err
    if duration is not None:
        assert 'needs at least 120 s to fit and 40 s to check' in err
    assert not (tmp_path / 'boat.yaml').exists()


def test_a_log_that_only_ever_sent_not_a_number_is_one_message(tmp_path: Path, capsys):
    """Messages on the topic, no value in any: said by name, and the hint training asks for
    says it too rather than stopping training."""
    from autopilot_ros.training.bags import read_bag
    from autopilot_ros.training.identify import identifiable

    bag = _bag_without(tmp_path / 'bag', 'calm_compass', 5, speed=math.nan)
    code = main(['identify', '--bags', str(bag), '--out', str(tmp_path / 'boat.yaml')])
    err = capsys.readouterr().err
    message = 'the speed through water never has a value (every reading absent or not a number)'
    assert code == 2 and message in err and 'Traceback' not in err
    assert message in identifiable([read_bag(bag)])


def test_a_log_that_never_changes_is_said_and_the_rest_still_fitted(tmp_path: Path, capsys):
    bag = _bag_without(tmp_path / 'bag', 'calm_compass', 5, speed=2.0)
    code = main(['identify', '--bags', str(bag), '--out', str(tmp_path / 'boat.yaml')])
    assert code == 0
    text = capsys.readouterr().err
    assert 'not identified: the speed never varied much' in text
    assert 'yaw damping base and per speed not separable' in text
    block = load_boat_file(tmp_path / 'boat.yaml')
    assert block.params.speed_lag_s == pytest.approx(boat_by_name('reference').params
                                                      .speed_lag_s, rel=0.1)


def test_gyro_bias_is_the_gyro_against_the_compass():
    """The simulator draws one gyro bias per run; the track recovers it from the compass's
    net turn (0.2 mrad/s: the compass's noise over three minutes)."""
    from autopilot_ros.sim.loop import ClosedLoop

    sc = SCENARIOS['calm_compass']
    loop = ClosedLoop(sc, 11, rate_hz=10.0, steer=lambda sim, target, s, now: 0.05)
    samples: dict[str, list] = {k: [] for k in ('imu', 'heading', 'wind', 'speed',
                                                'rudder_angle')}
    from autopilot_ros.inputs import input_of

    loop.sink = lambda s: samples[input_of(s).name].append(s)
    loop.run()

    class Rec:
        path = 'sim'

    Rec.samples = samples
    tr = idm.track_of(Rec())
    assert tr.gyro_bias_z == pytest.approx(loop.sim.sensors.gyro_bias[2], abs=2e-4)


def test_without_a_recorded_command_the_slew_is_assumed_and_said(tmp_path: Path, capsys):
    """A bag of someone steering by hand with a plain recorder: no rudder_command, no status."""
    bag = _bag_without(tmp_path / 'bag', 'calm_compass', 6, drop='autopilot/status')
    code = main(['identify', '--bags', str(bag), '--out', str(tmp_path / 'boat.yaml')])
    assert code == 0
    assert 'not identified: no rudder command recorded' in capsys.readouterr().err
    import yaml

    block = yaml.safe_load((tmp_path / 'boat.yaml').read_text())['identified']
    assert not block['params']['rudder_slew']['identified']
    assert any(w.startswith('no rudder command recorded') for w in block['warnings'])


@pytest.mark.parametrize('lag', [0.0, 0.6])
def test_the_compass_lag_is_the_compass_against_the_gyro(lag):
    """A damped compass (its lag) is read from the compass against the integrated gyro, not
    from the yaw model: fitted with the yaw model it traded against the damping (0.14 s for
    laggy_instruments' 0.8), and a PID tuned on that twin lost the true boat downwind.
    Twelve minutes of the reference yacht with a noisy, late, 5 Hz compass and gyro (as
    laggy_instruments); the tolerance is about one standard deviation of the lag there
    (0.01 s without lag, 0.19 s with 0.6 s: a lagging compass hides more of the turns)."""
    from autopilot_ros.training.demos import mixed_recordings

    sensors = replace(REFERENCE.sensors, compass_lag_s=lag, heading_hz=5.0, imu_hz=5.0,
                      heading_noise=2 * REFERENCE.sensors.heading_noise, latency_s=0.15)
    boat = replace(REFERENCE, name='lagging_compass', sensors=sensors)
    ident = idm.identify(mixed_recordings(boat, 12.0, 1000), name='twin')
    assert ident.instruments['compass_lag_s'] == pytest.approx(lag, abs=0.2 if lag else 0.05)
    assert ident.spec.sensors.compass_lag_s == ident.instruments['compass_lag_s']


@pytest.mark.parametrize('name, damping', [('heavy_long_keel', 1.5), ('small_lively', 0.0)])
def test_the_wind_instruments_damping_is_the_awa_against_the_gyro(name, damping):
    """The wind instrument's damping, from the AWA against the integrated gyro: half an hour
    of the expert in the six scenarios (12 minutes, with few turns, found nothing on
    heavy_long_keel and is said so). In wind modes the pilot steers on this reading, and
    laggy_instruments' 2 s missing from its twin let gains tuned there lose it downwind."""
    from autopilot_ros.training.demos import mixed_recordings

    ident = idm.identify(mixed_recordings(boat_by_name(name), 30.0, 1000), name='twin')
    assert ident.instruments['wind_damping_s'] == pytest.approx(damping, abs=0.35)
    assert ident.spec.sensors.wind_damping_s == ident.instruments['wind_damping_s']
    short = idm.identify(mixed_recordings(boat_by_name(name), 12.0, 1000), name='twin')
    if name == 'heavy_long_keel':
        assert short.spec.sensors.wind_damping_s == 0.0
        assert any('wind instrument damping not identified' in w for w in short.warnings)
