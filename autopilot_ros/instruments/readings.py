"""What every bridge source hands the instruments node: readings in this package's conventions.

A source (NMEA 0183, NMEA 2000, Signal K) converts its protocol's units and signs into these
once, at the edge (docs/design.md, Conventions); the node never sees a sentence, a PGN or a
Signal K path, and one mapping from readings to messages serves all three. A reading carries
only what the source measured: nothing is filled in, so a missing quantity stays missing.

Stamps are the receive time on this machine's clock (`time.time()`): none of the three
protocols carries a timestamp every instrument fills in and can be trusted to agree with the
Pi's clock, so the bridge says when it heard the value, and says so in its diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import threading
from typing import Protocol


@dataclass(frozen=True, slots=True)
class HeadingReading:
    stamp: float
    heading: float  # rad, clockwise from north, [0, 2*pi)
    true_north: bool  # False: magnetic


@dataclass(frozen=True, slots=True)
class TurnRateReading:
    stamp: float
    rate: float  # rad/s, > 0 = turning to STARBOARD (heading increasing); Imu z is -rate


@dataclass(frozen=True, slots=True)
class AttitudeReading:
    stamp: float
    roll: float  # rad, > 0 = starboard side down
    pitch: float  # rad, > 0 = bow down


@dataclass(frozen=True, slots=True)
class WindReading:
    stamp: float
    awa: float  # apparent wind angle, rad, (-pi, pi], > 0 = wind from starboard
    aws: float  # apparent wind speed, m/s


@dataclass(frozen=True, slots=True)
class SpeedReading:
    stamp: float
    stw: float  # speed through water, m/s


@dataclass(frozen=True, slots=True)
class RudderReading:
    stamp: float
    angle: float  # rad, > 0 = rudder set to turn the boat to starboard (the node normalises)


Reading = (HeadingReading | TurnRateReading | AttitudeReading | WindReading | SpeedReading
           | RudderReading)


@dataclass
class SourceStats:
    """Counters a source keeps for `/diagnostics`; the node reads them under `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    received: int = 0  # sentences / frames / deltas read off the transport
    readings: int = 0  # readings emitted
    parse_errors: int = 0
    checksum_errors: int = 0
    ignored: int = 0  # well-formed but of no use to the pilot (other sentences, PGNs, paths)
    reconnects: int = 0
    connected: bool = False
    last_error: str = ''
    last_seen: dict[str, float] = field(default_factory=dict)  # reading kind -> receive time

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


class Source(Protocol):
    """One connection to the boat's instruments, run in a thread of its own by the node.

    `run` reads until `stop` is set: it connects, parses, calls `emit` with each batch of
    readings, and on any failure (refused, closed, vanished port, garbage) counts it in
    `stats`, waits with a capped exponential backoff and reconnects. It never raises for
    bad input, and returns only when `stop` is set.
    """

    name: str  # 'nmea0183', 'nmea2000', 'signalk'
    stats: SourceStats

    def run(self, emit: Callable[[list[Reading]], None], stop: threading.Event) -> None: ...
