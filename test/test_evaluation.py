"""The closed-loop evaluation is honest: it tells a pilot from no pilot, reproducibly."""

import math

import pytest

from autopilot_ros.sim.evaluate import main, run_episode, summary_table
from autopilot_ros.sim.scenarios import SCENARIOS


def test_pd_holds_the_calm_course_and_a_zero_rudder_does_not():
    pd = run_episode('pd', SCENARIOS['calm_compass'], seed=0)
    zero = run_episode('zero', SCENARIOS['calm_compass'], seed=0)
    assert pd.rms_deg < 6.0 and math.isfinite(pd.settle_s)
    assert zero.rms_deg > 3 * pd.rms_deg
    assert math.isnan(zero.settle_s)
    assert zero.rudder_travel_per_min == 0.0 and pd.rudder_travel_per_min > 0.0


def test_the_expert_beats_pd_where_waves_matter():
    pd = run_episode('pd', SCENARIOS['downwind_quartering'], seed=1)
    expert = run_episode('expert', SCENARIOS['downwind_quartering'], seed=1)
    assert expert.rms_deg < pd.rms_deg


def test_numbers_are_reproducible_for_a_fixed_seed():
    a = run_episode('pd', SCENARIOS['upwind_chop'], seed=3)
    b = run_episode('pd', SCENARIOS['upwind_chop'], seed=3)
    c = run_episode('pd', SCENARIOS['upwind_chop'], seed=4)
    assert (a.rms_deg, a.max_deg, a.rudder_travel_per_min) == (
        b.rms_deg, b.max_deg, b.rudder_travel_per_min)
    assert a.rms_deg != c.rms_deg


def test_model_pilot_runs_through_the_pilot_and_reports_fallback(model_factory):
    """A model that asks for tanh of the PD-suggestion feature: nearly PD (whose gains the
    feature shares) through ONNX, so it must steer as PD does on the same seed (1.40 deg
    against 1.39), and a window or feature that reached it wrong would show."""
    path = model_factory(feature='pd_suggestion', op='tanh', gain=1.0)
    r = run_episode(str(path), SCENARIOS['calm_compass'], seed=0)
    pd = run_episode('pd', SCENARIOS['calm_compass'], seed=0)
    assert r.fallback_frac < 0.05  # only while the window fills
    assert r.rms_deg == pytest.approx(pd.rms_deg, rel=0.05)
    assert r.rudder_travel_per_min == pytest.approx(pd.rudder_travel_per_min, rel=0.1)


def test_command_prints_a_table_and_writes_a_png(tmp_path, capsys):
    png = tmp_path / 'traces.png'
    assert main(['--pilots', 'pd', 'zero', '--scenarios', 'calm_compass', '--seeds', '1',
                 '--plot', str(png)]) == 0
    out = capsys.readouterr().out
    assert 'calm_compass' in out and 'RMS err deg' in out
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(SystemExit):  # argparse: one clear message, exit status 2
        main(['--pilots', str(tmp_path / 'missing.onnx'), '--seeds', '1'])
    assert 'neither pid/pd/expert/zero nor an existing .onnx file' in capsys.readouterr().err


def test_a_broken_model_is_one_message_not_a_traceback(tmp_path, capsys):
    junk = tmp_path / 'junk.onnx'
    junk.write_bytes(b'garbage')
    assert main(['--pilots', str(junk), '--scenarios', 'calm_compass', '--seeds', '1',
                 '--plot', str(tmp_path / 'p.png')]) == 2
    assert 'cannot load' in capsys.readouterr().err


def test_summary_table_lists_every_pilot_per_scenario():
    results = [run_episode(p, SCENARIOS['calm_compass'], seed=0) for p in ('pd', 'zero')]
    table = summary_table(results)
    assert table.count('calm_compass') == 2
