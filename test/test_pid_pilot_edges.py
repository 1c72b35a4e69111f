"""The PID pilot at its edges: the stops, the clock, the schedule's bounds, the tracking rate,
and in the Pilot the handover blend, the speed log and a lowered integral ceiling.

Written against `make mutation`'s survivors (docs/mutation.md): each test pins a behaviour a
sailor would notice, measured on the numbers the pilot reports.
"""

import math

import pytest

from autopilot_ros.conventions import GRAVITY
from autopilot_ros.pid_pilot import GAIN_RANGES, PIDGains, PIDPilot
from autopilot_ros.pilot import POLICY_FALLBACK_PID, POLICY_MODEL, Pilot, PilotConfig
from autopilot_ros.safety import SafetyLimits
from autopilot_ros.samples import HeadingSample, ImuSample, SpeedSample, WindSample

DEG = math.pi / 180
DT = 0.1


def feed(pilot: Pilot, t: float, heading: float, speed: float | None = None) -> None:
    pilot.update(ImuSample(t, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, GRAVITY))
    pilot.update(HeadingSample(t, heading))
    pilot.update(WindSample(t, 60 * DEG, 8.0))
    if speed is not None:
        pilot.update(SpeedSample(t, speed))


def sail(pilot: Pilot, t: float, seconds: float, heading: float, **kw):
    outs = []
    for _ in range(round(seconds / DT)):
        t += DT
        feed(pilot, t, heading, **kw)
        outs.append(pilot.step(t))
    return t, outs


class Steady:
    """A model that always answers `value`."""

    last_inference_time = 0.001

    def __init__(self, value: float) -> None:
        self.value = value

    def infer(self, window) -> float:
        return self.value


# -- the PID alone --------------------------------------------------------------------------
@pytest.mark.parametrize('name', list(GAIN_RANGES))
def test_both_ends_of_every_gain_range_are_valid(name):
    low, high, _ = GAIN_RANGES[name]
    PIDGains(**{name: low}).validate()
    PIDGains(**{name: high}).validate()


def test_a_request_at_the_stop_or_swinging_away_does_not_wind_the_integral_up():
    pid = PIDPilot()
    assert pid.command(0.5, 0.0, None, DT) == 1.0  # P exactly at the stop: saturated
    assert pid.integral == 0.0
    # 0.1 rad off and swinging further away at 0.2 rad/s: P 0.2 + D 1.0, hard over.
    assert pid.command(0.1, -0.2, None, DT) == 1.0
    assert pid.integral == 0.0


def test_anti_windup_acts_at_the_boats_own_stop():
    pid = PIDPilot()
    pid.integral = 0.28
    # P 0.25 + I 0.28 is past a 0.5 stop, towards the error: the integral holds.
    assert pid.command(0.125, 0.0, None, DT, max_rudder=0.5) == 0.5
    assert pid.integral == pytest.approx(0.28 * math.exp(-DT / pid.gains.leak_s))
    # Below the stop it grows again.
    pid.command(0.05, 0.0, None, DT, max_rudder=0.5)
    assert pid.integral > 0.28


@pytest.mark.parametrize('dt', [math.nan, math.inf, -1.0])
def test_a_tick_without_a_usable_time_step_neither_integrates_leaks_nor_tracks(dt):
    pid = PIDPilot()
    pid.integral = 0.2
    pid.command(0.1, 0.0, None, dt)
    assert pid.integral == 0.2
    pid.track(0.5, 0.0, 0.0, None, dt)
    assert pid.integral == 0.2


def test_a_non_finite_error_clears_the_integral_rather_than_pinning_it_to_one_side():
    pid = PIDPilot()
    pid.integral = 0.2
    pid.command(math.nan, 0.0, None, DT)
    assert pid.integral == 0.0
    pid.integral = 0.2
    pid.track(0.1, math.nan, 0.0, None, DT)
    assert pid.integral == 0.0


def test_the_schedule_works_for_a_slow_boat_below_one_metre_per_second():
    dinghy = PIDPilot(PIDGains(speed_ref=0.8, schedule_min=0.5, schedule_max=4.0))
    assert dinghy.scale(0.8) == 1.0
    assert dinghy.scale(0.5) == pytest.approx(2.56)  # (0.8 / 0.5)^2, inside the bounds
    assert dinghy.scale(1.6) == 0.5
    assert dinghy.scale(0.2) == 4.0


def test_tracking_moves_a_fiftieth_of_the_way_per_tick_and_never_past_the_offset():
    pid = PIDPilot(PIDGains(track_s=5.0))
    pid.track(0.25, 0.0, 0.0, None, DT)  # DT / track_s of the way to the model's 0.25
    assert pid.integral == pytest.approx(0.25 * DT / 5.0)
    pid.reset()
    pid.track(0.1, 0.0, 0.0, None, 12.0)  # a 12 s tick, longer than track_s: all the way
    assert pid.integral == pytest.approx(0.1)


def test_tracking_learns_the_rudder_beyond_the_p_and_d_terms_at_the_speed_sailed():
    pid = PIDPilot()
    p_term = 1.44 * pid.gains.kp * 0.05  # 0.05 rad off at 2.5 m/s (scale 1.44)
    for _ in range(600):  # a minute of a model holding 0.25 of helm
        pid.track(0.25, 0.05, 0.0, 2.5, DT)
    assert pid.integral == pytest.approx(0.25 - p_term, rel=0.03)
    assert pid.command(0.05, 0.0, 2.5, DT) == pytest.approx(0.25, abs=0.005)


# -- in the Pilot ---------------------------------------------------------------------------
def test_a_lowered_integral_ceiling_applies_at_once_even_with_the_rudder_hard_over():
    pilot = Pilot()
    pilot.set_mode('compass', 5 * DEG)
    t, _ = sail(pilot, 0.0, 60.0, heading=0.0)  # 5 deg off for a minute: at the ceiling
    assert pilot.pid.integral == pytest.approx(0.3)
    # The boat is knocked 18 deg further off: P 0.80 + I 0.30 is past the stop.
    t, outs = sail(pilot, t, 0.1, heading=-18 * DEG)
    assert outs[-1].raw_command == 1.0
    # The sailor lowers pid.integral_limit to 0.1: the next request carries no more than it.
    pilot.reconfigure(config=PilotConfig(pid=PIDGains(integral_limit=0.1)))
    _, outs = sail(pilot, t, 0.1, heading=-18 * DEG)
    assert abs(pilot.pid.integral) <= 0.1
    assert outs[-1].raw_command == pytest.approx(2.0 * 23 * DEG + 0.1)


def test_the_pid_stops_at_the_boats_max_rudder_and_does_not_wind_up_against_it():
    pilot = Pilot(PilotConfig(limits=SafetyLimits(max_rudder=0.5)))
    pilot.set_mode('compass', 20 * DEG)  # P 0.70: past this boat's stop, not past 1.0
    _, outs = sail(pilot, 0.0, 30.0, heading=0.0)
    assert {o.raw_command for o in outs} == {0.5}
    assert pilot.pid.integral == 0.0


def test_a_speed_log_gone_quiet_no_longer_schedules_the_gains():
    pilot = Pilot(PilotConfig(pid=PIDGains(ki=0.0)))
    pilot.set_mode('compass', 5 * DEG)
    t, outs = sail(pilot, 0.0, 0.1, heading=0.0, speed=1.5)  # half speed: scale 2 (bound)
    assert outs[-1].raw_command == pytest.approx(2.0 * 2.0 * 5 * DEG)
    _, outs = sail(pilot, t, 6.0, heading=0.0)  # no speed for 6 s: stale after 5
    assert outs[-1].raw_command == pytest.approx(2.0 * 5 * DEG)


def test_the_handover_blend_starts_from_the_pids_whole_request_at_the_speed_sailed():
    """The PID holds weather helm (its integral) at 2.5 m/s (scale 1.44) when the model
    takes the helm: the first blended request is 10 % model, 90 % that PID request."""
    pilot = Pilot(policy=Steady(0.25))
    pilot.set_mode('compass', 5 * DEG)
    _, outs = sail(pilot, 0.0, 4.0, heading=0.0, speed=2.5)
    pid = [o for o in outs if o.policy == POLICY_FALLBACK_PID]
    model = [o for o in outs if o.policy == POLICY_MODEL]
    assert pilot.pid.integral != 0.0 and len(model) > 10
    assert pid[-1].raw_command == pytest.approx(1.44 * 2.0 * 5 * DEG + 0.3 * 5 * DEG * 2.0,
                                                rel=0.02)
    assert model[0].raw_command == pytest.approx(0.1 * 0.25 + 0.9 * pid[-1].raw_command,
                                                 rel=1e-3)
    # After HANDOVER_S (10 ticks at 10 Hz) the model steers alone.
    assert 'taking the helm from the PID (90%)' in model[8].reason
    assert model[9].reason == '' and model[9].raw_command == 0.25


def test_the_pid_takes_over_where_the_model_left_the_rudder_off_course_and_slow():
    pilot = Pilot(policy=Steady(0.25))
    pilot.set_mode('compass', 3 * DEG)
    t, outs = sail(pilot, 0.0, 60.0, heading=0.0, speed=2.5)  # 0.25 of helm, 3 deg off
    assert outs[-1].policy == POLICY_MODEL
    pilot.reconfigure(policy=None)
    _, after = sail(pilot, t, 0.1, heading=0.0, speed=2.5)
    assert after[0].policy == POLICY_FALLBACK_PID
    assert after[0].raw_command == pytest.approx(0.25, abs=0.01)  # no jump
