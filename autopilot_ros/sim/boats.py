"""A family of boats: every user's boat is a different boat, and a pilot must be judged so.

`draw_boat(seed)` draws a yacht and its instruments from FAMILY, ranges that cover real
sailing yachts; everything that follows from size follows from the waterline length (hull
speed, inertia, yaw damping, wave response, pitch period), so a drawn boat is physically
consistent, not a bag of independent numbers. The reference yacht (`BoatParams()`, the
one the simulator always had) sits inside the family.

HELD_OUT is a fixed, named set of boats for judging pilots only: no training data, DAgger
round or model selection may use them (training draws from FAMILY with seeds of its own;
a drawn boat is never one of these). Two are outside FAMILY on purpose: a pilot must
also stay safe on a boat nobody imagined.
"""

from dataclasses import dataclass, field, replace
import math

import numpy as np

from autopilot_ros.sim.boat import BoatParams, sail_force
from autopilot_ros.sim.sensors import SensorConfig

REFERENCE_LENGTH = 10.0  # m: BoatParams() is a 10 m cruising yacht
# Hull speed of a displacement hull, 1.34 kn per sqrt(ft) of waterline: 1.26 sqrt(m) m/s
# (4.0 m/s for the reference yacht).
HULL_SPEED_PER_SQRT_M = 4.0 / math.sqrt(REFERENCE_LENGTH)


@dataclass(frozen=True)
class Span:
    low: float
    high: float
    meaning: str

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


# What varies between yachts, and how much. Multipliers are relative to what a boat of that
# waterline length would have in the size scaling of `boat_params`.
FAMILY: dict[str, Span] = {
    'length': Span(6.0, 18.0, 'waterline length, m (a 20 ft weekender to a 60 ft cruiser)'),
    'rudder_authority': Span(0.6, 1.6, 'rudder yaw moment, x the size-scaled reference'),
    'rudder_slew': Span(0.1, 0.5, 'rudder actuator slew, normalised per second'),
    'weather_helm': Span(0.0, 1.2, 'rudder-equivalent per rad of heel, towards the wind'),
    'roll_period_s': Span(2.0, 6.0, 'natural roll period, s (stiff to tender)'),
    'roll_damping_ratio': Span(0.2, 0.5, 'roll damping ratio'),
    'design_heel_deg': Span(12.0, 30.0, 'steady heel on a beam reach in the wind the crew '
                                        'reefs at, deg: stiff to tender'),
    'yaw_damping': Span(0.7, 1.4, 'yaw damping, x the size-scaled reference'),
    'downwind_helm': Span(0.1, 0.35, 'rudder-equivalent from eased sails downwind'),
}
# The instruments, drawn independently of the boat.
INSTRUMENTS: dict[str, Span] = {
    'noise_scale': Span(0.5, 2.0, 'every noise level, x the default'),
    'gyro_bias_std': Span(0.0, 0.005, 'gyro bias per axis, rad/s (std of the constant)'),
    'imu_misalignment_deg': Span(0.0, 3.0, 'IMU mounting error in roll and pitch, deg'),
    'compass_lag_s': Span(0.0, 0.8, 'compass damping time constant, s'),
    'wind_damping_s': Span(0.0, 2.0, 'wind instrument damping time constant, s'),
    'latency_s': Span(0.0, 0.15, 'delay of every reading, s'),
    'imu_hz': Span(5.0, 25.0, 'IMU rate, Hz'),
    'heading_hz': Span(5.0, 25.0, 'compass rate, Hz'),
    'wind_hz': Span(5.0, 25.0, 'wind instrument rate, Hz'),
}


@dataclass(frozen=True)
class BoatSpec:
    """One boat with its instruments, by name: what a simulator or an evaluation needs."""

    name: str
    params: BoatParams = field(default_factory=BoatParams)
    sensors: SensorConfig = field(default_factory=SensorConfig)
    traits: dict[str, float] = field(default_factory=dict)  # the drawn values, for tables


def heel_gain_for(design_heel_deg: float, roll_period_s: float, reef_wind: float) -> float:
    """The heel gain that gives this steady heel at full (reefed) sail force, beam on.

    Steady heel balances righting, w^2 sin(heel), against the heeling moment, gain * force
    * cos^2(heel) (boat.py). Crews reef to keep a boat sailable: however tender, a family
    boat heels no further than the range says, so its weather helm stays within reach of
    its rudder (without this, a long roll period and a low stiffness knocked boats flat).
    """
    heel = math.radians(design_heel_deg)
    w2 = (2.0 * math.pi / roll_period_s) ** 2
    return w2 * math.sin(heel) / (sail_force(reef_wind, reef_wind) * math.cos(heel) ** 2)


def design_heel_of(params: BoatParams) -> float:
    """The inverse of heel_gain_for: a boat's steady reefed heel, deg (bisection)."""
    lo, hi = 0.0, 89.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if heel_gain_for(mid, params.roll_period_s, params.reef_wind) < params.heel_gain:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


REFERENCE_HEEL_DEG = design_heel_of(BoatParams())  # 23.2 deg


def boat_params(length: float = REFERENCE_LENGTH, rudder_authority: float = 1.0,
                rudder_slew: float = 0.25, weather_helm: float = 0.5,
                roll_period_s: float = 3.5, roll_damping_ratio: float = 0.35,
                design_heel_deg: float = REFERENCE_HEEL_DEG, yaw_damping: float = 1.0,
                downwind_helm: float = 0.2) -> BoatParams:
    """A physically consistent yacht of this waterline length (defaults: the reference).

    Size scaling from the 10 m reference, k = 10 / length: yaw inertia grows faster than
    the rudder's moment (rudder gain ~ k^2) and than the hull's damping (~ k); heavier boats
    take longer to speed up (~ 1/k) and are yawed less by the same waves (~ k); the pitch
    period grows with sqrt(length). Heel follows from the design heel and roll period.
    """
    ref = BoatParams()
    k = REFERENCE_LENGTH / length
    heel_gain = heel_gain_for(design_heel_deg, roll_period_s, ref.reef_wind)
    return replace(
        ref, length=length, beam=ref.beam / k,
        hull_speed=HULL_SPEED_PER_SQRT_M * math.sqrt(length),
        speed_lag_s=ref.speed_lag_s / k,
        rudder_gain=ref.rudder_gain * k * k * rudder_authority,
        min_flow_speed=ref.min_flow_speed / math.sqrt(k),
        yaw_damping_base=ref.yaw_damping_base * k * yaw_damping,
        yaw_damping_per_speed=ref.yaw_damping_per_speed * k * yaw_damping,
        weather_helm=weather_helm, downwind_helm=downwind_helm, rudder_slew=rudder_slew,
        roll_period_s=roll_period_s, roll_damping_ratio=roll_damping_ratio,
        heel_gain=heel_gain,
        pitch_period_s=ref.pitch_period_s / math.sqrt(k),
        wave_yaw_gain=ref.wave_yaw_gain * k, broach_gain=ref.broach_gain * k)


def sensor_config(noise_scale: float = 1.0, gyro_bias_std: float = 0.002,
                  imu_misalignment_deg: float = 0.0, misalignment_sign: tuple = (1, 1),
                  compass_lag_s: float = 0.0, wind_damping_s: float = 0.0,
                  latency_s: float = 0.0, imu_hz: float = 50.0, heading_hz: float = 10.0,
                  wind_hz: float = 5.0) -> SensorConfig:
    """Instruments with these traits (defaults: the simulator's usual ones)."""
    ref = SensorConfig()
    n = noise_scale
    off = math.radians(imu_misalignment_deg)
    return replace(
        ref, imu_hz=imu_hz, heading_hz=heading_hz, wind_hz=wind_hz,
        imu_angle_noise=ref.imu_angle_noise * n, gyro_noise=ref.gyro_noise * n,
        gyro_bias_std=gyro_bias_std, accel_noise=ref.accel_noise * n,
        heading_noise=ref.heading_noise * n, awa_noise=ref.awa_noise * n,
        aws_noise=ref.aws_noise * n, speed_noise=ref.speed_noise * n,
        imu_roll_offset=misalignment_sign[0] * off, imu_pitch_offset=misalignment_sign[1] * off,
        compass_lag_s=compass_lag_s, wind_damping_s=wind_damping_s, latency_s=latency_s)


# Family boats are kept apart by use, as scenario seeds are: training demonstrations draw
# their boats from DEMO_BOAT_SEEDS on, DAgger rollouts from DAGGER_BOAT_SEEDS on, and model
# selection judges on SELECTION_BOATS, so no model is selected on a boat it learned from;
# the held-out boats below are used by none of them.
DEMO_BOAT_SEEDS = 1_000_000
SELECTION_BOAT_SEEDS = 2_000_000
DAGGER_BOAT_SEEDS = 3_000_000
# What demonstrations, DAgger and selection sail on: the reference yacht alone, or the family.
BOAT_SETS = ('reference', 'family')


def draw_boat(seed: int) -> BoatSpec:
    """A yacht and its instruments drawn from FAMILY and INSTRUMENTS; the same for a seed."""
    rng = np.random.default_rng(np.random.SeedSequence([0xB0A7, seed]))
    boat = {name: span.draw(rng) for name, span in FAMILY.items()}
    instruments = {name: span.draw(rng) for name, span in INSTRUMENTS.items()}
    signs = tuple(int(s) for s in rng.choice((-1, 1), size=2))
    return BoatSpec(name=f'family_{seed}', params=boat_params(**boat),
                    sensors=sensor_config(**instruments, misalignment_sign=signs),
                    traits={**boat, **instruments})


def selection_boats(count: int = 4) -> list[BoatSpec]:
    """The family boats models are selected on: neither trained on nor held out."""
    return [draw_boat(SELECTION_BOAT_SEEDS + i) for i in range(count)]


def _held_out(name: str, boat: dict, instruments: dict | None = None) -> BoatSpec:
    instruments = instruments or {}
    return BoatSpec(name=name, params=boat_params(**boat),
                    sensors=sensor_config(**instruments), traits={**boat, **instruments})


REFERENCE = BoatSpec(name='reference', traits={'length': REFERENCE_LENGTH,
                                               'design_heel_deg': REFERENCE_HEEL_DEG})

# Fixed boats for judging only. The first six are inside FAMILY, the last two outside it.
HELD_OUT: dict[str, BoatSpec] = {b.name: b for b in (
    _held_out('small_lively', {'length': 6.5, 'rudder_authority': 1.3, 'rudder_slew': 0.4,
                               'roll_period_s': 2.2, 'design_heel_deg': 26.0},
              {'imu_hz': 25.0, 'heading_hz': 20.0, 'wind_hz': 10.0}),
    _held_out('heavy_long_keel', {'length': 12.0, 'rudder_authority': 0.65,
                                  'rudder_slew': 0.12, 'yaw_damping': 1.35,
                                  'roll_period_s': 5.0, 'design_heel_deg': 14.0},
              {'noise_scale': 1.5, 'compass_lag_s': 0.5, 'wind_damping_s': 1.5}),
    _held_out('tender_weather_helm', {'length': 9.0, 'weather_helm': 1.15,
                                      'design_heel_deg': 29.0, 'roll_period_s': 4.5,
                                      'roll_damping_ratio': 0.25}),
    _held_out('big_cruiser', {'length': 16.5, 'rudder_slew': 0.15, 'rudder_authority': 0.9,
                              'roll_period_s': 5.5, 'downwind_helm': 0.3},
              {'imu_hz': 10.0, 'heading_hz': 10.0, 'wind_hz': 5.0, 'latency_s': 0.1}),
    _held_out('light_racer', {'length': 11.0, 'rudder_authority': 1.5, 'rudder_slew': 0.5,
                              'yaw_damping': 0.75, 'roll_damping_ratio': 0.2,
                              'weather_helm': 0.3},
              {'imu_hz': 25.0, 'heading_hz': 25.0, 'wind_hz': 25.0}),
    _held_out('laggy_instruments', {'length': 10.0},
              {'noise_scale': 2.0, 'gyro_bias_std': 0.005, 'imu_misalignment_deg': 3.0,
               'compass_lag_s': 0.8, 'wind_damping_s': 2.0, 'latency_s': 0.15,
               'imu_hz': 5.0, 'heading_hz': 5.0, 'wind_hz': 5.0}),
    # Outside FAMILY:
    _held_out('micro_cruiser', {'length': 5.0, 'rudder_authority': 1.8, 'roll_period_s': 1.8,
                                'design_heel_deg': 33.0}),
    _held_out('extreme_helm', {'length': 13.0, 'weather_helm': 1.4, 'rudder_slew': 0.08,
                               'roll_period_s': 6.5, 'design_heel_deg': 18.0}),
)}


def outside_family(spec: BoatSpec) -> list[str]:
    """The traits of a boat outside the family's ranges (empty: a family boat)."""
    spans = {**FAMILY, **INSTRUMENTS}
    return [name for name, value in spec.traits.items()
            if name in spans and value not in spans[name]]


def boat_by_name(name: str) -> BoatSpec:
    """'reference', a HELD_OUT name, 'family_<seed>' or a boat file (.yaml, as identification
    writes: sim/boat_file.py); ValueError naming the choices or what is wrong with the file."""
    from autopilot_ros.sim.boat_file import is_boat_file, load_boat_file
    if is_boat_file(name):
        return load_boat_file(name)
    if name == REFERENCE.name:
        return REFERENCE
    if name in HELD_OUT:
        return HELD_OUT[name]
    prefix = 'family_'
    if name.startswith(prefix) and name[len(prefix):].isdigit():
        return draw_boat(int(name[len(prefix):]))
    raise ValueError(f"unknown boat '{name}': reference, family_<seed>, "
                     f"held_out (all of them), a boat file (.yaml) or one of "
                     f"{', '.join(HELD_OUT)}")


def boats_by_names(names: list[str]) -> list[BoatSpec]:
    """Expand 'held_out' into every held-out boat; the rest by `boat_by_name`."""
    out = []
    for name in names:
        out.extend(HELD_OUT.values() if name == 'held_out' else [boat_by_name(name)])
    return out
