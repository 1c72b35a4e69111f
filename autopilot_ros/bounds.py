"""Numeric settings with documented bounds: one check serves every table of them.

The PID gains (pid_pilot.GAIN_RANGES) and the guards' settings (guards.GUARD_RANGES) are
each declared once as name -> (low, high, meaning); the node makes its parameters, ranges
and descriptions from the same tables, and their dataclasses validate through this.
"""

from collections.abc import Mapping
import math

Bounds = Mapping[str, tuple[float, float, str]]  # name -> (low, high, what it means)


def check_bounds(settings: object, bounds: Bounds, prefix: str) -> None:
    """Raise ValueError naming the first setting (as node parameter `prefix.name`) that is
    not a finite number inside its bounds: values a sailor could set but not sail with."""
    for name, (low, high, _) in bounds.items():
        value = getattr(settings, name)
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f'{prefix}.{name} {value} not in [{low:g}, {high:g}]')
