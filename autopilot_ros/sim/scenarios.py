"""Named sailing situations for demos, tests and training data.

Each one is a pilot mode with a target, a wind and a sea. They span what makes steering
hard: weather helm that changes with gusts, chop on the bow, beam seas that roll the boat,
quartering seas that yaw it and want to broach it, a gale, and a start far off course.
"""

from dataclasses import dataclass
import math

import numpy as np

from autopilot_ros.conventions import STEERING_MODES, twa_for_awa, wrap_2pi, wrap_pi
from autopilot_ros.sim.boat import polar_speed


@dataclass(frozen=True)
class Scenario:
    """A run's conditions. Angles in rad, speeds in m/s, times in s.

    target: compass heading (mode 'compass') or wind angle (AWA/TWA, > 0 wind from
    starboard). target_changes: (time_s, new_target) pairs. wind_from: compass direction
    the wind blows from. gust: relative std of TWS; shift: std of the slow direction walk;
    step_shift: size of sudden shifts. Waves come from wind_from + wave_dir_offset.
    initial_offset: initial heading minus target heading; initial_offset_range (min, max)
    makes it seed-dependent: a magnitude in the range with a random sign.
    """

    name: str
    description: str
    mode: str
    target: float
    duration_s: float
    tws: float
    wind_from: float
    gust: float = 0.1
    shift: float = math.radians(3.0)
    step_shift: float = math.radians(8.0)
    wave_height: float = 0.0  # significant wave height, m
    wave_period: float = 5.0  # peak period, s
    wave_dir_offset: float = 0.0
    target_changes: tuple[tuple[float, float], ...] = ()
    initial_offset: float = 0.0
    initial_offset_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.mode not in STEERING_MODES:
            raise ValueError(f'scenario {self.name!r}: mode {self.mode!r} not in '
                             f'{STEERING_MODES}')
        object.__setattr__(self, 'target_changes',
                           tuple(sorted((float(t), float(v)) for t, v in self.target_changes)))

    def target_at(self, t: float) -> float:
        """The target in force at time t (the last change at or before t wins)."""
        target = self.target
        for when, value in self.target_changes:
            if when <= t:
                target = value
            else:
                break
        return target

    def draw_initial_offset(self, rng: np.random.Generator) -> float:
        """Initial heading offset; seed-dependent when initial_offset_range is set."""
        if self.initial_offset_range is None:
            return self.initial_offset
        lo, hi = self.initial_offset_range
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return sign * float(rng.uniform(lo, hi))


def target_twa(mode: str, target: float, tws: float, speed: float) -> float:
    """The TWA a wind-mode target means now (AWA targets through the wind triangle)."""
    if mode == 'wind_awa':
        return twa_for_awa(target, tws, speed)
    return wrap_pi(target)


def initial_heading(scenario: Scenario, offset: float = 0.0, hull_speed: float = 4.0,
                    wind_from: float | None = None, tws: float | None = None) -> float:
    """Start heading: the target course (heading = wind_from - TWA in wind modes) + offset.

    wind_from/tws: the wind actually blowing at t = 0 (default: the scenario's mean), so a
    wind-mode run starts on its target angle. For an AWA target the boat's speed depends on
    the TWA it implies, so the wind triangle is iterated a few times with the polar speed.
    """
    if scenario.mode == 'compass':
        return wrap_2pi(scenario.target + offset)
    wind_from = scenario.wind_from if wind_from is None else wind_from
    tws = scenario.tws if tws is None else tws
    twa = wrap_pi(scenario.target)
    if scenario.mode == 'wind_awa':
        for _ in range(8):
            twa = twa_for_awa(scenario.target, tws, polar_speed(tws, twa, hull_speed))
    return wrap_2pi(wind_from - twa + offset)


def _deg(d: float) -> float:
    return math.radians(d)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        name='calm_compass',
        description='Light breeze on the beam, flat water; compass course with a 30 deg '
                    'alteration to starboard at 90 s.',
        mode='compass', target=_deg(45.0), duration_s=180.0,
        tws=4.0, wind_from=_deg(150.0), gust=0.08, shift=_deg(3.0), step_shift=_deg(6.0),
        wave_height=0.2, wave_period=3.0, wave_dir_offset=0.0,
        target_changes=((90.0, _deg(75.0)),),
    ),
    Scenario(
        name='upwind_chop',
        description='Close-hauled on starboard tack at 40 deg AWA in a gusty 9 m/s breeze '
                    'and short steep chop on the bow.',
        mode='wind_awa', target=_deg(40.0), duration_s=180.0,
        tws=9.0, wind_from=_deg(20.0), gust=0.15, shift=_deg(4.0), step_shift=_deg(8.0),
        wave_height=0.9, wave_period=3.5, wave_dir_offset=_deg(-10.0),
    ),
    Scenario(
        name='beam_reach',
        description='Port-tack beam reach (TWA -90 deg) in 8 m/s with a beam sea that '
                    'rolls the boat.',
        mode='wind_twa', target=_deg(-90.0), duration_s=180.0,
        tws=8.0, wind_from=_deg(250.0), gust=0.12, shift=_deg(3.0), step_shift=_deg(8.0),
        wave_height=1.4, wave_period=5.0, wave_dir_offset=_deg(10.0),
    ),
    Scenario(
        name='downwind_quartering',
        description='Broad run at TWA 150 deg in 12 m/s with big seas on the starboard '
                    'quarter: long pushes, loss of steerage on crests, broaching.',
        mode='wind_twa', target=_deg(150.0), duration_s=240.0,
        tws=12.0, wind_from=_deg(300.0), gust=0.15, shift=_deg(4.0), step_shift=_deg(8.0),
        wave_height=2.8, wave_period=6.5, wave_dir_offset=_deg(-10.0),
    ),
    Scenario(
        name='heavy_weather',
        description='Gale: 17 m/s gusting, 3.5 m seas on the quarter, compass course on a '
                    'broad reach (TWA ~120 deg).',
        mode='compass', target=_deg(200.0), duration_s=240.0,
        tws=17.0, wind_from=_deg(320.0), gust=0.25, shift=_deg(5.0), step_shift=_deg(10.0),
        wave_height=3.5, wave_period=7.5, wave_dir_offset=_deg(15.0),
    ),
    Scenario(
        name='recovery',
        description='Starts 30-90 deg off a compass course (seed decides how far and to '
                    'which side) in 7 m/s; every start is sailable (TWA 45-225 deg).',
        mode='compass', target=_deg(270.0), duration_s=120.0,
        tws=7.0, wind_from=_deg(45.0), gust=0.1, shift=_deg(3.0), step_shift=_deg(6.0),
        wave_height=0.8, wave_period=4.5, wave_dir_offset=0.0,
        initial_offset_range=(_deg(30.0), _deg(90.0)),
    ),
)}
