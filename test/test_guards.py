"""The guards hand the helm to the PID when the model is outside what it knows or steers
badly, say why, and give it back only after their hysteresis or hold-off."""

import math

import numpy as np
import pytest

from autopilot_ros.conventions import GRAVITY
from autopilot_ros.features import INDEX, NUM_FEATURES
from autopilot_ros.guards import (
    ENVELOPE_KEY,
    GUARD_RANGES,
    Envelope,
    EnvelopeError,
    GuardConfig,
    ModelGuard,
)
from autopilot_ros.pilot import POLICY_FALLBACK_PID, POLICY_MODEL, Pilot, PilotConfig
from autopilot_ros.policy import ModelError, OnnxPolicy
from autopilot_ros.samples import HeadingSample, ImuSample, WindSample

DEG = math.pi / 180
DT = 0.1


def _envelope(half_width: float = 1.0) -> Envelope:
    return Envelope(np.full(NUM_FEATURES, -half_width, np.float32),
                    np.full(NUM_FEATURES, half_width, np.float32))


def _row(**values: float) -> np.ndarray:
    row = np.zeros(NUM_FEATURES, np.float32)
    for name, value in values.items():
        row[INDEX[name]] = value
    return row


# -- the envelope ---------------------------------------------------------------------
def test_the_envelope_is_the_training_span_robust_to_a_few_wild_rows():
    rng = np.random.default_rng(0)
    rows = rng.uniform(-1.0, 1.0, (20000, NUM_FEATURES)).astype(np.float32)
    rows[:5, INDEX['roll']] = 50.0  # a handful of wild rows do not stretch it
    env = Envelope.from_rows(rows)
    assert env.high[INDEX['roll']] == pytest.approx(1.2, abs=0.01)  # quantile + 10 % margin
    assert env.low[INDEX['roll']] == pytest.approx(-1.2, abs=0.01)
    again = Envelope.from_json(env.to_json())
    assert np.allclose(again.low, env.low, atol=1e-6) and np.allclose(again.high, env.high,
                                                                       atol=1e-6)
    assert env.outside(_row(roll=1.5, accel_sway=-2.0)) == ['roll', 'accel_sway']
    assert env.outside(_row(roll=1.0)) == []


@pytest.mark.parametrize('text, words', [
    ('not json', 'not an envelope'),
    ('{"low": [0], "high": [1]}', 'not an envelope'),
    ('{"features": ["roll"], "low": [0], "high": [1]}', 'does not cover'),
    (Envelope(np.ones(NUM_FEATURES, np.float32), np.zeros(NUM_FEATURES, np.float32)).to_json(),
     'reversed'),
])
def test_a_malformed_envelope_is_refused_with_the_model(text, words, model_factory):
    with pytest.raises(EnvelopeError, match=words):
        Envelope.from_json(text)
    with pytest.raises(ModelError, match=words):
        OnnxPolicy(str(model_factory(metadata={ENVELOPE_KEY: text})), rate_hz=10.0)


def test_the_envelope_guard_waits_a_grace_and_gives_back_after_a_rearm():
    guard = ModelGuard(GuardConfig(envelope_grace_s=1.0, envelope_rearm_s=5.0), _envelope())
    inside, outside = _row(roll=0.5), _row(roll=1.5, accel_sway=2.0)

    def ticks_until(row, changed, t):
        for k in range(1, 200):
            reason = guard.before_model(t + k * DT, row)
            if changed(reason):
                return k, t + k * DT, reason
        raise AssertionError('never changed')
    assert guard.before_model(0.0, inside) == ''
    k, t, reason = ticks_until(outside, bool, 0.0)
    assert k == 11  # outside from the first tick, handed over once 1 s has passed
    assert reason == 'outside training envelope: roll, accel_sway'
    assert guard.trips['envelope'] == 1
    k, t, _ = ticks_until(inside, lambda r: r == '', t)
    assert k == 51  # back inside from the first tick, the model steers after 5 s
    assert guard.trips['envelope'] == 1
    for row in (outside, inside) * 20:  # a flicker shorter than the grace: no hand-over
        t += DT
        assert guard.before_model(t, row) == ''


def test_the_envelope_guard_can_be_switched_off_and_needs_an_envelope():
    off = ModelGuard(GuardConfig(envelope=False, envelope_grace_s=0.0), _envelope())
    none = ModelGuard(GuardConfig(envelope_grace_s=0.0), None)
    for guard in (off, none):
        assert guard.before_model(0.0, _row(roll=9.0)) == ''
        assert guard.before_model(5.0, _row(roll=9.0)) == ''


# -- the watchdog ---------------------------------------------------------------------
def _watch(guard: ModelGuard, t: float, seconds: float, model, pid, error
           ) -> tuple[float, str, float]:
    """Feed `seconds` of ticks; the time at the end, the first reason given and its time."""
    first, when = '', math.nan
    for k in range(round(seconds / DT)):
        t += DT
        reason = guard.before_model(t, None) or guard.after_model(t, model(k), pid(k), error(k))
        if reason and not first:
            first, when = reason, t
    return t, first, when


def _quick(**kw) -> GuardConfig:
    return GuardConfig(**{'watchdog_window_s': 10.0, 'watchdog_settle_s': 5.0,
                          'watchdog_holdoff_s': 20.0, **kw})


def test_a_model_sawing_at_the_rudder_where_the_pid_would_not_loses_the_helm():
    guard = ModelGuard(_quick())
    saw = [0.6, -0.6]
    t, reason, _ = _watch(guard, 0.0, 14.0, lambda k: saw[k % 2], lambda k: 0.05,
                          lambda k: 0.01)
    assert reason == ''  # settle (5 s) plus a window (10 s) not yet seen
    t, reason, tripped = _watch(guard, t, 2.0, lambda k: saw[k % 2], lambda k: 0.05,
                                lambda k: 0.01)
    assert reason.startswith('watchdog: rudder travel') and "against the PID's 0.0/min" in reason
    assert reason.endswith('the PID steers for 20 s') and guard.trips['watchdog'] == 1
    # Held for the hold-off, whatever the model would do meanwhile.
    quiet = (lambda k: 0.0,) * 3
    t, _, _ = _watch(guard, tripped, 19.9, *quiet)
    assert guard.holding.startswith('watchdog: rudder travel')
    _watch(guard, t, 0.2, *quiet)
    assert guard.holding == ''


def test_the_same_work_as_the_pid_would_do_is_no_fault():
    guard = ModelGuard(_quick())
    sway = [0.4, -0.4, 0.3, -0.3]  # a rough sea: both pilots work the rudder alike
    _, reason, _ = _watch(guard, 0.0, 60.0, lambda k: sway[k % 4],
                          lambda k: 0.9 * sway[k % 4], lambda k: 0.05 * (-1) ** k)
    assert reason == '' and guard.trips['watchdog'] == 0


def test_a_model_letting_the_heading_run_away_loses_the_helm_and_waits_longer_each_time():
    guard = ModelGuard(_quick(watchdog_max_error_deg=10.0))
    off, good = (lambda k: 12 * DEG), (lambda k: 1 * DEG)
    steady = (lambda k: 0.1, lambda k: 0.1)
    t, reason, tripped = _watch(guard, 0.0, 16.0, *steady, off)
    assert reason.startswith('watchdog: heading error RMS 12.0 deg over 10 s')
    assert reason.endswith('for 20 s')
    t, _, _ = _watch(guard, tripped, 20.1, *steady, off)  # the hold-off, then ...
    t, reason, tripped = _watch(guard, t, 16.0, *steady, off)
    assert reason.endswith('for 40 s')  # ... tripped again straight away: twice as long
    t, _, _ = _watch(guard, tripped, 40.1, *steady, off)
    t, reason, _ = _watch(guard, t, 16.0, *steady, good)
    assert reason == ''  # a window of good steering: forgiven
    _, reason, _ = _watch(guard, t, 16.0, *steady, off)
    assert reason.endswith('for 20 s')


def test_a_new_course_is_not_judged_until_it_has_settled():
    guard = ModelGuard(_quick(watchdog_settle_s=30.0, watchdog_window_s=10.0))
    t, _, _ = _watch(guard, 0.0, 35.0, lambda k: 0.1, lambda k: 0.1, lambda k: 0.0)
    guard.restart_watch()  # a tack: 90 deg off, turning, for 25 s
    _, reason, _ = _watch(guard, t, 25.0, lambda k: 1.0, lambda k: 1.0, lambda k: 90 * DEG)
    assert reason == '' and guard.trips['watchdog'] == 0


def test_the_watchdog_can_be_switched_off():
    guard = ModelGuard(_quick(watchdog=False))
    _, reason, _ = _watch(guard, 0.0, 60.0, lambda k: (-1) ** k, lambda k: 0.0,
                          lambda k: 45 * DEG)
    assert reason == ''


@pytest.mark.parametrize('name', list(GUARD_RANGES))
def test_every_guard_setting_has_an_enforced_range(name):
    low, high, _ = GUARD_RANGES[name]
    with pytest.raises(ValueError, match=f'guard.{name}'):
        GuardConfig(**{name: high * 2 + 1}).validate()
    GuardConfig(**{name: low}).validate()


# -- in the pilot ---------------------------------------------------------------------
def _feed(pilot: Pilot, t: float, roll: float) -> None:
    pilot.update(ImuSample(t, roll, 0.0, 0.0, 0.0, 0.0, 0.0, GRAVITY * math.sin(roll),
                           GRAVITY * math.cos(roll)))
    pilot.update(HeadingSample(t, 0.0))
    pilot.update(WindSample(t, 60 * DEG, 8.0))


def test_the_pilot_hands_over_outside_the_envelope_and_takes_it_back(model_factory):
    low = np.full(NUM_FEATURES, -10.0, np.float32)
    high = np.full(NUM_FEATURES, 10.0, np.float32)
    low[INDEX['roll']], high[INDEX['roll']] = -0.5, 0.5  # roll (x2 scaled) within 14 deg
    path = model_factory(op='constant', bias=0.2,
                         metadata={ENVELOPE_KEY: Envelope(low, high).to_json()})
    policy = OnnxPolicy(str(path), rate_hz=10.0)
    assert policy.envelope is not None
    pilot = Pilot(PilotConfig(guards=GuardConfig(envelope_grace_s=1.0, envelope_rearm_s=3.0)),
                  policy)
    pilot.set_mode('compass', 0.0)
    t, outs = 0.0, []
    for roll in [5 * DEG] * 40 + [25 * DEG] * 30 + [5 * DEG] * 50:
        t += DT
        _feed(pilot, t, roll)
        outs.append(pilot.step(t))
    assert outs[39].policy == POLICY_MODEL
    heeled = outs[40:70]
    assert all(o.policy == POLICY_MODEL for o in heeled[:9])  # the grace
    assert all(o.policy == POLICY_FALLBACK_PID and o.reason ==
               'outside training envelope: roll' for o in heeled[11:])
    back = outs[70:]
    assert all(o.policy == POLICY_FALLBACK_PID for o in back[:29])  # re-arm: 3 s inside
    assert back[-1].policy == POLICY_MODEL
    assert pilot.guard.trips == {'envelope': 1, 'watchdog': 0}


def test_export_writes_the_training_envelope_the_node_reads(tmp_path):
    torch = pytest.importorskip('torch')
    from autopilot_ros.training.export import export_onnx
    from autopilot_ros.training.model import build_model

    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    rows = rng.normal(0.0, 0.3, (5000, NUM_FEATURES)).astype(np.float32)
    windows = rng.normal(0.0, 0.3, (8, 20, NUM_FEATURES)).astype(np.float32)
    path = tmp_path / 'm.onnx'
    export_onnx(build_model('small'), str(path), rate_hz=10.0, check_windows=windows,
                envelope_rows=rows)
    env = OnnxPolicy(str(path), rate_hz=10.0).envelope
    expected = Envelope.from_rows(rows)
    assert np.allclose(env.low, expected.low, atol=1e-5)
    assert env.outside(_row(roll=5.0)) == ['roll']


# -- over DDS -------------------------------------------------------------------------
class _Instruments:
    """Publishes IMU (with `roll`), heading and wind at 20 Hz; records the autopilot's
    status and diagnostics."""

    def __init__(self, spinner, ctx) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        from autopilot_ros.inputs import INPUT_BY_NAME
        from autopilot_ros.msg import AutopilotStatus
        from autopilot_ros.ros_messages import message_class

        self.roll = 5 * DEG
        self.statuses: list = []
        self.diagnostics: list = []
        node = spinner.add(Node('instruments', context=ctx))
        self.node = node
        self.pubs = {name: (node.create_publisher(message_class(INPUT_BY_NAME[name].msg_type),
                                                  name, qos_profile_sensor_data),
                            INPUT_BY_NAME[name])
                     for name in ('imu', 'heading', 'wind')}
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(AutopilotStatus, 'autopilot/status', self.statuses.append,
                                 reliable)
        node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, 10)
        node.create_timer(0.05, self._publish)

    def _publish(self) -> None:
        now = self.node.get_clock().now()
        t = now.nanoseconds * 1e-9
        samples = {'imu': ImuSample(t, self.roll, 0.0, 0.0, 0.0, 0.0, 0.0,
                                    GRAVITY * math.sin(self.roll), GRAVITY * math.cos(self.roll)),
                   'heading': HeadingSample(t, 0.0), 'wind': WindSample(t, 60 * DEG, 8.0)}
        for name, (pub, spec) in self.pubs.items():
            msg = pub.msg_type()
            msg.header.stamp = now.to_msg()
            spec.fill_msg(msg, samples[name])
            pub.publish(msg)

    def pilot_value(self, key: str) -> str | None:
        for array in reversed(self.diagnostics):
            for status in array.status:
                for kv in status.values:
                    if kv.key == key:
                        return kv.value
        return None


def _autopilot(spinner, model, **guards):
    from rclpy.parameter import Parameter

    from autopilot_ros.node import AutopilotNode
    params = [Parameter('model_path', value=str(model)),
              Parameter('allowed_model_dirs', value=[str(model.parent)]),
              Parameter('mode', value='compass'), Parameter('target', value=0.0)]
    params += [Parameter(f'guard.{k}', value=v) for k, v in guards.items()]
    return spinner.add(AutopilotNode(context=spinner.executor.context,
                                     parameter_overrides=params))


@pytest.mark.dds
def test_over_dds_a_heel_the_model_never_saw_hands_the_helm_to_the_pid(
        spinner, wait, model_factory):
    pytest.importorskip('rclpy')
    from autopilot_ros.msg import AutopilotStatus
    low = np.full(NUM_FEATURES, -10.0, np.float32)
    high = np.full(NUM_FEATURES, 10.0, np.float32)
    low[INDEX['roll']], high[INDEX['roll']] = -0.5, 0.5  # trained within 14 deg of heel
    model = model_factory(op='constant', bias=0.2,
                          metadata={ENVELOPE_KEY: Envelope(low, high).to_json()})
    node = _autopilot(spinner, model, envelope_grace_s=0.5, envelope_rearm_s=1.0)
    boat = _Instruments(spinner, spinner.executor.context)

    def last():
        return boat.statuses[-1] if boat.statuses else None
    assert wait(lambda: (s := last()) and s.policy == AutopilotStatus.POLICY_MODEL
                and s.reason == '', timeout=15.0)
    boat.roll = 25 * DEG  # knocked over further than it was ever trained
    assert wait(lambda: (s := last()) and s.policy == AutopilotStatus.POLICY_FALLBACK_PID
                and s.reason == 'outside training envelope: roll', timeout=10.0)
    assert wait(lambda: boat.pilot_value('guard holding the helm') ==
                'outside training envelope: roll', timeout=10.0)
    assert boat.pilot_value('training envelope') == 'checked'
    boat.roll = 5 * DEG
    assert wait(lambda: (s := last()) and s.policy == AutopilotStatus.POLICY_MODEL,
                timeout=10.0)
    assert node.pilot.guard.trips['envelope'] == 1
    assert wait(lambda: boat.pilot_value('guard trips: envelope') == '1', timeout=10.0)


@pytest.mark.dds
def test_over_dds_an_oscillating_model_is_stopped_by_the_watchdog(spinner, wait,
                                                                   model_factory):
    pytest.importorskip('rclpy')
    from autopilot_ros.msg import AutopilotStatus
    # Its request is minus the sign of the rudder it last gave: it saws at the rudder while
    # the boat sits on course, where the PID would ask for nothing.
    model = model_factory(feature='rudder_angle', gain=-50.0, bias=0.3)
    node = _autopilot(spinner, model, watchdog_window_s=10.0, watchdog_settle_s=0.0,
                      watchdog_holdoff_s=600.0)
    boat = _Instruments(spinner, spinner.executor.context)
    assert wait(lambda: any(s.policy == AutopilotStatus.POLICY_MODEL for s in boat.statuses),
                timeout=15.0)
    assert wait(lambda: boat.statuses[-1].reason.startswith('watchdog: rudder travel'),
                timeout=30.0)
    status = boat.statuses[-1]
    assert status.policy == AutopilotStatus.POLICY_FALLBACK_PID
    assert status.reason.endswith('the PID steers for 600 s')
    assert node.pilot.guard.trips['watchdog'] == 1
    assert wait(lambda: (boat.pilot_value('guard holding the helm') or '').startswith(
        'watchdog'), timeout=10.0)


def test_evaluation_counts_the_ticks_a_guard_held_the_helm_apart_from_other_fallback(
        model_factory):
    """A sawing model on the calm course: the watchdog holds it off, and the table says so
    in its own column, not mixed with the window filling at the start."""
    from autopilot_ros.sim.evaluate import run_episode, summary_table
    from autopilot_ros.sim.scenarios import SCENARIOS
    saw = str(model_factory(feature='rudder_angle', gain=-50.0, bias=0.3))
    quick = PilotConfig(guards=GuardConfig(watchdog_window_s=10.0, watchdog_settle_s=0.0))
    guarded = run_episode(saw, SCENARIOS['calm_compass'], 0, config=quick)
    assert 0.5 < guarded.guard_frac <= guarded.fallback_frac < 1.0
    free = run_episode(saw, SCENARIOS['calm_compass'], 0, config=PilotConfig(
        guards=GuardConfig(watchdog=False)))
    assert free.guard_frac == 0.0 and free.fallback_frac < 0.02  # the window filling only
    table = summary_table([guarded])
    assert table.splitlines()[0].split()[-1] == 'guards'
    assert table.splitlines()[2].split()[-1] == f'{100 * guarded.guard_frac:.1f}%'
