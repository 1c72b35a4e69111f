"""The safety layer and the PD fallback at their limits: both ways, at the edges, on bad time.

The rudder must slew as fast to port as to starboard, never past max_rudder, never on a
clock that jumped back or went non-finite, and engage from where the rudder really is.
"""

import math

import pytest

from autopilot_ros.pid_pilot import PIDPilot
from autopilot_ros.safety import SafetyLayer, SafetyLimits


def layer(**kwargs) -> SafetyLayer:
    return SafetyLayer(SafetyLimits(**kwargs))


@pytest.mark.parametrize('sign', [1.0, -1.0])
def test_the_rudder_slews_at_the_rate_limit_either_way_to_the_range_limit(sign):
    safety = layer(max_rudder=0.6, max_rudder_rate=0.5)
    commands = [safety.apply(sign * 5.0, 0.1) for _ in range(20)]
    assert commands[0] == pytest.approx(sign * 0.05)
    assert commands[4] == pytest.approx(sign * 0.25)
    assert commands[-1] == pytest.approx(sign * 0.6) and max(map(abs, commands)) <= 0.6
    # Back the other way, again at the rate limit.
    assert safety.apply(-sign * 5.0, 0.1) == pytest.approx(sign * 0.55)


def test_a_request_inside_the_range_is_reached_and_held_exactly():
    safety = layer(max_rudder=0.8, max_rudder_rate=1.0)
    safety.reset(0.3)
    assert safety.apply(0.32, 0.1) == pytest.approx(0.32)
    assert safety.apply(0.32, 0.1) == pytest.approx(0.32)
    assert safety.apply(-0.2, 0.1) == pytest.approx(0.22)


@pytest.mark.parametrize('dt', [-0.5, math.nan, math.inf])
def test_a_clock_that_jumps_back_or_breaks_does_not_move_the_rudder(dt):
    safety = layer()
    safety.reset(0.2)
    assert safety.apply(1.0, dt) == 0.2
    assert safety.apply(-1.0, dt) == 0.2


def test_engaging_starts_from_the_measured_rudder_clamped_and_never_from_nan():
    safety = layer(max_rudder=0.5)
    safety.reset(-0.3)
    assert safety.command == -0.3
    safety.reset(0.9)
    assert safety.command == 0.5
    safety.reset(-0.9)
    assert safety.command == -0.5
    for broken in (math.nan, math.inf):
        safety.reset(broken)
        assert safety.command == 0.0
    safety.reset(0.4)
    safety.reset()
    assert safety.command == 0.0


@pytest.mark.parametrize('limits, words', [
    (dict(max_rudder=0.0), r'max_rudder 0\.0 not in \(0, 1\]'),
    (dict(max_rudder=1.2), r'max_rudder 1\.2 not in \(0, 1\]'),
    (dict(max_rudder_rate=0.0), r'max_rudder_rate 0\.0 not in \(0, 10\] per s'),
    (dict(max_rudder_rate=10.5), r'max_rudder_rate 10\.5 not in \(0, 10\] per s'),
    (dict(stale_limits={'wind': 0.0}), r'stale limit for wind 0\.0 s not in \(0, 60\]'),
    (dict(stale_limits={'heading': 60.5}), r'stale limit for heading 60\.5 s not in \(0, 60\]'),
])
def test_unusable_limits_are_refused_naming_the_value(limits, words):
    with pytest.raises(ValueError, match=words):
        SafetyLimits(**limits).validate()


def test_the_widest_usable_limits_are_accepted():
    SafetyLimits(max_rudder=1.0, max_rudder_rate=10.0, stale_limits={'wind': 60.0}).validate()


def test_the_pid_saturates_at_the_rudder_limit_both_ways_and_no_further():
    def once(error, rate, max_rudder=1.0):
        return PIDPilot().command(error, rate, None, 0.1, max_rudder)
    assert once(3.0, 0.0) == 1.0
    assert once(-3.0, 0.0) == -1.0
    assert once(0.0, 2.0) == -1.0  # swinging fast to starboard: full port
    assert once(3.0, 0.0, max_rudder=0.4) == 0.4
    g = PIDPilot().gains
    assert once(0.1, 0.02) == pytest.approx(g.kp * 0.1 - g.kd * 0.02 + g.ki * 0.1 * 0.1)
