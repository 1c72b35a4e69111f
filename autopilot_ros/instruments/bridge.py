"""Readings to the pilot's samples, the bridge's diagnostics, and the source a node runs.

No rclpy here: `Bridge` turns any source's readings into the samples of inputs.INPUTS
(what instruments_node publishes, through samples.fill_*_msg), `diagnostic_values` says
what `/diagnostics` shows, and `make_source` builds the source from the node's parameters.
All three are tested without DDS.

What the bridge decides, once for every source (docs/design.md, "Instrument bridges"):
- Rudder: radians / `rudder_full_scale` (the angle at which the rudder is hard over) to the
  package's normalised [-1, 1]; not clamped: a reading past full scale is the autopilot's
  to judge (its plausible span).
- Heading: one reference only. `auto` takes the first one heard (magnetic or true) and
  keeps it; mixing them would jump the heading by the variation. The other is counted.
- IMU: a turn rate or an attitude is one sensor_msgs/Imu, with the latest of the other
  folded in when it is at most `imu_combine_s` old. angular_velocity.z = -rate (REP-103: z
  up, so a turn to starboard is negative z); x and y NaN (a rate-of-turn sensor measures
  none); orientation from roll and pitch, or absent; accelerations always absent. Absent
  blocks carry covariance[0] = -1 (REP-145; samples.fill_imu_msg).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
import math

from autopilot_ros.instruments.checks import KIND
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
from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SensorSample,
    SpeedSample,
    WindSample,
)

SOURCES = ('nmea0183', 'nmea2000', 'signalk')
HEADING_REFERENCES = ('auto', 'magnetic', 'true')
STAMPED_WITH = 'receive time (this computer, when the data arrived)'
NAN = math.nan
RATE_WINDOW_S = 5.0  # readings per second are counted over this many seconds
STALE_S = 3.0  # a kind of reading heard before but not for this long is a warning


@dataclass(frozen=True)
class BridgeConfig:
    rudder_full_scale: float = math.radians(35.0)  # rad: the measured angle that is 1.0
    heading_reference: str = 'auto'
    imu_combine_s: float = 0.25  # s: how old a turn rate or attitude may be to fold in

    def validate(self) -> None:
        if not (math.isfinite(self.rudder_full_scale)
                and math.radians(5.0) <= self.rudder_full_scale <= math.radians(90.0)):
            raise ValueError(f'rudder_full_scale_deg {math.degrees(self.rudder_full_scale):g}'
                             ' must be within [5, 90] deg')
        if self.heading_reference not in HEADING_REFERENCES:
            raise ValueError(f'heading_reference {self.heading_reference!r}: one of '
                             f'{", ".join(HEADING_REFERENCES)}')
        if not 0.0 <= self.imu_combine_s <= 1.0:
            raise ValueError(f'imu_combine_s {self.imu_combine_s:g} must be within [0, 1] s')


class Bridge:
    """Readings in, samples out (in the order they should be published)."""

    def __init__(self, config: BridgeConfig | None = None) -> None:
        self.config = config or BridgeConfig()
        self.config.validate()
        self.reference: str = '' if self.config.heading_reference == 'auto' \
            else self.config.heading_reference
        self._rate: TurnRateReading | None = None
        self._attitude: AttitudeReading | None = None
        self.dropped: Counter[str] = Counter()  # readings not published, by reason
        self.published: Counter[str] = Counter()  # samples published, by input name
        self.on_reference: Callable[[str], None] | None = None  # told once, when auto locks

    def take(self, reading: Reading) -> list[SensorSample]:
        if isinstance(reading, HeadingReading):
            return self._heading(reading)
        if isinstance(reading, TurnRateReading):
            self._rate = reading
            return self._out('imu', self._imu(reading.stamp))
        if isinstance(reading, AttitudeReading):
            self._attitude = reading
            return self._out('imu', self._imu(reading.stamp))
        if isinstance(reading, WindReading):
            return self._out('wind', WindSample(reading.stamp, reading.awa, reading.aws))
        if isinstance(reading, SpeedReading):
            return self._out('speed', SpeedSample(reading.stamp, reading.stw))
        if isinstance(reading, RudderReading):
            return self._out('rudder_angle', RudderSample(
                reading.stamp, reading.angle / self.config.rudder_full_scale))
        self.dropped['not a reading'] += 1
        return []

    def _out(self, name: str, sample: SensorSample) -> list[SensorSample]:
        self.published[name] += 1
        return [sample]

    def _heading(self, reading: HeadingReading) -> list[SensorSample]:
        ref = 'true' if reading.true_north else 'magnetic'
        if not self.reference:
            self.reference = ref
            if self.on_reference is not None:
                self.on_reference(ref)
        if ref != self.reference:
            self.dropped[f'{ref} heading (publishing {self.reference})'] += 1
            return []
        return self._out('heading', HeadingSample(reading.stamp, reading.heading))

    def _imu(self, stamp: float) -> ImuSample:
        window = self.config.imu_combine_s
        rate = self._rate if self._rate and stamp - self._rate.stamp <= window else None
        att = self._attitude if self._attitude and stamp - self._attitude.stamp <= window \
            else None
        return ImuSample(
            stamp,
            att.roll if att else NAN, att.pitch if att else NAN,
            NAN, NAN, -rate.rate if rate else NAN,  # REP-103: z up, starboard turn < 0
            NAN, NAN, NAN, 1.0,
            orientation_known=att is not None, rates_known=False, accel_known=False)


class RateMeter:
    """Readings per second of each kind over the last RATE_WINDOW_S seconds."""

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = {k: deque() for k in KIND.values()}

    def add(self, kind: str, stamp: float) -> None:
        self._times[kind].append(stamp)

    def rates(self, now: float) -> dict[str, float]:
        out = {}
        for kind, times in self._times.items():
            while times and times[0] < now - RATE_WINDOW_S:
                times.popleft()
            out[kind] = len(times) / RATE_WINDOW_S
        return out


def diagnostic_values(source_name: str, where: str, stats: SourceStats,
                      rates: Mapping[str, float], bridge: Bridge, now: float
                      ) -> tuple[int, str, list[tuple[str, str]]]:
    """(level 0 OK / 1 WARN / 2 ERROR, one-line message, key-value pairs) for /diagnostics."""
    with stats.lock:
        snap = {k: getattr(stats, k) for k in ('received', 'readings', 'parse_errors',
                                               'checksum_errors', 'ignored', 'reconnects',
                                               'connected', 'last_error')}
        last_seen = dict(stats.last_seen)
    values = [('source', source_name), ('connection', where),
              ('connected', str(snap['connected']).lower()), ('stamped with', STAMPED_WITH)]
    values += [(k.replace('_', ' '), str(snap[k])) for k in
               ('received', 'readings', 'parse_errors', 'checksum_errors', 'ignored',
                'reconnects')]
    stale = []
    for kind in KIND.values():
        seen = last_seen.get(kind)
        age = now - seen if seen is not None else math.inf
        values.append((f'{kind} rate', f'{rates.get(kind, 0.0):.1f} Hz'))
        values.append((f'{kind} last seen', 'never' if seen is None else f'{age:.1f} s ago'))
        if seen is not None and age > STALE_S:
            stale.append(kind)
    values.append(('heading reference', bridge.reference or 'none yet'))
    values += [(f'not published: {why}', str(n)) for why, n in sorted(bridge.dropped.items())]
    values.append(('last error', snap['last_error'] or 'none'))
    if not snap['connected']:
        why = snap['last_error'] or 'connecting'
        return 2, f'not connected to {where}: {why}', values
    if not last_seen:
        return 1, f'connected to {where}, no usable data yet', values
    if stale:
        return 1, f'no {", ".join(stale)} for over {STALE_S:g} s', values
    return 0, f'{snap["readings"]} readings from {where}', values


# What each source imports that a ROS install does not bring (pip names).
SOURCE_PACKAGES = {
    'nmea0183': 'pynmea2 pyserial',
    'nmea2000': 'python-can nmea2000',
    'signalk': "'websockets>=15'",
}


def _source_class(source: str, module: str, name: str) -> type:
    """The source's class, imported only when chosen: a Python package it needs that is not
    installed is one line saying what to install (the node prints it and exits 2)."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.startswith('autopilot_ros'):
            raise  # a broken install of this package: a traceback is the useful answer
        raise ValueError(f'source:={source} needs the Python package {exc.name!r}: pip install '
                         f'{SOURCE_PACKAGES[source]}') from None


def make_source(source: str, params: Mapping[str, object],
                log: Callable[[str], None] | None = None):
    """Build the chosen source from the node's parameters (instruments_node's only job here).

    `params` holds the node's parameters by name ('nmea0183.port', 'signalk.url', ...).
    """
    from autopilot_ros.instruments.transport import Backoff

    def p(name: str):
        return params[name]

    backoff = Backoff(float(p('backoff_initial')), float(p('backoff_max')))
    silence = float(p('silence_timeout'))
    if source == 'nmea0183':
        source_class = _source_class(source, 'autopilot_ros.instruments.nmea0183',
                                     'Nmea0183Source')
        transport = str(p('nmea0183.transport'))
        if transport == 'serial':  # the one transport that needs pyserial
            _source_class(source, 'serial', 'Serial')
        return source_class(
            transport, host=str(p('nmea0183.host')),
            port=int(p('nmea0183.port')), device=str(p('nmea0183.device')),
            baudrate=int(p('nmea0183.baudrate')),
            require_checksum=bool(p('nmea0183.require_checksum')),
            silence_timeout=silence, backoff=backoff, log=log)
    if source == 'nmea2000':
        source_class = _source_class(source, 'autopilot_ros.instruments.nmea2000',
                                     'Nmea2000Source')
        return source_class(
            str(p('nmea2000.interface')), str(p('nmea2000.channel')),
            rudder_instance=int(p('nmea2000.rudder_instance')), silence_timeout=silence,
            backoff=backoff, log=log)
    if source == 'signalk':
        source_class = _source_class(source, 'autopilot_ros.instruments.signalk',
                                     'SignalKSource')
        try:  # a bad URL or setting is ValueError; a websockets too old, RuntimeError
            return source_class(
                str(p('signalk.url')), str(p('signalk.token')), silence_timeout=silence,
                backoff_initial=backoff.initial, backoff_cap=backoff.cap,
                heading=str(params.get('heading_reference', 'auto')),
                ca_file=str(params.get('signalk.ca_file', '')))
        except RuntimeError as exc:
            raise ValueError(f'source:=signalk: {exc}') from None
    raise ValueError(f'source {source!r}: one of {", ".join(SOURCES)}')
