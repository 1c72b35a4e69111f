"""Boat files: a boat written is the boat read, every tool sails it, and a bad one says why."""

from dataclasses import fields, replace
import json
import pathlib
import subprocess

import pytest

from autopilot_ros.sim.boat import BoatParams
from autopilot_ros.sim.boat_file import (
    PARAM_RANGES,
    SENSOR_RANGES,
    BoatFileError,
    load_boat_file,
    save_boat_file,
)
from autopilot_ros.sim.boats import HELD_OUT, REFERENCE, boat_by_name, draw_boat
from autopilot_ros.sim.evaluate import main as eval_main
from autopilot_ros.sim.evaluate import run_episode
from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.sim.sensors import SensorConfig

BOATS = [REFERENCE, *HELD_OUT.values(), *(draw_boat(s) for s in range(5))]


def test_every_field_has_a_range_and_every_boat_of_the_package_is_inside_it():
    assert set(PARAM_RANGES) == {f.name for f in fields(BoatParams)}
    assert set(SENSOR_RANGES) == {f.name for f in fields(SensorConfig)}
    for boat in BOATS:
        for name, (low, high) in PARAM_RANGES.items():
            assert low <= getattr(boat.params, name) <= high, (boat.name, name)
        for name, (low, high) in SENSOR_RANGES.items():
            assert low <= getattr(boat.sensors, name) <= high, (boat.name, name)


@pytest.mark.parametrize('boat', BOATS[:10], ids=lambda b: b.name)
def test_a_boat_written_reads_back_as_the_same_boat(tmp_path, boat):
    path = save_boat_file(boat, tmp_path / 'boat.yaml', identified={'from': ['a.mcap']},
                          comment='a test boat')
    back = load_boat_file(path)
    assert back.name == boat.name
    assert back.params == boat.params
    assert back.sensors == boat.sensors
    assert path.read_text().startswith('# a test boat\n')


def test_a_hand_written_file_keeps_the_defaults_of_what_it_leaves_out(tmp_path):
    path = tmp_path / 'my_boat.yml'
    path.write_text('params:\n  weather_helm: 0.9\n  length: 8\nsensors:\n  imu_hz: 10\n')
    boat = load_boat_file(path)
    assert boat.name == 'my_boat'
    assert boat.params == replace(BoatParams(), weather_helm=0.9, length=8.0)
    assert boat.sensors == replace(SensorConfig(), imu_hz=10.0)
    assert boat_by_name(str(path)).params == boat.params  # every --boat/--boats accepts it


@pytest.mark.parametrize('text, message', [
    (None, 'cannot read boat file'),
    ('params: [1, 2', 'is not valid YAML (line 1)'),
    ('- a list\n', 'a boat file is a mapping'),
    ('format: other 2\n', "format 'other 2' is not 'autopilot_ros/boat 1'"),
    ('boat: {}\n', 'unknown key(s) boat'),
    ('params: {rudder_gian: 0.01}\n', 'unknown params field(s) rudder_gian'),
    ('params: {rudder_gain: fast}\n', "params.rudder_gain must be a number, not 'fast'"),
    ('params: {rudder_slew: true}\n', 'params.rudder_slew must be a number'),
    ('params: {roll_period_s: .nan}\n', 'params.roll_period_s = nan is outside'),
    ('params: {hull_speed: 80}\n', 'params.hull_speed = 80 is outside [0.5, 20]'),
    ('sensors: {imu_roll_offset: 3}\n', 'sensors.imu_roll_offset = 3 is outside'),
    ('sensors: 5\n', "'sensors' must be a mapping"),
    ('identified: yes\n', 'identified must be a mapping'),
])
def test_a_bad_boat_file_gets_one_message_naming_the_field(tmp_path, text, message):
    path = tmp_path / 'boat.yaml'
    if text is not None:
        path.write_text(text)
    with pytest.raises(BoatFileError) as err:
        load_boat_file(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_a_boat_the_file_could_not_hold_is_not_written(tmp_path):
    bad = replace(REFERENCE, params=replace(BoatParams(), roll_period_s=-1.0))
    with pytest.raises(BoatFileError, match='params.roll_period_s = -1 is outside'):
        save_boat_file(bad, tmp_path / 'boat.yaml')
    assert not (tmp_path / 'boat.yaml').exists()


def test_the_closed_loop_sails_the_file_as_it_sails_the_boat(tmp_path):
    boat = HELD_OUT['tender_weather_helm']
    path = save_boat_file(boat, tmp_path / 'tender.yaml')
    scenario = SCENARIOS['upwind_chop']
    direct = run_episode('pid', scenario, 1, boat=boat)
    from_file = run_episode('pid', scenario, 1, boat=load_boat_file(path))
    assert from_file.rms_deg == direct.rms_deg
    assert from_file.rudder_travel_per_min == direct.rudder_travel_per_min
    assert direct.rms_deg != run_episode('pid', scenario, 1).rms_deg  # not the reference


def test_autopilot_eval_sails_a_boat_file_and_refuses_a_bad_one(tmp_path, capsys):
    path = save_boat_file(HELD_OUT['small_lively'], tmp_path / 'lively.yaml')
    runs = tmp_path / 'runs.json'
    assert eval_main(['--pilots', 'pid', '--scenarios', 'calm_compass', '--seeds', '1',
                      '--boats', 'reference', '--boat', str(path), '--workers', '1',
                      '--plot', str(tmp_path / 'p.png'), '--json', str(runs)]) == 0
    boats = [r['boat'] for r in json.loads(runs.read_text())]
    assert boats == ['reference', 'small_lively']
    (tmp_path / 'bad.yaml').write_text('params: {length: 900}\n')
    with pytest.raises(SystemExit) as exit_:
        eval_main(['--pilots', 'pid', '--boat', str(tmp_path / 'bad.yaml')])
    assert exit_.value.code == 2
    assert 'params.length = 900 is outside [1, 60]' in capsys.readouterr().err


@pytest.mark.dds
def test_sim_node_sails_the_boat_file_it_is_given(tmp_path):
    """Nobody steers (rudder amidships): the run is the boat's own, so it equals the same
    boat sailed in process, and differs from the reference yacht's."""
    from ament_index_python.packages import get_package_prefix
    exe = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros/sim_node'
    boat = HELD_OUT['small_lively']
    path = save_boat_file(boat, tmp_path / 'lively.yaml')
    out = tmp_path / 'summary.json'
    proc = subprocess.run(
        [str(exe), '--ros-args', '-p', 'scenario:=calm_compass', '-p', 'real_time_factor:=200.0',
         '-p', 'engage_autopilot:=false', '-p', f'boat_file:={path}',
         '-p', f'summary_path:={out}'],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'boat small_lively' in proc.stdout + proc.stderr
    (result,) = json.loads(out.read_text())['results']
    assert result['boat'] == 'small_lively'
    mine = run_episode('zero', SCENARIOS['calm_compass'], 0, boat=boat).rms_deg
    reference = run_episode('zero', SCENARIOS['calm_compass'], 0).rms_deg
    assert abs(result['rms_deg'] - mine) < 0.1 * abs(mine - reference), (result, mine, reference)


@pytest.mark.dds
def test_sim_node_refuses_a_bad_boat_file_in_one_line(tmp_path):
    from ament_index_python.packages import get_package_prefix
    exe = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros/sim_node'
    proc = subprocess.run([str(exe), '--ros-args', '-p', f'boat_file:={tmp_path}/none.yaml'],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert f'cannot read boat file {tmp_path}/none.yaml' in proc.stdout
    assert 'Traceback' not in proc.stdout + proc.stderr
