"""A boat as a YAML file: what `autopilot-train identify` writes and every tool sails.

The simulator, `sim_node` (parameter `boat_file`), `autopilot-eval --boat` and
`autopilot-train --boat` / `tune-pid --boat` all read the same file, so a sailor's identified
twin is one path passed around. The file holds every `BoatParams` field (SI units, as in
sim/boat.py) and every `SensorConfig` field (sim/sensors.py); a field left out keeps its
default, which is what a hand-written file wants. An `identified:` block, written by
identification, says where the numbers came from and how far to trust them: it is for people
and is not read back beyond checking it is a mapping.

Values are checked against ranges wide enough for any yacht (a dinghy to a maxi) but narrow
enough to catch a unit mistake (degrees for radians, knots for m/s) or a typo: a boat file
that would make the simulator blow up is refused with one message naming the field.
"""

from __future__ import annotations

from dataclasses import fields, replace
import math
from pathlib import Path

from autopilot_ros.sim.boat import BoatParams
from autopilot_ros.sim.boats import BoatSpec
from autopilot_ros.sim.sensors import SensorConfig

FORMAT = 'autopilot_ros/boat 1'
SUFFIXES = ('.yaml', '.yml')

# field: (low, high) inclusive; physically sensible for sailing yachts, in the units of
# BoatParams (sim/boat.py) and SensorConfig (sim/sensors.py).
PARAM_RANGES: dict[str, tuple[float, float]] = {
    'length': (1.0, 60.0),
    'beam': (0.3, 20.0),
    'hull_speed': (0.5, 20.0),
    'speed_lag_s': (0.5, 300.0),
    'rudder_gain': (1e-5, 1.0),
    'min_flow_speed': (0.05, 5.0),
    'rudder_stall': (0.0, 0.5),
    'rudder_drag': (0.0, 0.9),
    'yaw_damping_base': (0.0, 5.0),
    'yaw_damping_per_speed': (0.0, 5.0),
    'weather_helm': (0.0, 5.0),
    'downwind_helm': (0.0, 2.0),
    'rudder_slew': (0.01, 5.0),
    'roll_period_s': (0.5, 30.0),
    'roll_damping_ratio': (0.01, 2.0),
    'heel_gain': (0.0, 1.0),
    'reef_wind': (1.0, 60.0),
    'pitch_period_s': (0.5, 30.0),
    'pitch_damping_ratio': (0.01, 2.0),
    'wave_yaw_gain': (0.0, 20.0),
    'broach_gain': (0.0, 20.0),
    'surf_gain': (0.0, 1.0),
    'orbital_flow': (0.0, 1.0),
}
_RATE = (0.0, 400.0)  # Hz; 0 switches a sensor off
SENSOR_RANGES: dict[str, tuple[float, float]] = {
    'imu_hz': _RATE, 'heading_hz': _RATE, 'wind_hz': _RATE, 'speed_hz': _RATE,
    'rudder_hz': _RATE,
    'imu_angle_noise': (0.0, 0.2),
    'gyro_noise': (0.0, 0.5),
    'gyro_bias_std': (0.0, 0.1),
    'accel_noise': (0.0, 5.0),
    'heading_noise': (0.0, 0.5),
    'awa_noise': (0.0, 0.5),
    'aws_noise': (0.0, 5.0),
    'speed_noise': (0.0, 2.0),
    'rudder_noise': (0.0, 0.2),
    'mast_height': (0.0, 80.0),
    'imu_roll_offset': (-0.3, 0.3),
    'imu_pitch_offset': (-0.3, 0.3),
    'compass_lag_s': (0.0, 10.0),
    'wind_damping_s': (0.0, 30.0),
    'latency_s': (0.0, 2.0),
}


class BoatFileError(ValueError):
    """A boat file that cannot be sailed; the message names the file and the field."""


def is_boat_file(name: str) -> bool:
    """Whether a --boat/--boats argument names a file rather than a built-in boat."""
    return str(name).lower().endswith(SUFFIXES)


def _section(path: Path, doc: dict, key: str, cls: type, ranges: dict) -> object:
    raw = doc.get(key) or {}
    if not isinstance(raw, dict):
        raise BoatFileError(f'{path}: {key!r} must be a mapping of field: value')
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise BoatFileError(f'{path}: unknown {key} field(s) {", ".join(map(str, unknown))}; '
                            f'known: {", ".join(sorted(known))}')
    values = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BoatFileError(f'{path}: {key}.{name} must be a number, not {value!r}')
        value = float(value)
        low, high = ranges[name]
        if not (math.isfinite(value) and low <= value <= high):
            raise BoatFileError(f'{path}: {key}.{name} = {value:g} is outside [{low:g}, '
                                f'{high:g}] (units as in docs/design.md, Boat files)')
        values[name] = value
    return replace(cls(), **values)


def load_boat_file(path: str | Path) -> BoatSpec:
    """The boat a file describes; BoatFileError with one clear message otherwise."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise BoatFileError(f'cannot read boat file {path}: '
                            f'{getattr(exc, "strerror", None) or exc}') from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f' (line {mark.line + 1})' if mark is not None else ''
        raise BoatFileError(f'{path} is not valid YAML{where}') from None
    if not isinstance(doc, dict):
        raise BoatFileError(f'{path}: a boat file is a mapping with params: and sensors:')
    fmt = doc.get('format', FORMAT)
    if fmt != FORMAT:
        raise BoatFileError(f'{path}: format {fmt!r} is not {FORMAT!r}')
    unknown = sorted(set(doc) - {'format', 'name', 'params', 'sensors', 'identified'})
    if unknown:
        raise BoatFileError(f'{path}: unknown key(s) {", ".join(map(str, unknown))}; a boat '
                            'file has format, name, params, sensors and identified')
    if not isinstance(doc.get('identified', {}), dict):
        raise BoatFileError(f'{path}: identified must be a mapping')
    params = _section(path, doc, 'params', BoatParams, PARAM_RANGES)
    sensors = _section(path, doc, 'sensors', SensorConfig, SENSOR_RANGES)
    name = str(doc.get('name') or path.stem)
    return BoatSpec(name=name, params=params, sensors=sensors,
                    traits={'length': params.length})


def boat_file_text(spec: BoatSpec, identified: dict | None = None, comment: str = '') -> str:
    """The YAML of a boat file (every field written, so the file says what it sails)."""
    import yaml

    doc = {'format': FORMAT, 'name': spec.name,
           'params': {f.name: float(getattr(spec.params, f.name))
                      for f in fields(BoatParams)},
           'sensors': {f.name: float(getattr(spec.sensors, f.name))
                       for f in fields(SensorConfig)}}
    if identified:
        doc['identified'] = identified
    head = ''.join(f'# {line}\n' for line in comment.splitlines()) if comment else ''
    head += ('# autopilot_ros boat file: params in SI units as in sim/boat.py, sensors as in '
             'sim/sensors.py.\n')
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def save_boat_file(spec: BoatSpec, path: str | Path, identified: dict | None = None,
                   comment: str = '') -> Path:
    """Write a boat file; it loads back to the same boat (checked before writing)."""
    path = Path(path)
    text = boat_file_text(spec, identified, comment)
    for section, ranges in (('params', PARAM_RANGES), ('sensors', SENSOR_RANGES)):
        values = spec.params if section == 'params' else spec.sensors
        for name, (low, high) in ranges.items():
            value = float(getattr(values, name))
            if not (math.isfinite(value) and low <= value <= high):
                raise BoatFileError(f'{spec.name}: {section}.{name} = {value:g} is outside '
                                    f'[{low:g}, {high:g}]: not written')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding='utf-8')
    return path
