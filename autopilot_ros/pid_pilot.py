"""The PID pilot: the classical fallback and the baseline every model must beat.

Built like the pilots sailors trust (pypilot's basic pilot): P on the heading error, D on
the gyro's turn rate (never on the error, which jumps when the target moves), and an
integral that learns the rudder the boat needs to hold a course (weather helm). Rudder
authority grows with the square of the speed through the water, so the P and D terms
are scaled by (speed_ref / speed)^2, within bounds; the integral term is a rudder offset,
not a response, and is not scaled. With ki 0 and no schedule it is the package's former
PD pilot, which tables keep as a reference column (`PD_REFERENCE`).
"""

from dataclasses import dataclass
import math

from autopilot_ros.bounds import Bounds, check_bounds


@dataclass(frozen=True)
class PIDGains:
    """Tuned on the reference yacht in the simulator (docs/design.md, "The PID pilot")."""

    kp: float = 2.0
    ki: float = 0.3
    kd: float = 5.0
    integral_limit: float = 0.3
    leak_s: float = 300.0
    track_s: float = 5.0
    speed_ref: float = 3.0
    schedule_min: float = 0.5
    schedule_max: float = 2.0

    def validate(self) -> None:
        """Raise ValueError naming the value: gains a sailor could set but not sail with."""
        check_bounds(self, GAIN_RANGES, 'pid')


# Per gain: the range a boat may use and what it means (the node's parameter descriptions).
GAIN_RANGES: Bounds = {
    'kp': (0.0, 10.0, 'rudder per rad of heading error, at speed_ref'),
    'ki': (0.0, 5.0, 'rudder per rad*s of heading error: removes weather helm'),
    'kd': (0.0, 20.0, 'rudder per rad/s of turn rate to starboard, at speed_ref'),
    'integral_limit': (0.0, 1.0, 'ceiling of the integral term, normalised rudder '
                                 '(anti-windup)'),
    'leak_s': (1.0, 1e6, 's: time constant with which the integral forgets'),
    'track_s': (0.1, 600.0, 's: while the model steers, the integral follows the rudder '
                            'offset it holds, low-passed over this long'),
    'speed_ref': (0.0, 30.0, 'm/s the P and D gains are tuned at: they scale with '
                             '(speed_ref / speed)^2; 0 turns the schedule off'),
    'schedule_min': (0.05, 1.0, 'lower bound of the speed schedule scale'),
    'schedule_max': (1.0, 20.0, 'upper bound of the speed schedule scale'),
}


# The PD pilot this package had before the PID (kp 3, kd 5, no integral, no schedule): the
# reference column of every table.
PD_REFERENCE = PIDGains(kp=3.0, ki=0.0, kd=5.0, speed_ref=0.0)


class PIDPilot:
    """One rudder request per tick from heading error, turn rate and speed.

    `command` when it steers, `track` when another policy does (so taking over is
    bumpless), `reset` when the integral no longer means anything (engage, a new course).
    """

    def __init__(self, gains: PIDGains | None = None) -> None:
        self.gains = gains or PIDGains()
        self.gains.validate()
        self.integral = 0.0  # the integral term itself, normalised rudder

    def reset(self) -> None:
        self.integral = 0.0

    def scale(self, speed: float | None) -> float:
        """(speed_ref / speed)^2 within the schedule's bounds; 1 without a speed or schedule.

        A boat at half the reference speed needs four times the rudder for the same turn;
        the bounds keep a drifting boat from slamming the rudder and a planing one alive.
        """
        g = self.gains
        if g.speed_ref <= 0.0 or speed is None or not math.isfinite(speed):
            return 1.0
        if speed <= 0.0:
            return g.schedule_max
        return min(g.schedule_max, max(g.schedule_min, (g.speed_ref / speed) ** 2))

    def response(self, error: float, turn_rate: float, speed: float | None) -> float:
        """The P and D terms: what the pilot would do about the error this instant."""
        g = self.gains
        return self.scale(speed) * (g.kp * error - g.kd * turn_rate)

    def command(self, error: float, turn_rate: float, speed: float | None, dt: float,
                max_rudder: float = 1.0) -> float:
        """The PID's request this tick, within +-max_rudder; advances the integral.

        Anti-windup: the integral stops growing while the request is saturated in the
        direction the error pushes, and its term never exceeds `integral_limit`.
        """
        g = self.gains
        dt = max(0.0, dt) if math.isfinite(dt) else 0.0
        self._leak(dt)
        p_d = self.response(error, turn_rate, speed)
        saturated = abs(p_d + self.integral) >= max_rudder and \
            (p_d + self.integral) * error > 0.0
        if not saturated:
            self._set_integral(self.integral + g.ki * error * dt)
        return max(-max_rudder, min(max_rudder, p_d + self.integral))

    def track(self, applied: float, error: float, turn_rate: float, speed: float | None,
              dt: float) -> None:
        """Follow the offset another pilot holds: the rudder it applied minus the P and D
        terms, low-passed over `track_s` so a turn is not mistaken for weather helm."""
        dt = max(0.0, dt) if math.isfinite(dt) else 0.0
        if not math.isfinite(applied):
            return
        self._leak(dt)
        offset = applied - self.response(error, turn_rate, speed)
        alpha = min(1.0, dt / self.gains.track_s)
        self._set_integral(self.integral + alpha * (offset - self.integral))

    def _leak(self, dt: float) -> None:
        # Through the clamp: a lowered integral_limit holds from the next tick, saturated or not.
        self._set_integral(self.integral * math.exp(-dt / self.gains.leak_s))

    def _set_integral(self, value: float) -> None:
        limit = self.gains.integral_limit
        self.integral = max(-limit, min(limit, value)) if math.isfinite(value) else 0.0
