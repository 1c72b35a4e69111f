"""The one test every reading passes before it leaves a parser: finite and physically possible.

A parser converts units and signs; this says whether what came out can be a measurement at
all. Spans are those of the quantity itself (a heading is in [0, 2*pi), a wind angle in
(-pi, pi]), and where the autopilot has a plausible span for the same input (apparent wind
speed, speed through water) that span, so a reading the bridge publishes is one the pilot
takes. A boat's narrower spans are the autopilot's business (`plausible.*` parameters).
"""

from __future__ import annotations

from collections.abc import Callable
import math

from autopilot_ros.inputs import INPUT_BY_NAME, MAX_RATE
from autopilot_ros.instruments.readings import (
    AttitudeReading,
    HeadingReading,
    Reading,
    RudderReading,
    SourceStats,
    SpeedReading,
    TurnRateReading,
    WindReading,
)

TWO_PI = 2.0 * math.pi


def _span(input_name: str, field: str) -> tuple[float, float]:
    return next(r.span for r in INPUT_BY_NAME[input_name].ranges if r.field == field)


AWS_SPAN = _span('wind', 'aws')  # m/s
STW_SPAN = _span('speed', 'stw')  # m/s
MAX_RUDDER_ANGLE = math.pi / 2  # rad: beyond 90 deg a rudder is broken, not hard over

# Reading kind, as the node's diagnostics name it.
KIND = {HeadingReading: 'heading', TurnRateReading: 'turn_rate', AttitudeReading: 'attitude',
        WindReading: 'wind', SpeedReading: 'speed', RudderReading: 'rudder'}


def kind(reading: Reading) -> str:
    return KIND[type(reading)]


def _within(name: str, value: float, low: float, high: float, *, open_high: bool = False,
            open_low: bool = False) -> str:
    if not math.isfinite(value):
        return f'{name}={value}'
    below = value <= low if open_low else value < low
    above = value >= high if open_high else value > high
    return f'{name}={value:.6g} outside its span' if below or above else ''


def reading_problem(reading: Reading) -> str:
    """'' for a reading that can be a measurement, else which field is not (one line)."""
    if not math.isfinite(reading.stamp) or reading.stamp <= 0.0:
        return f'stamp={reading.stamp}'
    if isinstance(reading, HeadingReading):
        return _within('heading', reading.heading, 0.0, TWO_PI, open_high=True)
    if isinstance(reading, TurnRateReading):
        return _within('rate', reading.rate, -MAX_RATE, MAX_RATE)
    if isinstance(reading, AttitudeReading):
        return (_within('roll', reading.roll, -math.pi, math.pi)
                or _within('pitch', reading.pitch, -math.pi / 2, math.pi / 2))
    if isinstance(reading, WindReading):
        return (_within('awa', reading.awa, -math.pi, math.pi, open_low=True)
                or _within('aws', reading.aws, *AWS_SPAN))
    if isinstance(reading, SpeedReading):
        return _within('stw', reading.stw, *STW_SPAN)
    if isinstance(reading, RudderReading):
        return _within('angle', reading.angle, -MAX_RUDDER_ANGLE, MAX_RUDDER_ANGLE)
    return f'not a reading: {type(reading).__name__}'


def keep_plausible(readings: list[Reading], stats: SourceStats, stamp: float, what: str,
                   error: Callable[[str], object]) -> list[Reading]:
    """The readings that pass `reading_problem`, counted in `stats` (readings, last seen);
    each one that does not goes to `error` as '<what>: <problem>'."""
    good = []
    for reading in readings:
        if problem := reading_problem(reading):
            error(f'{what}: {problem}')
        else:
            good.append(reading)
    if good:
        with stats.lock:
            stats.readings += len(good)
            for reading in good:
                stats.last_seen[kind(reading)] = stamp
    return good
