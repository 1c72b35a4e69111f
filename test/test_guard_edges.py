"""The guards at their edges: what the envelope reads and refuses, exactly when each guard
hands over and gives back, what the watchdog measures, and how the Pilot wires them.

Written against `make mutation`'s survivors (docs/mutation.md). The watchdog tests tick
every 0.5 s, on times a float holds exactly, so "after 20 s" means that tick and no other.
"""

import json
import math
import re

import numpy as np
import pytest

from autopilot_ros.conventions import GRAVITY
from autopilot_ros.features import FEATURE_NAMES, INDEX, NUM_FEATURES
from autopilot_ros.guards import GUARD_RANGES, Envelope, EnvelopeError, GuardConfig, ModelGuard
from autopilot_ros.pid_pilot import PIDGains
from autopilot_ros.pilot import POLICY_FALLBACK_PID, POLICY_MODEL, Pilot, PilotConfig
from autopilot_ros.samples import HeadingSample, ImuSample, SpeedSample, WindSample

DEG = math.pi / 180
TICK = 0.5  # exact in binary


def _json(low, high, names=FEATURE_NAMES) -> str:
    return json.dumps({'features': list(names), 'low': list(low), 'high': list(high)})


def _row(value: float = 0.0, **values: float) -> np.ndarray:
    row = np.full(NUM_FEATURES, value, np.float32)
    for name, v in values.items():
        row[INDEX[name]] = v
    return row


# -- the envelope ---------------------------------------------------------------------------
@pytest.mark.parametrize('name', list(GUARD_RANGES))
def test_both_ends_of_every_guard_range_are_valid(name):
    low, high, _ = GUARD_RANGES[name]
    GuardConfig(**{name: low}).validate()
    GuardConfig(**{name: high}).validate()


@pytest.mark.parametrize('low, high, names', [
    ([0.0] * (NUM_FEATURES - 1), [1.0] * NUM_FEATURES, FEATURE_NAMES),
    ([0.0] * NUM_FEATURES, [1.0] * (NUM_FEATURES + 1), FEATURE_NAMES),
    ([0.0] * NUM_FEATURES, [1.0] * NUM_FEATURES, FEATURE_NAMES[::-1]),
])
def test_an_envelope_of_other_features_or_lengths_is_refused(low, high, names):
    with pytest.raises(EnvelopeError, match='does not cover'):
        Envelope.from_json(_json(low, high, names))


def test_a_row_on_the_bound_is_inside_in_the_models_float32():
    env = Envelope.from_json(_json([-1.2] * NUM_FEATURES, [1.2] * NUM_FEATURES))
    assert env.outside(_row(1.2)) == [] and env.outside(_row(-1.2)) == []
    assert env.outside(_row(np.nextafter(np.float32(1.2), np.float32(2)))) == list(FEATURE_NAMES)
    # A feature the training never moved (a zero span in the metadata) is accepted.
    flat = Envelope.from_json(_json([0.0] * NUM_FEATURES, [0.0] * NUM_FEATURES))
    assert flat.outside(_row(0.0)) == [] and flat.outside(_row(0.0, roll=0.1)) == ['roll']
    rng = np.random.default_rng(3)
    made = Envelope.from_rows(rng.normal(0.0, 1.0, (500, NUM_FEATURES)).astype(np.float32))
    assert made.outside(made.low.astype(np.float32)) == []
    assert made.outside(made.high.astype(np.float32)) == []


def test_the_metadata_holds_the_bounds_to_a_millionth():
    env = Envelope(np.full(NUM_FEATURES, -0.12345678, np.float32),
                   np.full(NUM_FEATURES, 0.12345678, np.float32))
    data = json.loads(env.to_json())
    assert data['low'][0] == -0.123457 and data['high'][0] == 0.123457


@pytest.mark.parametrize('rows', [
    np.zeros((10, NUM_FEATURES - 1), np.float32),
    np.zeros(NUM_FEATURES, np.float32),
    np.zeros((0, NUM_FEATURES), np.float32),
])
def test_training_rows_of_another_shape_or_none_give_no_envelope(rows):
    with pytest.raises(EnvelopeError, match=rf'need \(n, {NUM_FEATURES}\) rows'):
        Envelope.from_rows(rows)


def test_a_feature_the_training_never_moved_gets_a_small_span_around_its_value():
    rows = np.zeros((1, NUM_FEATURES), np.float32)  # one row is enough
    rows[0, INDEX['roll']] = 0.5
    env = Envelope.from_rows(rows)
    assert (env.low < rows[0]).all() and (rows[0] < env.high).all()
    assert env.outside(_row(0.0, roll=0.5)) == []
    assert env.outside(_row(0.0, roll=0.51)) == ['roll']


# -- the envelope guard ---------------------------------------------------------------------
def _box() -> Envelope:
    return Envelope(np.full(NUM_FEATURES, -1.0, np.float32),
                    np.full(NUM_FEATURES, 1.0, np.float32))


def test_a_fresh_guard_holds_nothing_and_a_row_outside_from_the_start_counts():
    guard = ModelGuard(GuardConfig(envelope_grace_s=1.0), _box())
    assert guard.holding == ''
    assert guard.before_model(0.0, _row(0.0, roll=2.0)) == ''  # the grace starts now
    assert guard.before_model(1.0, _row(0.0, roll=2.0)) == 'outside training envelope: roll'


def test_a_rearm_of_zero_gives_the_helm_back_on_the_first_row_inside_and_trips_add_up():
    guard = ModelGuard(GuardConfig(envelope_grace_s=0.0, envelope_rearm_s=0.0), _box())
    for k in range(3):
        assert guard.before_model(2.0 * k, _row(0.0, accel_sway=3.0)).startswith('outside')
        assert guard.before_model(2.0 * k + 1.0, _row(0.0)) == ''
    assert guard.trips['envelope'] == 3


def test_the_model_steers_again_exactly_when_the_rearm_time_is_over():
    guard = ModelGuard(GuardConfig(envelope_grace_s=0.0, envelope_rearm_s=5.0), _box())
    assert guard.before_model(0.0, _row(0.0, roll=2.0)).startswith('outside')
    assert guard.before_model(10.0, _row(0.0)).startswith('outside')  # inside from 10 s
    assert guard.before_model(14.5, _row(0.0)).startswith('outside')
    assert guard.before_model(15.0, _row(0.0)) == ''


# -- the watchdog ---------------------------------------------------------------------------
def _quick(**kw) -> GuardConfig:
    return GuardConfig(**{'watchdog_window_s': 10.0, 'watchdog_settle_s': 5.0,
                          'watchdog_holdoff_s': 20.0, **kw})


def _watch(guard: ModelGuard, ticks, model, pid, error) -> list[tuple[float, str]]:
    """(time, reason) per tick k of `ticks`, at k * TICK s; model, pid, error: of k."""
    out = []
    for k in ticks:
        t = k * TICK
        out.append((t, guard.before_model(t, None)
                    or guard.after_model(t, model(k), pid(k), error(k))))
    return out


def _first(out) -> tuple[float, str]:
    return next(((t, r) for t, r in out if r), (math.nan, ''))


def _numbers(reason: str) -> list[float]:
    return [float(x) for x in re.findall(r'\d+\.\d+', reason)]


def test_the_watchdog_judges_on_the_tick_the_window_is_full_and_holds_off_to_the_tick():
    guard = ModelGuard(_quick())
    saw = (lambda k: 0.6 * (-1) ** k, lambda k: 0.0, lambda k: 0.0)
    out = dict(_watch(guard, range(1, 110), *saw))
    # Steering from 0.5 s; settled at 5.5 s; ticks from 6.0 s judged once they span 95 %
    # of the 10 s window, at 15.5 s. Held off for 20 s: the model is back at 35.5 s.
    assert _first(out.items())[0] == 15.5
    assert out[35.0].startswith('watchdog') and out[35.0].endswith('for 20 s')
    assert out[35.5] == ''
    # Settled again at 40.5 s, judged at 50.5 s: tripped again straight away, twice as long.
    assert out[50.5].endswith('for 40 s') and guard.trips['watchdog'] == 2


def test_the_watchdog_reports_smoothed_travel_per_minute_of_both_pilots():
    """The model ramps at 2/s; the PID's request jitters +-0.3 each tick (gyro noise), which
    the 1 s smoothing mostly takes out: per tick a first-order filter passes 2aA / (2 - a)
    of a +-A alternation, a = 1 - exp(-0.5). At the first judgement 20 ticks span 9.5 s."""
    guard = ModelGuard(_quick(watchdog_min_travel=0.0))
    out = _watch(guard, range(1, 40), lambda k: 2.0 * k * TICK, lambda k: 0.3 * (-1) ** k,
                 lambda k: 0.0)
    t, reason = _first(out)
    assert t == 15.5 and reason.startswith('watchdog: rudder travel')
    a = 1.0 - math.exp(-TICK)
    per_minute = 60.0 / 9.5
    model, pid = _numbers(reason)
    assert model == pytest.approx(20 * 2.0 * TICK * per_minute, abs=0.06)  # 126.3
    assert pid == pytest.approx(20 * 2 * a * 0.3 / (2 - a) * per_minute, abs=0.06)  # 18.6


def test_a_model_holding_more_helm_than_the_pid_but_still_is_not_busy():
    guard = ModelGuard(_quick(watchdog_min_travel=0.0))  # no floor at all
    out = _watch(guard, range(1, 200), lambda k: 0.3, lambda k: 0.0, lambda k: 0.0)
    assert _first(out)[1] == ''


def test_a_steady_error_under_the_threshold_is_no_fault_one_just_over_it_is():
    steady = (lambda k: 0.1, lambda k: 0.1)
    small = ModelGuard(_quick(watchdog_max_error_deg=2.0))
    assert _first(_watch(small, range(1, 200), *steady, lambda k: 1.5 * DEG))[1] == ''
    # An RMS exactly at the threshold is not over it (0.125 rad squares exactly).
    at = ModelGuard(_quick(watchdog_max_error_deg=math.degrees(0.125)))
    assert _first(_watch(at, range(1, 200), *steady, lambda k: 0.125))[1] == ''
    over = ModelGuard(_quick(watchdog_max_error_deg=math.degrees(0.125)))
    t, reason = _first(_watch(over, range(1, 200), *steady, lambda k: 0.126))
    assert t == 15.5 and reason.startswith('watchdog: heading error RMS 7.2 deg')


def test_a_poor_spell_that_has_left_the_window_is_forgotten():
    guard = ModelGuard(_quick(watchdog_max_error_deg=10.0))
    def error(k):  # 9.5 deg (under 10) for 16 s, then 1 deg
        return (9.5 if k * TICK < 16.0 else 1.0) * DEG
    out = _watch(guard, range(1, 200), lambda k: 0.1, lambda k: 0.1, error)
    assert _first(out)[1] == ''


def test_the_window_holds_the_tick_exactly_window_s_old():
    """At 16 s the window runs from 6 s, that tick included: 21 ticks. Its error is 0, the
    next 19 are at the threshold and the newest at 1.5 times it (squared): the RMS of all
    21 is just under the threshold, of the newest 20 just over."""
    limit = math.degrees(0.125)
    squares = {12: 0.0, 32: 1.5}  # k = 12 is 6.0 s, k = 32 is 16.0 s

    def error(k):
        return 0.125 * math.sqrt(squares.get(k, 1.0))
    guard = ModelGuard(_quick(watchdog_max_error_deg=limit))
    out = _watch(guard, range(1, 33), lambda k: 0.1, lambda k: 0.1, error)
    assert _first(out)[1] == ''


def test_a_pause_of_a_second_keeps_the_watch_a_longer_one_restarts_it():
    saw = (lambda k: 0.6 * (-1) ** k, lambda k: 0.0, lambda k: 0.0)
    ticks = [k for k in range(1, 60) if k != 20]  # no tick at 10 s: a 1.0 s pause
    assert _first(_watch(ModelGuard(_quick()), ticks, *saw))[0] == 15.5
    ticks = [k for k in range(1, 60) if k not in (20, 21)]  # 1.5 s: settle again from 11 s
    assert _first(_watch(ModelGuard(_quick()), ticks, *saw))[0] == 26.0


def test_a_tick_repeated_at_the_same_stamp_is_not_a_pause():
    """Only time going backwards or a gap restarts the watch: a repeated stamp (two ticks on
    one sim-time step) keeps it, and the sawing model is caught as early as without it."""
    saw = (lambda k: 0.6 * (-1) ** k, lambda k: 0.0, lambda k: 0.0)
    ticks = [k for k in range(1, 60)]
    ticks.insert(ticks.index(20), 20)
    assert _first(_watch(ModelGuard(_quick()), ticks, *saw))[0] == 15.5


def test_a_clock_stepping_back_is_no_fault_of_a_model_steering_steadily():
    guard = ModelGuard(_quick())
    steady = (lambda k: 0.2, lambda k: 0.2, lambda k: 0.0)
    out = _watch(guard, range(1, 40), *steady)  # to 19.5 s
    out += _watch(guard, range(10, 200), *steady)  # a simulator reset: back to 5 s
    assert _first(out)[1] == ''


def test_after_a_clock_steps_back_the_watchdog_still_judges_within_settle_and_window():
    """A simulator reset must not leave a sawing model unjudged: the watch restarts from the
    new time (settle 5 s, window 10 s), not from a history stamped in the future."""
    saw = (lambda k: 0.6 * (-1) ** k, lambda k: 0.0, lambda k: 0.0)
    guard = ModelGuard(_quick())
    _watch(guard, range(1, 20), lambda k: 0.2, lambda k: 0.2, lambda k: 0.0)  # to 9.5 s
    out = _watch(guard, range(2, 60), *saw)  # reset to 1 s, then sawing
    assert _first(out)[0] == 16.0  # restarted at 1 s: + 5 s settle + 10 s window


# -- in the Pilot ---------------------------------------------------------------------------
class Saw:
    """A model that saws at the rudder (+-amplitude each tick); may carry an envelope."""

    last_inference_time = 0.001

    def __init__(self, amplitude: float = 0.6, envelope: Envelope | None = None) -> None:
        self.amplitude, self.envelope, self.k = amplitude, envelope, 0

    def infer(self, window) -> float:
        self.k += 1
        return self.amplitude * (-1) ** self.k


def _sail(pilot: Pilot, t: float, seconds: float, heading=lambda t: 0.0, rate=lambda t: 0.0,
          speed: float | None = None) -> tuple[float, list]:
    outs = []
    for _ in range(round(seconds / 0.1)):
        t += 0.1
        pilot.update(ImuSample(t, 0.0, 0.0, 0.0, 0.0, -rate(t), 0.0, 0.0, GRAVITY))
        pilot.update(HeadingSample(t, heading(t)))
        pilot.update(WindSample(t, 60 * DEG, 8.0))
        if speed is not None:
            pilot.update(SpeedSample(t, speed))
        outs.append(pilot.step(t))
    return t, outs


def _tripped(outs) -> list:
    return [o for o in outs if o.reason.startswith('watchdog')]


def test_in_the_pilot_the_watchdog_compares_with_the_pid_at_the_speed_sailed():
    """The boat yaws 2 deg either side of the course; the PID would answer it, twice as hard
    at half the reference speed (scale 2). The model saws far harder and is stopped; the
    PID's travel it was judged against is the scheduled one."""
    def pid_travel(speed: float) -> float:
        pilot = Pilot(PilotConfig(pid=PIDGains(integral_limit=0.0), guards=_quick()), Saw())
        pilot.set_mode('compass', 0.0)
        w = 2 * math.pi / 8.0
        _, outs = _sail(pilot, 0.0, 30.0, heading=lambda t: 2 * DEG * math.sin(w * t),
                        rate=lambda t: 2 * DEG * w * math.cos(w * t), speed=speed)
        stopped = _tripped(outs)
        assert stopped and stopped[0].policy == POLICY_FALLBACK_PID
        assert stopped[0].reason.endswith('the PID steers for 20 s')
        assert pilot.guard.holding == stopped[0].reason
        return _numbers(stopped[0].reason)[1]
    assert pid_travel(1.5) == pytest.approx(2.0 * pid_travel(3.0), rel=0.05)


def test_switching_the_watchdog_off_hands_the_helm_back_at_once():
    pilot = Pilot(PilotConfig(guards=_quick(watchdog_holdoff_s=600.0)), Saw())
    pilot.set_mode('compass', 0.0)
    t, outs = _sail(pilot, 0.0, 20.0)
    assert _tripped(outs) and outs[-1].policy == POLICY_FALLBACK_PID
    pilot.reconfigure(config=PilotConfig(guards=_quick(watchdog=False)))
    _, outs = _sail(pilot, t, 0.1)
    assert outs[0].policy == POLICY_MODEL and pilot.guard.holding == ''
    assert pilot.guard.before_model(t + 0.2, None) == ''


def test_a_new_course_restarts_the_watch_a_nudge_or_the_same_target_does_not():
    def first_trip(target_then: float) -> float:
        pilot = Pilot(PilotConfig(guards=_quick()), Saw())
        pilot.set_mode('compass', 0.0)
        t, outs = _sail(pilot, 0.0, 10.0)
        assert not _tripped(outs)
        pilot.set_mode('compass', target_then)
        _, outs = _sail(pilot, t, 20.0)
        return _tripped(outs)[0].stamp
    on_schedule = first_trip(0.0)
    assert on_schedule < 20.0
    # A nudge is no new course: nudging every few seconds must not shield a bad model.
    assert first_trip(2 * DEG) == on_schedule
    assert first_trip(20 * DEG) > on_schedule + 5.0  # a new course: settle and a window


def test_a_new_model_gets_a_guard_of_its_own_with_the_pilots_settings_and_its_envelope():
    pilot = Pilot(PilotConfig(guards=_quick(watchdog_holdoff_s=600.0, envelope_grace_s=0.0)),
                  Saw())
    pilot.set_mode('compass', 0.0)
    t, outs = _sail(pilot, 0.0, 20.0)
    assert outs[-1].policy == POLICY_FALLBACK_PID and pilot.guard.trips['watchdog'] == 1
    narrow = Envelope(np.full(NUM_FEATURES, -1e-3, np.float32),
                      np.full(NUM_FEATURES, 1e-3, np.float32))
    pilot.set_policy(Saw(envelope=narrow))  # not the held one: judged afresh ...
    t, outs = _sail(pilot, t, 0.1)
    assert pilot.guard.trips == {'envelope': 1, 'watchdog': 0}
    assert outs[0].reason.startswith('outside training envelope: ')  # ... on its envelope
    pilot.reconfigure(config=PilotConfig(guards=_quick(envelope=False)))
    pilot.set_policy(Saw(envelope=narrow))  # with the pilot's settings: envelope off
    _, outs = _sail(pilot, t, 0.1)
    assert outs[0].policy == POLICY_MODEL
