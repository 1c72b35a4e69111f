"""The PID pilot at its edges: the stops, the clock, the schedule's bounds, the tracking rate,
and in the Pilot the handover blend, the speed log and a lowered integral ceiling.

Written against `make mutation`'s survivors (docs/mutation.md): each test pins a behaviour a
sailor would notice, measured on the numbers the pilot reports.
"""

import math

import pytest

from autopilot_ros.conventions import GRAVITY
from autopilot_ros.pid_pilot import PIDGains
from autopilot_ros.pilot import Pilot, PilotConfig
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
