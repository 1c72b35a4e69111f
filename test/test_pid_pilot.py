"""The PID pilot: weather helm removed, no windup, resets, speed schedule, bumpless handover.

Each behaviour is measured against the counterfactual in the same test (the PD without an
integral, a pilot that does not track), so a test fails when the behaviour is missing.
"""

import math

import numpy as np
import pytest

from autopilot_ros.conventions import GRAVITY
from autopilot_ros.pid_pilot import GAIN_RANGES, PD_REFERENCE, PIDGains, PIDPilot
from autopilot_ros.pilot import POLICY_FALLBACK_PID, POLICY_MODEL, Pilot, PilotConfig
from autopilot_ros.policy import OnnxPolicy
from autopilot_ros.samples import HeadingSample, ImuSample, SpeedSample, WindSample
from autopilot_ros.sim.boat import BoatParams
from autopilot_ros.sim.loop import ClosedLoop, PilotSteer
from autopilot_ros.sim.scenarios import SCENARIOS

DEG = math.pi / 180
DT = 0.1


def plant(gains: PIDGains, bias: float, seconds: float, speed: float = 3.0) -> list[float]:
    """Heading errors of a Nomoto boat, r' = 0.15 (rudder + bias) - 0.5 r, under the pilot.

    `bias` is weather helm: rudder the boat needs just to go straight.
    """
    pid = PIDPilot(gains)
    heading, rate, errors = 0.0, 0.0, []
    for _ in range(int(seconds / DT)):
        error = -heading  # target 0; positive error: the target is to starboard
        rudder = pid.command(error, rate, speed, DT)
        rate += DT * (0.15 * (rudder + bias) - 0.5 * rate)
        heading += DT * rate
        errors.append(error)
    return errors


def test_the_integral_removes_the_standing_error_weather_helm_leaves_the_pd():
    pd_error = plant(PD_REFERENCE, bias=-0.15, seconds=300)[-1]
    pid_error = plant(PIDGains(), bias=-0.15, seconds=300)[-1]
    assert pd_error == pytest.approx(0.15 / PD_REFERENCE.kp, rel=0.05)  # 2.9 deg off
    assert abs(pid_error) < 0.1 * abs(pd_error)


def test_a_pinned_rudder_does_not_wind_the_integral_up():
    gains = PIDGains(ki=1.0, integral_limit=0.3)
    pid = PIDPilot(gains)
    for _ in range(600):  # a minute 90 deg off course, the rudder hard over all the time
        assert pid.command(math.pi / 2, 0.0, 3.0, DT) == 1.0
    assert pid.integral == 0.0  # saturated towards the error: it never grew
    pid.integral = 0.0
    for _ in range(600):  # a small error the P term alone cannot saturate: capped
        pid.command(0.01, 0.0, 3.0, DT)
    assert pid.integral == pytest.approx(0.3)
    # The error changes side: the rudder follows at once, no wound-up integral to unwind.
    assert pid.command(-0.2, 0.0, 3.0, DT) == pytest.approx(0.3 - 0.2 * gains.kp, abs=0.025)


def test_the_integral_leaks_away_slowly():
    pid = PIDPilot(PIDGains(ki=0.0, leak_s=100.0))
    pid.integral = 0.2
    for _ in range(1000):  # 100 s on course
        pid.command(0.0, 0.0, 3.0, DT)
    assert pid.integral == pytest.approx(0.2 / math.e, rel=1e-3)


def test_rudder_authority_grows_with_speed_squared_so_gains_shrink():
    pid = PIDPilot(PIDGains(speed_ref=3.0, schedule_min=0.5, schedule_max=2.0))
    assert pid.scale(3.0) == 1.0
    assert pid.scale(2.5) == pytest.approx(1.44)
    assert pid.scale(1.0) == 2.0 and pid.scale(0.0) == 2.0  # bounded: a drifting boat
    assert pid.scale(6.0) == 0.5
    assert pid.scale(None) == 1.0  # no log: the gains as tuned
    assert PIDPilot(PD_REFERENCE).scale(1.0) == 1.0
    g = pid.gains
    assert pid.response(0.1, 0.0, 2.5) == pytest.approx(1.44 * g.kp * 0.1)
    assert pid.response(0.0, 0.1, 2.5) == pytest.approx(-1.44 * g.kd * 0.1)  # D damps


@pytest.mark.parametrize('name', list(GAIN_RANGES))
def test_every_gain_has_a_range_that_is_enforced(name):
    low, high, _ = GAIN_RANGES[name]
    with pytest.raises(ValueError, match=f'pid.{name}'):
        PIDGains(**{name: high + 1.0}).validate()
    with pytest.raises(ValueError, match=f'pid.{name}'):
        PIDGains(**{name: math.nan}).validate()
    PIDGains(**{name: max(low, min(high, getattr(PIDGains(), name)))}).validate()


# -- in the Pilot -------------------------------------------------------------------------
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


def test_engage_and_a_new_course_reset_the_integral_a_nudge_keeps_it():
    pilot = Pilot()
    pilot.set_mode('compass', 10 * DEG)
    t, _ = sail(pilot, 0.0, 20.0, heading=0.0)  # 10 deg off: the integral builds
    held = pilot.pid.integral
    assert held > 0.05
    pilot.reconfigure(target=12 * DEG)  # a 2 deg nudge keeps the trim
    assert pilot.pid.integral == held
    pilot.reconfigure(target=355 * DEG)  # a new course (17 deg away) starts again
    assert pilot.pid.integral == 0.0
    t, _ = sail(pilot, t, 5.0, heading=0.0)
    assert pilot.pid.integral < 0.0
    pilot.reconfigure(mode='wind_awa', target=60 * DEG)  # another mode: another trim
    assert pilot.pid.integral == 0.0
    t, _ = sail(pilot, t, 5.0, heading=0.0)
    pilot.pid.integral = 0.2
    pilot.reconfigure(mode='standby')
    sail(pilot, t, 0.2, heading=0.0)
    pilot.reconfigure(mode='compass', target=0.0)
    pilot.pid.integral = 0.2  # whatever it held, engaging starts from nothing
    _, outs = sail(pilot, t, 0.1, heading=0.0)
    assert pilot.pid.integral == 0.0 and outs[0].engaged


def test_the_speed_log_schedules_the_gains(tmp_path):
    slow, fast = Pilot(), Pilot()
    for pilot, speed in ((slow, 1.5), (fast, 3.0)):
        pilot.set_mode('compass', 5 * DEG)
        _, outs = sail(pilot, 0.0, 0.1, heading=0.0, speed=speed)
        assert outs[0].raw_command == pytest.approx(
            PIDGains().kp * 5 * DEG * (2.0 if speed == 1.5 else 1.0), rel=0.05)


def _constant_model(model_factory, value: float) -> OnnxPolicy:
    return OnnxPolicy(str(model_factory(op='constant', bias=value)), rate_hz=10.0)


def test_the_model_takes_the_helm_over_a_second_not_in_one_tick(model_factory):
    pilot = Pilot(policy=_constant_model(model_factory, 0.25))
    pilot.set_mode('compass', 0.0)
    t, outs = sail(pilot, 0.0, 4.0, heading=0.0)
    model = [o for o in outs if o.policy == POLICY_MODEL]
    pid_before = [o for o in outs if o.policy == POLICY_FALLBACK_PID]
    assert pid_before and abs(pid_before[-1].raw_command) < 1e-6  # on course: PID holds 0
    ramp = [o.raw_command for o in model[:10]]
    # 10 % of the model and 90 % of the PID's request (which starts tracking the model's
    # offset), rising by about a tenth of the model's request per tick, never a jump.
    assert ramp[0] == pytest.approx(0.025, abs=0.002)
    assert all(0.0 < b - a < 0.035 for a, b in zip(ramp, ramp[1:], strict=False))
    assert ramp[-1] == pytest.approx(0.25)
    assert 'taking the helm from the PID' in model[0].reason
    assert model[10].raw_command == pytest.approx(0.25) and model[10].reason == ''


def test_the_pid_takes_over_from_the_model_where_it_left_the_rudder(model_factory):
    pilot = Pilot(policy=_constant_model(model_factory, 0.25))
    pilot.set_mode('compass', 0.0)
    t, outs = sail(pilot, 0.0, 60.0, heading=0.0)  # the model holds 0.25 of helm
    assert outs[-1].policy == POLICY_MODEL and outs[-1].command == pytest.approx(0.25)
    assert pilot.pid.integral == pytest.approx(0.25, abs=0.01)  # tracked it
    pilot.reconfigure(policy=None)
    _, after = sail(pilot, t, 0.1, heading=0.0)
    assert after[0].policy == POLICY_FALLBACK_PID
    assert after[0].raw_command == pytest.approx(0.25, abs=0.01)  # no jump to 0
    untracked = PIDPilot().command(0.0, 0.0, None, DT)
    assert untracked == 0.0  # what a pilot that had not tracked would have asked for


def test_in_the_simulator_a_tender_boat_holds_its_course_with_the_pid_not_the_pd():
    """Closed loop on the simulator's boat with strong weather helm, both pilots alike:
    the mean heading error once settled (30 s after the start and each target change)."""
    def settled_mean_error(gains: PIDGains) -> float:
        scenario = SCENARIOS['calm_compass']
        pilot = Pilot(PilotConfig(pid=gains))
        loop = ClosedLoop(scenario, 0, rate_hz=10.0,
                          steer=PilotSteer(pilot, scenario.mode, scenario.target_at(0.0)),
                          params=BoatParams(weather_helm=1.2)).run()
        trace = loop.trace()
        t, err = trace['t'], trace['err']
        settled = np.ones(len(t), dtype=bool)
        for change in loop.changes:
            settled &= ~((t >= change) & (t < change + 30.0))
        return float(np.mean(err[settled]))
    pd, pid = settled_mean_error(PD_REFERENCE), settled_mean_error(PIDGains())
    assert pd < -2.0 * DEG  # weather helm luffs the PD boat up, for good (3.1 deg)
    assert abs(pid) < 0.15 * abs(pd)  # 0.2 deg


@pytest.mark.dds
def test_the_gains_are_node_parameters_set_as_the_cli_sends_them(spinner, wait):
    pytest.importorskip('rclpy')
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import DescribeParameters, SetParameters
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from autopilot_ros.node import AutopilotNode

    ctx = spinner.executor.context
    node = spinner.add(AutopilotNode(context=ctx, parameter_overrides=[
        Parameter('model_path', value='none'), Parameter('pid.kd', value=6.0)]))
    assert node.pilot.pid.gains == PIDGains(kd=6.0)  # a params file's gains reach the PID
    helm = spinner.add(Node('helm_station', context=ctx))

    def call(srv, name, request):
        client = helm.create_client(srv, f'/autopilot/{name}')
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(request)
        assert wait(future.done, timeout=15.0)
        return future.result()

    described = call(DescribeParameters, 'describe_parameters', DescribeParameters.Request(
        names=[f'pid.{n}' for n in GAIN_RANGES])).descriptors
    for d, (name, (low, high, meaning)) in zip(described, GAIN_RANGES.items(), strict=True):
        assert meaning in d.description
        assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) \
            == (low, high), name

    def set_gain(name: str, value: ParameterValue) -> bool:
        result = call(SetParameters, 'set_parameters', SetParameters.Request(
            parameters=[ParameterMsg(name=name, value=value)]))
        return result.results[0].successful

    # `ros2 param set /autopilot pid.ki 1`: the CLI sends an integer.
    assert set_gain('pid.ki', ParameterValue(type=ParameterType.PARAMETER_INTEGER,
                                             integer_value=1))
    assert node.pilot.pid.gains.ki == 1.0 and node.pilot.pid.gains.kd == 6.0
    assert not set_gain('pid.ki', ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                 double_value=9.0))  # outside its range
    assert node.pilot.pid.gains.ki == 1.0
