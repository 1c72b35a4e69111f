"""Features, window, ONNX policy, safety layer and the Pilot, without ROS."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from autopilot_ros.conventions import GRAVITY
from autopilot_ros.features import (
    FEATURE_SPEC_HASH,
    INDEX,
    NUM_FEATURES,
    SCALES,
    WINDOW_LENGTH,
    Fresh,
    InputState,
    build_features,
    spec_hash,
)
from autopilot_ros.inputs import Rejected, check_sample, input_of, trusted_stamp
from autopilot_ros.pid_pilot import PIDGains
from autopilot_ros.pilot import (
    POLICY_FALLBACK_PID,
    POLICY_MODEL,
    POLICY_STANDBY,
    Pilot,
    PilotConfig,
)
from autopilot_ros.policy import ModelError, OnnxPolicy
from autopilot_ros.safety import SafetyLayer, SafetyLimits
from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    WindSample,
    imu_from_msg,
)
from autopilot_ros.window import FeatureWindow

DEG = math.pi / 180
# The feature spec's hash as every model carries it (the shipped one too). A change to a
# feature, its scale, the PD-suggestion gains or the window changes it: update this literal in
# the same commit, and retrain, since every model built for the old spec is refused.
SPEC_HASH = 'b53535557bda4dc6'


def imu(t: float, yaw_rate_z: float = 0.0, roll: float = 0.0) -> ImuSample:
    return ImuSample(t, roll, 0.0, 0.0, 0.0, yaw_rate_z, 0.0, 0.0, GRAVITY)


def feed(pilot: Pilot, t: float, heading: float, yaw_rate_z: float = 0.0) -> None:
    pilot.update(imu(t, yaw_rate_z))
    pilot.update(HeadingSample(t, heading))
    pilot.update(WindSample(t, 60 * DEG, 8.0))


def run(pilot: Pilot, seconds: float, heading: float, t0: float = 0.0, **kw):
    outs = []
    t = t0
    for _ in range(int(seconds * pilot.config.rate_hz)):
        t += 1.0 / pilot.config.rate_hz
        feed(pilot, t, heading, **kw)
        outs.append(pilot.step(t))
    return outs


# -- features and window ------------------------------------------------------------------
def test_spec_hash_is_the_one_models_were_built_for():
    assert FEATURE_SPEC_HASH == SPEC_HASH
    assert spec_hash() == SPEC_HASH  # recomputed, not a value cached at import


def test_feature_row_carries_error_mode_and_starboard_turn_rate_scaled():
    state = InputState()
    state.update(imu(0.0, yaw_rate_z=-0.1, roll=0.2))
    state.update(HeadingSample(0.0, 0.0))
    state.update(WindSample(0.0, 0.5, 6.0))
    fresh = Fresh(True, True, True, False, False)
    row = build_features('compass', 0.3, 0.3, state, fresh, 0.25,
                         np.zeros(NUM_FEATURES, np.float32))
    assert math.isclose(row[INDEX['heading_error']], 0.3, rel_tol=1e-6)
    assert row[INDEX['mode_compass']] == 1.0 and row[INDEX['mode_wind_twa']] == 0.0
    assert math.isclose(row[INDEX['turn_rate_stbd']], 0.1 * SCALES[INDEX['turn_rate_stbd']],
                        rel_tol=1e-6)
    assert math.isclose(row[INDEX['roll']], 0.2 * SCALES[INDEX['roll']], rel_tol=1e-6)
    assert abs(row[INDEX['accel_heave']]) < 1e-6  # gravity removed
    assert row[INDEX['speed_valid']] == 0.0 and row[INDEX['stw']] == 0.0
    assert row[INDEX['rudder_angle']] == 0.25  # no rudder sensor: last command
    assert row[INDEX['sin_wind_target']] == 0.0


def test_window_is_oldest_first_contiguous_and_reuses_its_buffer():
    w = FeatureWindow(4, 2)
    for i in range(6):
        w.push(np.array([i, -i], np.float32))
    a = w.array()
    assert a.shape == (1, 4, 2) and a.dtype == np.float32 and a.flags['C_CONTIGUOUS']
    assert a[0, :, 0].tolist() == [2, 3, 4, 5]
    w.push(np.array([6, -6], np.float32))
    b = w.array()
    assert b[0, :, 0].tolist() == [3, 4, 5, 6]
    assert np.shares_memory(a, b)  # one buffer, no per-tick allocation of the data
    w.clear()
    assert w.fill == 0 and not w.full


# -- the ONNX policy -----------------------------------------------------------------------
def test_valid_model_loads_warms_up_and_times_itself(model_factory):
    policy = OnnxPolicy(str(model_factory()), rate_hz=10.0)
    window = np.zeros((1, WINDOW_LENGTH, NUM_FEATURES), np.float32)
    window[0, -1, INDEX['heading_error']] = 0.5
    assert math.isclose(policy.infer(window), math.tanh(0.5), rel_tol=1e-5)
    assert policy.last_inference_time > 0
    assert len(policy.sha256) == 64


@pytest.mark.parametrize('kwargs, words', [
    ({'window': 10}, 'input shape'),
    ({'features': 24}, 'input shape'),
    ({'metadata': {'feature_spec_hash': 'deadbeefdeadbeef'}}, 'feature spec'),
    ({'metadata': {'rate_hz': '20'}}, '20 Hz'),
    ({'metadata': {'sign_convention_version': '0'}}, 'sign convention'),
    ({'metadata': {'window_length': None}}, 'lacks'),
    ({'op': 'sqrt_neg', 'bias': 1.0}, 'not finite'),
])
def test_broken_models_are_refused_with_the_reason(model_factory, kwargs, words):
    path = model_factory(**kwargs)
    with pytest.raises(ModelError, match=words):
        OnnxPolicy(str(path), rate_hz=10.0)


def test_unreadable_and_missing_files_are_refused(tmp_path):
    junk = tmp_path / 'junk.onnx'
    junk.write_bytes(b'not a model at all')
    with pytest.raises(ModelError, match='cannot load'):
        OnnxPolicy(str(junk))
    with pytest.raises(ModelError, match='no such'):
        OnnxPolicy(str(tmp_path / 'missing.onnx'))


# -- safety ----------------------------------------------------------------------------------
def test_slew_limit_and_range_hold_whatever_is_asked():
    layer = SafetyLayer(SafetyLimits(max_rudder=0.6, max_rudder_rate=0.5))
    # Flip-flopping requests, then held ones far past the range both ways: the slew limit
    # shows in the first part, the range in the others (30 ticks of 0.05 would reach 1.5).
    asked = [1.0 if i % 2 else -1.0 for i in range(10)] + [1.0] * 30 + [-5.0] * 30
    out = [layer.apply(raw, 0.1) for raw in asked]
    steps = np.diff([0.0] + out)
    assert np.all(np.abs(steps) <= 0.05 + 1e-12)
    assert max(abs(v) for v in out) <= 0.6
    assert out[39] == pytest.approx(0.6) and out[-1] == pytest.approx(-0.6)
    assert layer.apply(math.nan, 0.1) == out[-1]
    assert layer.apply(math.inf, 0.1) == out[-1]
    layer.reset(0.9)  # engaging with the rudder past the range starts at the range
    assert layer.command == pytest.approx(0.6) and layer.apply(0.9, 0.1) == pytest.approx(0.6)


@pytest.mark.parametrize('limits', [
    SafetyLimits(max_rudder=0.0), SafetyLimits(max_rudder=1.5),
    SafetyLimits(max_rudder_rate=-1.0), SafetyLimits(stale_limits={'imu': 0.0}),
])
def test_unusable_limits_are_refused(limits):
    with pytest.raises(ValueError):
        SafetyLayer(limits)


# -- the Pilot -----------------------------------------------------------------------------
def test_pilot_uses_pd_while_the_window_fills_then_the_model(model_factory):
    pilot = Pilot(PilotConfig(), OnnxPolicy(str(model_factory(gain=2.0)), 10.0))
    pilot.set_mode('compass', 0.3)
    outs = run(pilot, 3.0, heading=0.0)
    assert all(o.policy == POLICY_FALLBACK_PID for o in outs[:WINDOW_LENGTH - 1])
    assert 'window filling' in outs[0].reason
    assert outs[WINDOW_LENGTH - 1].policy == POLICY_MODEL
    # error +0.3 rad: the model asks tanh(0.6) to starboard, reached through the slew limit
    assert math.isclose(outs[-1].raw_command, math.tanh(0.6), rel_tol=1e-5)
    assert outs[-1].command > 0


def test_nan_sensor_values_never_reach_the_features_or_the_command(model_factory):
    pilot = Pilot(PilotConfig(), OnnxPolicy(str(model_factory()), 10.0))
    pilot.set_mode('compass', 0.3)
    run(pilot, 2.5, heading=0.0)
    assert not pilot.update(HeadingSample(2.6, math.nan))
    assert not pilot.update(ImuSample(2.6, math.nan, 0, 0, 0, 0, 0, 0, GRAVITY))
    assert not pilot.update(WindSample(2.6, 0.1, math.inf))
    out = pilot.step(2.6)
    assert math.isfinite(out.command) and np.isfinite(pilot.window.array()).all()
    assert pilot.rejected_samples == 3


def test_model_nan_output_falls_back_to_pd_and_command_stays_finite(model_factory):
    # sqrt(-error): fine for negative error, NaN for positive error.
    pilot = Pilot(PilotConfig(), OnnxPolicy(str(model_factory(op='sqrt_neg')), 10.0))
    pilot.set_mode('compass', 0.2)  # target to starboard: error > 0 -> NaN
    outs = run(pilot, 2.5, heading=0.0)
    last = outs[-1]
    assert last.policy == POLICY_FALLBACK_PID and 'not finite' in last.reason
    assert all(math.isfinite(o.command) for o in outs)
    assert last.command > 0  # PD still steers towards the target
    assert pilot.nonfinite_outputs == 6 and pilot.policy is not None
    # Ten failed ticks in a row: the model is dropped, PD steers, and the pilot says why.
    outs = run(pilot, 0.5, heading=0.0, t0=last.stamp)
    assert pilot.policy is None and 'dropped after 10 failed ticks' in pilot.unloaded_reason
    assert outs[-1].policy == POLICY_FALLBACK_PID and outs[-1].reason == 'no model loaded'


def test_standby_without_heading_and_pd_when_imu_goes_stale(model_factory):
    pilot = Pilot(PilotConfig(), OnnxPolicy(str(model_factory()), 10.0))
    pilot.set_mode('compass', 0.3)
    assert pilot.step(0.1).policy == POLICY_STANDBY  # nothing heard yet
    run(pilot, 3.0, heading=0.0)
    # IMU stops; heading and wind continue.
    t = 3.0
    outs = []
    for _ in range(20):
        t += 0.1
        pilot.update(HeadingSample(t, 0.0))
        pilot.update(WindSample(t, 1.0, 8.0))
        outs.append(pilot.step(t))
    stale_ticks = [o for o in outs if 'imu' in o.stale_inputs]
    assert stale_ticks and all(o.policy == POLICY_FALLBACK_PID for o in stale_ticks)
    # The first stale tick comes within the IMU limit (0.5 s) plus one tick.
    first = next(i for i, o in enumerate(outs) if o.policy != POLICY_MODEL)
    assert (first + 1) * 0.1 <= 0.5 + 0.1 + 1e-9
    # Heading stops too: standby within its limit, command 0, not engaged.
    for _ in range(15):
        t += 0.1
        out = pilot.step(t)
    assert out.policy == POLICY_STANDBY and not out.engaged and out.command == 0.0


@pytest.mark.parametrize('turn', [+1.0, -1.0])
def test_with_the_imu_stale_the_pid_damps_the_turn_the_compass_shows(turn):
    """The fallback's derivative term from the compass: turning to starboard (heading
    increasing, design: turn rate to starboard > 0) asks for port rudder, and vice versa.

    kp and ki 0 leave the derivative term alone: kd 5 x 0.1 rad/s = 0.5 against the turn.
    """
    pilot = Pilot(PilotConfig(pid=PIDGains(kp=0.0, ki=0.0, kd=5.0)))
    pilot.set_mode('compass', 1.0)
    outs = []
    for k in range(1, 41):
        t = 0.1 * k
        if t <= 1.0:  # the IMU speaks for a second (no turn on its gyro), then falls silent
            pilot.update(imu(t))
        pilot.update(HeadingSample(t, 1.0 + turn * 0.1 * t))
        pilot.update(WindSample(t, 60 * DEG, 8.0))
        outs.append(pilot.step(t))
    stale = [o for o in outs if 'imu' in o.stale_inputs]
    assert len(stale) > 20 and all(o.policy == POLICY_FALLBACK_PID for o in stale)
    for o in stale:
        assert o.raw_command == pytest.approx(-turn * 0.5, abs=1e-6)
    assert outs[-1].command == pytest.approx(-turn * 0.5, abs=1e-6)  # slewed there by now


@pytest.mark.parametrize('mode, target', [('compass', 0.3), ('wind_awa', 50 * DEG),
                                          ('wind_twa', 50 * DEG)])
def test_a_model_never_steers_on_stale_wind(model_factory, mode, target):
    """Wind is a required input in every mode (the model reads its features): once it is
    older than its 3 s limit the window is cleared and PD steers, until it is back and the
    window has refilled. A wind mode holds its last target heading meanwhile."""
    pilot = Pilot(PilotConfig(), OnnxPolicy(str(model_factory(feature='sin_awa')), 10.0))
    pilot.set_mode(mode, target)
    before = run(pilot, 3.0, heading=0.0)
    assert before[-1].policy == POLICY_MODEL
    held = before[-1].target_heading
    t, silent = before[-1].stamp, []
    for _ in range(40):  # 4 s without wind; IMU and compass go on
        t += 0.1
        pilot.update(imu(t))
        pilot.update(HeadingSample(t, 0.0))
        silent.append(pilot.step(t))
    stale = [o for o in silent if 'wind' in o.stale_inputs]
    assert len(stale) >= 9  # from 3 s after the last reading on
    assert silent[len(silent) - len(stale) - 1].stamp - before[-1].stamp <= 3.0 + 1e-9
    for o in stale:
        assert o.policy == POLICY_FALLBACK_PID and o.window_fill == 0 and o.engaged
        assert 'inputs stale: wind' in o.reason
        assert o.target_heading == pytest.approx(held)
    if mode != 'compass':
        assert 'holding last target heading' in stale[-1].reason
    back = run(pilot, 2.5, heading=0.0, t0=t)
    assert all(o.policy == POLICY_FALLBACK_PID for o in back[:WINDOW_LENGTH - 1])
    assert back[-1].policy == POLICY_MODEL


def test_wind_modes_steer_to_the_heading_that_meets_the_wind_target():
    """Through the Pilot: TWA target 50 deg with the wind at 60 deg on starboard (no speed,
    so TWA = AWA) is a target heading 10 deg to starboard; the same on port tack is 10 deg
    to port. AWA mode with the boat moving turns its target into a TWA first."""
    for awa, target, want in ((60, 50, 10), (-60, -50, -10)):
        for mode in ('wind_twa', 'wind_awa'):
            pilot = Pilot()
            pilot.set_mode(mode, target * DEG)
            pilot.update(imu(0.1))
            pilot.update(HeadingSample(0.1, 1.0))
            pilot.update(WindSample(0.1, awa * DEG, 8.0))
            out = pilot.step(0.1)
            assert out.engaged and out.policy == POLICY_FALLBACK_PID
            assert out.heading_error == pytest.approx(want * DEG, abs=1e-9), (mode, awa)
            assert out.target_heading == pytest.approx(1.0 + want * DEG, abs=1e-9)
            assert math.copysign(1.0, out.command) == math.copysign(1.0, want)
    # Moving at 4 m/s: AWA 40 deg is TWA 60.5 deg (true_wind); holding AWA 30 deg needs
    # TWA 44.8 deg (twa_for_awa): 15.7 deg further up, to starboard.
    from autopilot_ros.conventions import true_wind, twa_for_awa
    from autopilot_ros.samples import SpeedSample
    twa, tws = true_wind(40 * DEG, 10.0, 4.0)
    want = twa - twa_for_awa(30 * DEG, tws, 4.0)
    assert 10 * DEG < want < 20 * DEG
    pilot = Pilot()
    pilot.set_mode('wind_awa', 30 * DEG)
    pilot.update(imu(0.1))
    pilot.update(HeadingSample(0.1, 1.0))
    pilot.update(WindSample(0.1, 40 * DEG, 10.0))
    pilot.update(SpeedSample(0.1, 4.0))
    assert pilot.step(0.1).heading_error == pytest.approx(want, abs=1e-9)
    # No wind heard yet: a wind mode cannot resolve its target and stands by.
    pilot = Pilot()
    pilot.set_mode('wind_twa', 50 * DEG)
    pilot.update(imu(0.1))
    pilot.update(HeadingSample(0.1, 1.0))
    out = pilot.step(0.1)
    assert out.policy == POLICY_STANDBY and not out.engaged and 'wind unknown' in out.reason


def test_engaging_starts_from_the_measured_rudder():
    pilot = Pilot(PilotConfig())
    pilot.set_mode('compass', 0.0)
    pilot.update(RudderSample(0.0, -0.4))
    feed(pilot, 0.0, 0.0)
    out = pilot.step(0.1)
    assert abs(out.command - (-0.4)) <= pilot.config.limits.max_rudder_rate * 0.1 + 1e-9


@pytest.mark.parametrize('mode, target', [
    ('sideways', 0.0), ('compass', 7.0), ('compass', -0.1), ('wind_twa', 4.0),
    ('compass', math.nan)])
def test_bad_modes_and_targets_are_refused_and_the_old_ones_kept(mode, target):
    pilot = Pilot()
    pilot.set_mode('compass', 1.0)
    with pytest.raises(ValueError):
        pilot.set_mode(mode, target)
    assert (pilot.mode, pilot.target) == ('compass', 1.0)


def test_hand_steering_reports_the_target_but_leaves_the_helm(model_factory):
    """Recording mode: status carries mode, target and error; the command stays 0."""
    pilot = Pilot(PilotConfig(), OnnxPolicy(str(model_factory(gain=2.0)), 10.0))
    pilot.set_mode('compass', 0.3)
    pilot.hand_steering = True
    outs = run(pilot, 3.0, heading=0.0)
    last = outs[-1]
    assert all(o.command == 0.0 and not o.engaged for o in outs)
    assert last.policy == POLICY_STANDBY and 'hand steering' in last.reason
    assert math.isclose(last.target_heading, 0.3) and math.isclose(last.heading_error, 0.3)
    assert pilot.window.full  # the features a model would see are still built
    # Taking the helm back: the model steers at once, from the measured rudder.
    pilot.hand_steering = False
    t = outs[-1].stamp + 0.1
    pilot.update(HeadingSample(t, 0.0))
    out = pilot.step(t)
    assert out.engaged and out.policy == POLICY_MODEL and 0.0 < out.command <= 0.05 + 1e-9


def test_reconfigure_applies_all_of_a_change_or_none_of_it(model_factory):
    pilot = Pilot()
    pilot.reconfigure(mode='compass', target=1.0)
    tight = PilotConfig(limits=SafetyLimits(max_rudder=0.3, max_rudder_rate=0.2))
    model = OnnxPolicy(str(model_factory()), 10.0)
    pilot.reconfigure(config=tight, policy=model, hand_steering=True)
    assert pilot.safety.limits.max_rudder == 0.3 and pilot.config is tight
    assert pilot.policy is model and pilot.hand_steering
    assert (pilot.mode, pilot.target) == ('compass', 1.0)
    wide = PilotConfig(limits=SafetyLimits(max_rudder=0.9))
    with pytest.raises(ValueError, match='compass target'):
        pilot.reconfigure(config=wide, mode='compass', target=7.0, policy=None)
    with pytest.raises(ValueError, match='rate_hz'):
        pilot.reconfigure(config=PilotConfig(rate_hz=20.0), policy=None)
    assert pilot.config is tight and pilot.safety.limits.max_rudder == 0.3
    assert pilot.policy is model and (pilot.mode, pilot.target) == ('compass', 1.0)
    run(pilot, 1.0, heading=0.0)
    assert pilot.window.fill == 10
    pilot.reconfigure(mode='compass', target=1.0)  # the same target: nothing restarts
    assert pilot.window.fill == 10


def test_every_input_has_a_stale_limit_a_converter_pair_and_a_feature():
    """Adding a sensor touches the inputs table and the feature spec; both must agree."""
    from autopilot_ros.features import FEATURE_SPEC
    from autopilot_ros.inputs import DEFAULT_STALE_LIMITS, INPUTS, REQUIRED_INPUTS

    assert set(SafetyLimits().stale_limits) == set(DEFAULT_STALE_LIMITS)
    assert set(REQUIRED_INPUTS) == {'imu', 'heading', 'wind'}
    sources = {part for f in FEATURE_SPEC for part in f.source.split('+')}
    for spec in INPUTS:
        assert spec.name in sources, f'no feature reads {spec.name}'
        assert spec.stale_limit > 0 and spec.msg_type.count('/') == 2
        assert hasattr(InputState(), spec.name)


def test_features_are_written_by_name_whatever_the_order_of_the_spec():
    """Each named feature lands in its own column: read back by INDEX, unscaled."""
    state = InputState()
    state.update(ImuSample(1.0, 0.1, 0.05, 0.2, 0.3, -0.4, 0.5, 0.6, GRAVITY + 0.7))
    state.update(HeadingSample(1.0, 0.5))
    state.update(WindSample(1.0, 0.6, 9.0))
    state.update(RudderSample(1.0, 0.25))
    fresh = Fresh(imu=True, heading=True, wind=True, speed=False, rudder_angle=True)
    row = build_features('wind_twa', 0.9, 0.7, state, fresh, 0.0,
                         np.zeros(NUM_FEATURES, np.float32)) / SCALES
    expect = {'heading_error': 0.2, 'mode_wind_twa': 1.0, 'mode_compass': 0.0,
              'turn_rate_stbd': 0.4, 'roll': 0.1, 'roll_rate': 0.2, 'pitch': 0.05,
              'pitch_rate': 0.3, 'accel_surge': 0.5, 'accel_sway': 0.6, 'accel_heave': 0.7,
              'sin_awa': math.sin(0.6), 'aws': 9.0, 'stw': 0.0, 'speed_valid': 0.0,
              'rudder_angle': 0.25, 'sin_wind_target': math.sin(0.9)}
    for name, value in expect.items():
        assert row[INDEX[name]] == pytest.approx(value, abs=1e-5), name


def test_a_model_that_raises_on_some_inputs_is_one_fallback_tick_each_then_dropped(
        model_factory):
    """Fails only for a heading error in (0.25, 0.35): loads, then raises at sea."""
    policy = OnnxPolicy(str(model_factory(op='raise_in_band')), 10.0)
    pilot = Pilot(PilotConfig(), policy)
    pilot.set_mode('compass', 0.1)  # error 0.1: outside the band, the model steers
    outs = run(pilot, 2.5, heading=0.0)
    assert outs[-1].policy == POLICY_MODEL and outs[-1].command > 0
    pilot.set_mode('compass', 0.3)  # error 0.3: every inference raises
    outs = run(pilot, 0.5, heading=0.0, t0=outs[-1].stamp)
    failed = [o for o in outs if 'model failed: ' in o.reason]
    assert failed and all(o.policy == POLICY_FALLBACK_PID for o in failed)
    assert 'InvalidArgument' in failed[0].reason or 'indices' in failed[0].reason.lower()
    assert all(math.isfinite(o.command) for o in outs) and pilot.model_errors == len(failed)
    assert pilot.policy is policy  # five failures are a fallback, not yet a broken model
    run(pilot, 0.5, heading=0.0, t0=outs[-1].stamp)
    assert pilot.policy is None and 'model failed' in pilot.unloaded_reason


def test_a_model_that_raises_for_either_sign_of_a_feature_is_refused_at_load(model_factory):
    """The load check runs every feature at +-5: a model failing there never steers."""
    path = model_factory(op='raise_in_band', band=(4.0, 6.0))
    with pytest.raises(ModelError, match=r'fails to run on a window with heading_error = \+5'):
        OnnxPolicy(str(path), 10.0)
    path = model_factory(op='raise_in_band', feature='roll', band=(-6.0, -4.0))
    with pytest.raises(ModelError, match=r'roll = -5'):
        OnnxPolicy(str(path), 10.0)


@pytest.mark.parametrize('sample, reason', [
    (WindSample(1.0, 0.5, 1e39), 'out of range'),  # overflows float32
    (WindSample(1.0, 0.5, -1.0), 'out of range'),
    (WindSample(1.0, math.nan, 5.0), 'non-finite'),
    (RudderSample(1.0, 50.0), 'out of range'),
    (ImuSample(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1e39, 0.0, GRAVITY), 'out of range'),
    (ImuSample(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, GRAVITY, 2.0), 'out of range'),
    (ImuSample(1.0, 0.0, 0.0, 0.0, 0.0, math.inf, 0.0, 0.0, GRAVITY), 'non-finite'),
])
def test_absurd_readings_are_dropped_and_counted_by_reason(sample, reason):
    pilot = Pilot()
    assert not pilot.update(sample)
    assert pilot.rejected_by_reason == {reason: 1}
    assert pilot.inputs.last_rejection[0].value == reason
    assert getattr(pilot.inputs, input_of(sample).name) is None


def _imu_msg(x: float, y: float, z: float, w: float):
    """An Imu-shaped message (the converters read attributes only, as from rosbags)."""
    vec = SimpleNamespace
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=5, nanosec=0)),
        orientation=vec(x=x, y=y, z=z, w=w), angular_velocity=vec(x=0.0, y=0.0, z=0.0),
        linear_acceleration=vec(x=0.0, y=0.0, z=GRAVITY))


def test_a_quaternion_far_from_unit_length_is_dropped_and_a_missing_one_reads_level():
    from autopilot_ros.conventions import roll_pitch_to_quaternion

    q = roll_pitch_to_quaternion(0.2, -0.1)
    sample = imu_from_msg(_imu_msg(*(2 * c for c in q)))  # twice unit length
    assert check_sample(sample)[0] is Rejected.IMPLAUSIBLE
    slightly_off = imu_from_msg(_imu_msg(*(1.02 * c for c in q)))  # normalised, then used
    assert check_sample(slightly_off) is None
    assert slightly_off.roll == pytest.approx(0.2) and slightly_off.pitch == pytest.approx(-0.1)
    missing = imu_from_msg(_imu_msg(0.0, 0.0, 0.0, 0.0))  # REP-145: no orientation given
    assert check_sample(missing) is None and (missing.roll, missing.pitch) == (0.0, 0.0)
    broken = imu_from_msg(_imu_msg(math.inf, 0.0, 0.0, 1.0))  # was roll 135 deg, pitch 90
    assert check_sample(broken)[0] is Rejected.NONFINITE


def test_rates_span_a_minimum_interval_so_close_stamps_cannot_make_them_absurd():
    state = InputState()
    state.update(HeadingSample(10.0, 1.0))
    state.update(HeadingSample(10.000001, 1.1))  # 1 us later: 100,000 rad/s if taken as is
    assert state.heading_rate == 0.0 and state.heading.heading == 1.1
    state.update(HeadingSample(10.1, 1.2))  # the rate spans the 0.1 s from the first
    assert state.heading_rate == pytest.approx(2.0)


def test_a_stamp_ahead_of_the_clock_is_trusted_only_within_the_tolerance():
    now, tol = 100.0, 0.05
    assert trusted_stamp(99.7, now, tol) == (99.7, True)  # a late message is as old as it is
    assert trusted_stamp(100.03, now, tol) == (100.03, True)  # a little ahead: kept as sent
    assert trusted_stamp(100.5, now, tol) == (100.0, False)  # further ahead: receive time
    assert trusted_stamp(98.5, now, tol) == (100.0, False)  # sender's clock far behind
    assert trusted_stamp(0.0, now, tol) == (100.0, False)


def test_extreme_but_plausible_readings_keep_the_window_finite(model_factory):
    pilot = Pilot(PilotConfig(), OnnxPolicy(str(model_factory()), 10.0))
    pilot.set_mode('wind_awa', 0.5)
    t = 0.0
    for k in range(30):
        t += 0.1
        pilot.update(ImuSample(t, 3.0, 1.5, 10.0, -10.0, 10.0 * (-1) ** k, 100.0, -100.0,
                               100.0))
        pilot.update(HeadingSample(t + 0.0001 * k, (k % 2) * 3.0))
        pilot.update(WindSample(t, (-1) ** k * 3.1, 75.0))
        pilot.update(RudderSample(t, (-1) ** k * 1.2))
        out = pilot.step(t)
    assert pilot.rejected_samples == 0 and pilot.window.full
    assert np.isfinite(pilot.window.array()).all() and math.isfinite(out.command)


def test_a_model_slower_than_its_budget_is_refused_at_load_within_two_runs(model_factory):
    path = model_factory(op='slow_in_band', band=(-1.0, 1.0), work=40)  # slow on zeros too
    with pytest.raises(ModelError, match=r'at load \(run [12]\), over the 2 ms inference budget'):
        OnnxPolicy(str(path), 10.0, budget=0.002)
    assert OnnxPolicy(str(path), 10.0).budget is None  # no budget: evaluation's choice


def test_a_model_over_budget_at_sea_is_a_pd_tick_not_a_late_one_then_dropped(model_factory):
    """Slow (about 20 ms) only for a heading error in (0.25, 0.35); budget 5 ms."""
    policy = OnnxPolicy(str(model_factory(op='slow_in_band', work=40)), 10.0, budget=0.005)
    pilot = Pilot(PilotConfig(), policy)
    pilot.set_mode('compass', 0.1)
    outs = run(pilot, 2.5, heading=0.0)
    assert outs[-1].policy == POLICY_MODEL
    pilot.set_mode('compass', 0.3)
    outs = run(pilot, 0.5, heading=0.0, t0=outs[-1].stamp)
    assert all(o.policy == POLICY_FALLBACK_PID and 'ModelTimeout' in o.reason for o in outs)
    assert 'budget' in outs[0].reason and math.isfinite(outs[-1].command)
    run(pilot, 0.6, heading=0.0, t0=outs[-1].stamp)
    assert pilot.policy is None and 'budget' in pilot.unloaded_reason + outs[0].reason


def test_a_model_file_over_the_size_limit_is_refused_before_it_is_read(model_factory):
    path = model_factory()
    with pytest.raises(ModelError, match=r'over the 0\.0 MB limit for a model \(not read\)'):
        OnnxPolicy(str(path), 10.0, max_bytes=10)


def test_a_pinned_model_loads_only_with_its_own_sha256(model_factory):
    path = model_factory()
    digest = OnnxPolicy(str(path), 10.0).sha256
    assert OnnxPolicy(str(path), 10.0, expected_sha256=digest.upper()).sha256 == digest
    with pytest.raises(ModelError, match='is not the pinned model_sha256'):
        OnnxPolicy(str(path), 10.0, expected_sha256='0' * 64)
