"""The Pilot's refusals and fallbacks, tick by tick, with a stand-in model.

What the sailor sees in the status (reason, policy, engaged, target) when inputs go stale,
a model fails or is swapped, the helm is taken by hand; and that the rudder still slews
from where it is, at the rate limit, whatever happened on the tick before.
"""

import math

import pytest

from autopilot_ros.conventions import GRAVITY
from autopilot_ros.features import INDEX, WINDOW_LENGTH
from autopilot_ros.pid_pilot import PIDGains, PIDPilot
from autopilot_ros.pilot import (
    MODEL_FAILURE_LIMIT,
    POLICY_FALLBACK_PID,
    POLICY_MODEL,
    POLICY_STANDBY,
    Pilot,
    PilotConfig,
)
from autopilot_ros.safety import SafetyLimits
from autopilot_ros.samples import HeadingSample, ImuSample, RudderSample, WindSample

DEG = math.pi / 180


class StandIn:
    """A model that answers `value`, or raises / returns NaN while told to; counts closes."""

    def __init__(self, value: float = 0.5) -> None:
        self.value = value
        self.error: Exception | None = None
        self.closed = 0
        self.last_inference_time = 0.002

    def infer(self, window) -> float:
        if self.error is not None:
            raise self.error
        return self.value

    def close(self) -> None:
        self.closed += 1


def tick(pilot: Pilot, t: float, heading: float = 0.0, yaw_rate_z: float = 0.0,
         wind: bool = True, imu: bool = True):
    if imu:
        pilot.update(ImuSample(t, 0.0, 0.0, 0.0, 0.0, yaw_rate_z, 0.0, 0.0, GRAVITY))
    pilot.update(HeadingSample(t, heading))
    if wind:
        pilot.update(WindSample(t, 60 * DEG, 8.0))
    return pilot.step(t)


def run(pilot: Pilot, t0: float, ticks: int, **kw) -> list:
    return [tick(pilot, t0 + 0.1 * (k + 1), **kw) for k in range(ticks)]


def model_pilot(policy=None, target: float = 0.2) -> Pilot:
    pilot = Pilot(PilotConfig(), policy if policy is not None else StandIn())
    pilot.set_mode('compass', target)
    return pilot


# -- a new pilot, standby -------------------------------------------------------------------
def test_a_new_pilot_is_in_standby_steering_nothing():
    pilot = Pilot()
    assert (pilot.mode, pilot.target, pilot.engaged, pilot.hand_steering) == (
        'standby', 0.0, False, False)
    assert pilot.unloaded_reason == ''
    out = tick(pilot, 5.0)
    assert out.reason == 'mode is standby' and out.policy == POLICY_STANDBY
    assert out.stamp == 5.0 and out.command == 0.0


def test_a_standby_tick_reports_nothing_to_steer_to_and_what_is_stale():
    pilot = Pilot(PilotConfig(), StandIn())
    pilot.set_mode('wind_twa', 0.5)
    pilot.update(HeadingSample(9.0, 1.0))  # no IMU, no wind yet
    out = pilot.step(9.05)
    assert out.reason == 'wind unknown: cannot resolve the wind target'
    assert (out.stamp, out.command, out.engaged, out.policy) == (9.05, 0.0, False,
                                                                POLICY_STANDBY)
    assert (out.mode, out.target, out.window_fill) == ('wind_twa', 0.5, 0)
    assert math.isnan(out.raw_command) and math.isnan(out.target_heading)
    assert math.isnan(out.heading_error)
    assert out.stale_inputs == ['imu', 'wind', 'speed', 'rudder_angle']
    assert out.inference_time == 0.002
    assert tick(Pilot(), 1.0).stale_inputs == ['speed', 'rudder_angle']
    assert math.isnan(tick(Pilot(), 1.0).inference_time)  # no model: no time


def test_no_heading_is_standby_with_the_reason():
    pilot = model_pilot()
    pilot.update(WindSample(1.0, 0.5, 6.0))
    out = pilot.step(1.0)
    assert out.reason == 'heading unknown or stale' and out.stamp == 1.0
    assert out.stale_inputs == ['imu', 'heading', 'speed', 'rudder_angle']


# -- engaging and slewing -------------------------------------------------------------------
def test_engaged_ticks_slew_on_from_the_last_command_at_the_rate_limit():
    pilot = model_pilot(target=1.0)  # far to starboard: the PID asks full rudder
    outs = run(pilot, 0.0, 4)
    assert [o.command for o in outs] == pytest.approx([0.05, 0.10, 0.15, 0.20])
    assert all(o.engaged for o in outs) and pilot.engaged
    # A late tick (0.3 s) may slew three times as far, no more.
    out = tick(pilot, outs[-1].stamp + 0.3, heading=0.0)
    assert out.command == pytest.approx(0.35)


def test_a_stale_rudder_reading_is_not_where_the_rudder_is():
    pilot = model_pilot(target=0.0)
    pilot.update(RudderSample(0.0, -0.6))  # 2 s before engaging: older than its 1 s limit
    out = tick(pilot, 2.0)
    assert out.command == 0.0 and 'rudder_angle' in out.stale_inputs


def test_after_standby_engaging_again_starts_from_the_measured_rudder():
    pilot = model_pilot(target=0.0)
    run(pilot, 0.0, 5)
    pilot.set_mode('standby', 0.0)
    tick(pilot, 0.6)
    pilot.set_mode('compass', 0.0)
    pilot.update(RudderSample(0.7, -0.4))
    out = tick(pilot, 0.7)
    assert out.command == pytest.approx(-0.4 + 0.05)


# -- stale inputs ---------------------------------------------------------------------------
def test_an_input_exactly_at_its_stale_limit_is_still_fresh():
    pilot = model_pilot()
    pilot.update(HeadingSample(1.0, 0.0))
    assert pilot.fresh(2.0).heading and not pilot.fresh(2.0 + 1e-9).heading


def test_an_input_without_a_stale_limit_never_goes_stale():
    limits = SafetyLimits(stale_limits={'imu': 0.5, 'heading': 1.0, 'wind': 3.0})
    pilot = Pilot(PilotConfig(limits=limits))
    pilot.update(RudderSample(0.0, 0.1))
    assert pilot.fresh(1e6).rudder_angle


def test_stale_wind_holds_the_last_wind_target_and_says_so():
    pilot = Pilot(PilotConfig(), StandIn())
    pilot.set_mode('wind_twa', 50 * DEG)
    outs = run(pilot, 0.0, 3)
    held = outs[-1].target_heading
    # The wind stops; heading and IMU go on.
    outs = run(pilot, 0.3, 40, wind=False)
    late = outs[-1]
    assert late.target_heading == held and late.policy == POLICY_FALLBACK_PID
    assert late.reason == 'wind stale: holding last target heading; inputs stale: wind'
    assert late.engaged and late.window_fill == 0
    # A new wind target cannot be resolved without wind: standby, not the old heading.
    pilot.set_mode('wind_twa', 40 * DEG)
    out = tick(pilot, 5.0, wind=False)
    assert out.policy == POLICY_STANDBY
    assert out.reason == 'wind unknown: cannot resolve the wind target'


def test_inputs_stale_names_the_required_ones_only():
    pilot = model_pilot()
    outs = run(pilot, 0.0, 10, imu=False)
    assert outs[-1].reason == 'inputs stale: imu'  # not speed nor rudder_angle, optional
    assert outs[-1].policy == POLICY_FALLBACK_PID
    outs = run(pilot, outs[-1].stamp, 40, imu=False, wind=False)
    assert outs[-1].reason == 'inputs stale: imu, wind'


def test_the_pid_damps_with_the_imu_turn_rate_and_with_the_compass_when_the_imu_is_stale():
    pilot = Pilot(PilotConfig())
    pilot.set_mode('compass', 0.2)
    out = tick(pilot, 1.0, heading=0.0, yaw_rate_z=-0.03)  # turning to starboard
    ki = PIDGains().ki
    # P and D on the first tick, and the integral's first step (one tick of the error).
    assert out.raw_command == pytest.approx(PIDPilot().response(0.2, 0.03, None)
                                            + ki * 0.2 * 0.1)
    # IMU stale (its last reading says a fast turn); the compass says 0.5 rad/s to starboard.
    pilot.update(ImuSample(1.1, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, GRAVITY))
    pilot.update(HeadingSample(2.0, 0.0))
    pilot.update(HeadingSample(2.1, 0.05))
    integral = pilot.pid.integral
    out = pilot.step(2.1)
    assert 'imu' in out.stale_inputs
    assert out.raw_command == pytest.approx(max(-1.0, PIDPilot().response(0.15, 0.5, None)
                                                + integral + ki * 0.15 * 1.1), abs=1e-3)


@pytest.mark.filterwarnings('ignore:overflow encountered in cast:RuntimeWarning')
def test_a_feature_row_that_is_not_finite_never_reaches_the_model():
    """The input ranges make this impossible; if a reading got past them, the PID steers."""
    policy = StandIn(0.9)
    pilot = model_pilot(policy)
    run(pilot, 0.0, WINDOW_LENGTH)
    assert pilot.window.full
    pilot.inputs.wind = WindSample(2.1, 0.5, 1e40)  # past every check: inf in float32
    pilot.update(HeadingSample(2.1, 0.0))
    out = pilot.step(2.1)
    assert out.policy == POLICY_FALLBACK_PID and out.reason == 'feature row not finite'
    assert pilot.window.fill == 0


# -- the model ------------------------------------------------------------------------------
def test_the_model_sees_the_mode_and_steers_once_the_window_is_full():
    policy = StandIn(0.02)
    pilot = model_pilot(policy)
    outs = run(pilot, 0.0, WINDOW_LENGTH + 10)
    assert outs[WINDOW_LENGTH - 2].reason == f'window filling {WINDOW_LENGTH - 1}/{WINDOW_LENGTH}'
    first = outs[WINDOW_LENGTH - 1]  # the model steers from the tick the window is full,
    assert first.policy == POLICY_MODEL  # blending in over a second (test_pid_pilot.py)
    assert first.reason == 'taking the helm from the PID (10%)'
    last = outs[-1]
    assert last.policy == POLICY_MODEL and last.raw_command == 0.02 and last.reason == ''
    assert (last.mode, last.target, last.window_fill) == ('compass', 0.2, WINDOW_LENGTH)
    assert last.inference_time == 0.002
    assert pilot.window.array()[0, -1, INDEX['mode_compass']] == 1.0


def test_failures_are_counted_in_a_row_and_a_good_answer_resets_the_count():
    policy = StandIn(0.1)
    pilot = model_pilot(policy)
    t = run(pilot, 0.0, WINDOW_LENGTH)[-1].stamp
    policy.value = math.nan
    outs = run(pilot, t, MODEL_FAILURE_LIMIT - 1)
    assert outs[-1].reason == 'model output not finite' and pilot.policy is policy
    policy.value = 0.1
    t = run(pilot, outs[-1].stamp, 1)[-1].stamp
    policy.error = RuntimeError('x' * 300)
    outs = run(pilot, t, MODEL_FAILURE_LIMIT - 1)
    assert pilot.policy is policy and policy.closed == 0
    assert outs[-1].reason == 'model failed: RuntimeError: ' + 'x' * 200
    out = run(pilot, outs[-1].stamp, 1)[-1]
    assert pilot.policy is None and policy.closed == 1
    assert out.policy == POLICY_FALLBACK_PID
    assert pilot.unloaded_reason.startswith(
        f'model dropped after {MODEL_FAILURE_LIMIT} failed ticks in a row')


def test_a_model_failing_from_its_first_tick_is_dropped_after_the_limit_not_before():
    policy = StandIn()
    policy.error = RuntimeError('broken from the start')
    pilot = model_pilot(policy)
    t = run(pilot, 0.0, WINDOW_LENGTH - 1)[-1].stamp  # the window fills: no model run yet
    t = run(pilot, t, MODEL_FAILURE_LIMIT - 1)[-1].stamp
    assert pilot.policy is policy
    run(pilot, t, 1)
    assert pilot.policy is None and policy.closed == 1


def test_a_new_model_starts_with_a_clean_record():
    old, new = StandIn(), StandIn()
    pilot = model_pilot(old)
    t = run(pilot, 0.0, WINDOW_LENGTH)[-1].stamp
    old.error = ValueError('bad')
    t = run(pilot, t, MODEL_FAILURE_LIMIT - 1)[-1].stamp
    new.error = ValueError('bad too')
    pilot.set_policy(new)
    assert old.closed == 1 and pilot.unloaded_reason == ''
    run(pilot, t, MODEL_FAILURE_LIMIT - 1)
    assert pilot.policy is new and new.closed == 0


def test_setting_the_same_model_again_does_not_close_it():
    policy = StandIn()
    pilot = model_pilot(policy)
    pilot.set_policy(policy)
    assert policy.closed == 0
    pilot.set_policy(None)
    assert policy.closed == 1
    pilot.set_policy(object())  # a policy with nothing to close
    pilot.set_policy(None)


def test_a_dropped_model_leaves_a_reason_until_a_new_one_is_set():
    policy = StandIn()
    pilot = model_pilot(policy)
    t = run(pilot, 0.0, WINDOW_LENGTH)[-1].stamp
    policy.error = OSError('gone')
    run(pilot, t, MODEL_FAILURE_LIMIT)
    assert 'gone' in pilot.unloaded_reason
    pilot.set_policy(StandIn())
    assert pilot.unloaded_reason == ''


# -- hand steering and configuration --------------------------------------------------------
def test_hand_steering_leaves_the_helm_with_one_reason():
    pilot = model_pilot()
    pilot.reconfigure(hand_steering=True)
    out = tick(pilot, 1.0)
    assert out.reason == 'hand steering: the helmsman steers'
    assert out.engaged is False and pilot.engaged is False and out.command == 0.0


@pytest.mark.parametrize('rate_hz', [1.0, 100.0])
def test_the_documented_tick_rates_are_accepted(rate_hz):
    Pilot(PilotConfig(rate_hz=rate_hz))


@pytest.mark.parametrize('rate_hz', [0.99, 100.5])
def test_other_tick_rates_are_refused_naming_the_rate(rate_hz):
    with pytest.raises(ValueError, match=rf'^rate_hz {rate_hz} not in \[1, 100\]$'):
        Pilot(PilotConfig(rate_hz=rate_hz))
