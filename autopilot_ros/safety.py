"""The safety layer: the last word on every rudder command, whatever produced it."""

from dataclasses import dataclass, field
import math

from autopilot_ros.inputs import DEFAULT_STALE_LIMITS, PER_BOAT_RANGES, validate_ranges


@dataclass
class SafetyLimits:
    max_rudder: float = 1.0  # |command| ceiling, normalised (0, 1]
    max_rudder_rate: float = 0.5  # normalised units per second
    stale_limits: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_STALE_LIMITS))
    # 'input.field' -> (low, high): a boat's plausible spans, inside the input table's.
    plausible: dict[str, tuple[float, float]] = field(
        default_factory=lambda: dict(PER_BOAT_RANGES))

    def validate(self) -> None:
        """Raise ValueError with the offending value: limits must be usable at sea."""
        if not 0.0 < self.max_rudder <= 1.0:
            raise ValueError(f'max_rudder {self.max_rudder} not in (0, 1]')
        if not 0.0 < self.max_rudder_rate <= 10.0:
            raise ValueError(f'max_rudder_rate {self.max_rudder_rate} not in (0, 10] per s')
        for name, limit in self.stale_limits.items():
            if not 0.0 < limit <= 60.0:
                raise ValueError(f'stale limit for {name} {limit} s not in (0, 60]')
        validate_ranges(self.plausible)


class SafetyLayer:
    """Range clamp, slew-rate limit and non-finite rejection, applied every tick."""

    def __init__(self, limits: SafetyLimits) -> None:
        limits.validate()
        self.limits = limits
        self.command = 0.0

    def reset(self, start: float = 0.0) -> None:
        """Start slewing from `start` (e.g. the measured rudder on engage: no jolt)."""
        m = self.limits.max_rudder
        self.command = max(-m, min(m, start)) if math.isfinite(start) else 0.0

    def apply(self, raw: float, dt: float) -> float:
        """The command to send for a raw request; a non-finite request holds the last one."""
        if not math.isfinite(raw):
            return self.command
        m = self.limits.max_rudder
        wanted = max(-m, min(m, raw))
        step = self.limits.max_rudder_rate * max(0.0, dt) if math.isfinite(dt) else 0.0
        delta = max(-step, min(step, wanted - self.command))
        self.command = max(-m, min(m, self.command + delta))
        return self.command
