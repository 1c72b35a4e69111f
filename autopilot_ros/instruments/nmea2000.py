"""NMEA 2000 in: CAN frames from a socketcan interface (a CAN hat on the Pi), as readings.

The decoder (`Nmea2000Decoder`) is pure: python-can frames in, readings out, every problem
counted. PGN payloads are decoded by the `nmea2000` package, whose field tables are the
CANboat PGN database (the reference the open marine stack shares: Signal K, OpenCPN,
canboatjs), compiled; it also reassembles fast packets and reports every "data not
available" and "out of range" code (0x7FFF, 0x7FFE, 0xFFFF, ...) as None, which this module
treats as absent, never as a value. Frames shorter than the fields read are dropped (the
decoder would read missing bytes as zeros).

PGNs read, and how each becomes this package's conventions (N = the PGN field, SI units):

- 127250 Vessel Heading: reference Magnetic: heading = N heading + N deviation (when
  given); reference True: N heading. Variation is not applied (as for NMEA 0183 HDG).
  A heading with no reference is ignored: it cannot be mixed with either.
- 127251 Rate of Turn: rad/s, > 0 = turning to starboard (clockwise), sign kept.
- 127257 Attitude: roll, > 0 = starboard side down, sign kept; pitch, > 0 = BOW UP, SIGN
  FLIPPED (the package's pitch > 0 is bow down). Yaw is not read (heading has its PGN).
  Both roll and pitch must be available.
- 130306 Wind Data: reference Apparent only; angle 0..2*pi clockwise from the bow ->
  (-pi, pi], > 0 = wind from starboard; speed m/s.
- 128259 Speed: water referenced, m/s.
- 130577 Direction Data (fast packet, 14 bytes): its speed through water, m/s.
- 127245 Rudder: position of rudder `rudder_instance` (0 by default), rad, > 0 = rudder to
  starboard (turns the boat to starboard), sign kept.
"""

from __future__ import annotations

from collections.abc import Callable
import logging
import math
import threading
import time

import can
from nmea2000 import NMEA2000Decoder
from nmea2000.input_formats import N2KFormat

from autopilot_ros.instruments.checks import TWO_PI, keep_plausible
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
from autopilot_ros.instruments.transport import Backoff, run_connected

# PGN -> (bytes a payload needs for the fields read, fast packet?). From the PGN
# definitions (CANboat): e.g. 127250 is SID 1 + heading 2 + deviation 2 + variation 2 +
# reference (2 bits) = 8 bytes.
PGNS = {
    127250: (8, False),   # vesselHeading
    127251: (5, False),   # rateOfTurn: SID + int32 rate
    127257: (7, False),   # attitude: SID + yaw, pitch, roll int16
    130306: (6, False),   # windData: SID + speed u16 + angle u16 + reference (3 bits)
    128259: (3, False),   # speed: SID + water referenced u16
    130577: (10, True),   # directionData: ... speedThroughWater ends at byte 10
    127245: (8, False),   # rudder: instance, direction, angle order, position
}
APPARENT = 2  # 130306 reference lookup: 0 true (north), 1 magnetic, 2 apparent, 3-4 true
HEADING_SLACK = 2e-4  # rad: 2*pi rounded up to the 1e-4 resolution is still north


def pgn_of(arbitration_id: int) -> tuple[int, int]:
    """(PGN, source address) of a 29-bit NMEA 2000 CAN identifier (ISO 11783 PDU1/PDU2)."""
    can_id = arbitration_id & 0x1FFFFFFF
    source = can_id & 0xFF
    pf = (can_id >> 16) & 0xFF
    dp = (can_id >> 24) & 0x03
    pgn = (dp << 16) | (pf << 8)
    if pf >= 240:  # PDU2: the PS byte is part of the PGN (broadcast)
        pgn |= (can_id >> 8) & 0xFF
    return pgn, source


def can_id(pgn: int, source: int, priority: int = 2, destination: int = 255) -> int:
    """The 29-bit CAN identifier of a PGN sent by `source` (the inverse of pgn_of)."""
    pf = (pgn >> 8) & 0xFF
    ps = pgn & 0xFF if pf >= 240 else destination & 0xFF
    return ((priority & 7) << 26) | ((pgn >> 16 & 0x03) << 24) | (pf << 16) | (ps << 8) \
        | (source & 0xFF)


def fast_packet_frames(payload: bytes, sequence: int = 0) -> list[bytes]:
    """A fast-packet PGN's payload as CAN frames (ISO 11783-3 style, NMEA 2000 fast packet).

    Frame 0: [seq<<5 | 0, total length, 6 bytes]; frame i: [seq<<5 | i, 7 bytes]; the last
    frame padded with 0xFF. Up to 223 bytes (32 frames).
    """
    if len(payload) > 223:
        raise ValueError('a fast packet carries at most 223 bytes')
    head = (sequence & 0x07) << 5
    frames = [bytes([head, len(payload)]) + payload[:6]]
    rest = payload[6:]
    index = 1
    while rest:
        frames.append(bytes([head | index]) + rest[:7])
        rest = rest[7:]
        index += 1
    return [f + b'\xff' * (8 - len(f)) for f in frames]


class Nmea2000Decoder:
    """python-can frames in, readings out; each frame counted in `stats`."""

    def __init__(self, stats: SourceStats | None = None, *, rudder_instance: int = 0) -> None:
        self.stats = stats if stats is not None else SourceStats()
        self.rudder_instance = rudder_instance
        # units='si': radians, m/s, rad/s, as this package uses them.
        self._decoder = NMEA2000Decoder(bound_format=N2KFormat.PYTHON_CAN, units='si',
                                        include_pgns=list(PGNS))
        logging.getLogger('nmea2000').setLevel(logging.ERROR)  # we count; it need not log

    def decode(self, frame: can.Message, stamp: float) -> list[Reading]:
        """The readings a frame completes ([] for most fast-packet frames and other PGNs)."""
        self.stats.count('received')
        if frame.is_error_frame or frame.is_remote_frame or not frame.is_extended_id:
            self.stats.count('ignored')  # not an NMEA 2000 data frame
            return []
        pgn, _ = pgn_of(frame.arbitration_id)
        spec = PGNS.get(pgn)
        if spec is None:
            self.stats.count('ignored')
            return []
        need, fast = spec
        data = bytes(frame.data)
        if fast:
            if len(data) < 2:
                return self._error(f'PGN {pgn}: fast-packet frame of {len(data)} bytes')
            if data[0] & 0x1F == 0 and data[1] < need:
                return self._error(f'PGN {pgn}: fast packet of {data[1]} bytes, '
                                   f'needs {need}')
        elif len(data) < need:
            return self._error(f'PGN {pgn}: truncated frame, {len(data)} of {need} bytes')
        try:
            message = self._decoder.decode(frame)
        except Exception as exc:  # noqa: BLE001 - a decoder failure is a counted error
            return self._error(f'PGN {pgn}: {type(exc).__name__}: {exc}')
        if message is None:
            if not fast:
                return self._error(f'PGN {pgn}: not decodable')
            return []  # a fast packet waiting for its other frames (or one dropped)
        fields = {f.id: f.raw_value if f.id == 'reference' else f.value
                  for f in message.fields}
        try:
            readings = self._readings(pgn, fields, stamp)
        except (TypeError, ValueError) as exc:
            return self._error(f'PGN {pgn}: {exc}')
        if not readings:
            self.stats.count('ignored')
            return []
        return keep_plausible(readings, self.stats, stamp, f'PGN {pgn}', self._error)

    def _error(self, why: str) -> list[Reading]:
        with self.stats.lock:
            self.stats.parse_errors += 1
            self.stats.last_error = why[:200]
        return []

    def _readings(self, pgn: int, f: dict, stamp: float) -> list[Reading]:
        if pgn == 127250:
            heading, reference = f.get('heading'), f.get('reference')
            if heading is None or reference not in (0, 1):  # 0 true, 1 magnetic
                return []
            if TWO_PI <= heading < TWO_PI + HEADING_SLACK:
                heading = 0.0  # north, rounded up (beyond: out of range, counted)
            if reference == 1 and f.get('deviation') is not None and heading < TWO_PI:
                heading = (heading + f['deviation']) % TWO_PI
            return [HeadingReading(stamp, heading, reference == 0)]
        if pgn == 127251:
            rate = f.get('rate')
            return [] if rate is None else [TurnRateReading(stamp, rate)]
        if pgn == 127257:
            roll, pitch = f.get('roll'), f.get('pitch')
            if roll is None or pitch is None:
                return []
            return [AttitudeReading(stamp, roll, -pitch)]  # N2K pitch > 0 = bow up
        if pgn == 130306:
            angle, speed = f.get('windAngle'), f.get('windSpeed')
            if f.get('reference') != APPARENT or angle is None or speed is None:
                return []
            if angle > math.pi:
                angle -= TWO_PI  # wind from port: negative
            return [WindReading(stamp, angle, speed)]
        if pgn in (128259, 130577):
            stw = f.get('speedWaterReferenced' if pgn == 128259 else 'speedThroughWater')
            return [] if stw is None else [SpeedReading(stamp, stw)]
        if pgn == 127245:
            position = f.get('position')
            if f.get('instance') != self.rudder_instance or position is None:
                return []
            return [RudderReading(stamp, position)]
        return []


class Nmea2000Source:
    """NMEA 2000 over python-can: `socketcan` on `can0` on a Pi with a CAN hat.

    Any python-can interface works (`virtual` in tests). A bus that cannot be opened, fails
    or stays silent for `silence_timeout` seconds is reopened with backoff and counted.
    """

    name = 'nmea2000'

    def __init__(self, interface: str = 'socketcan', channel: str = 'can0', *,
                 rudder_instance: int = 0, silence_timeout: float = 10.0,
                 backoff: Backoff | None = None, log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if silence_timeout <= 0.0:
            raise ValueError('nmea2000 silence_timeout must be positive')
        self.interface, self.channel = interface, channel
        self.silence_timeout = silence_timeout
        self.stats = SourceStats()
        self.decoder = Nmea2000Decoder(self.stats, rudder_instance=rudder_instance)
        self.backoff = backoff or Backoff()
        self.log = log
        self.clock = clock
        self.opened = threading.Event()  # set once a bus is open (tests wait for it)

    def describe(self) -> str:
        return f'{self.interface} CAN bus {self.channel}'

    def run(self, emit: Callable[[list[Reading]], None], stop: threading.Event) -> None:
        run_connected(lambda: self._session(emit, stop), self.stats, stop, self.backoff,
                      self.log)

    def _session(self, emit, stop: threading.Event) -> None:
        with can.Bus(interface=self.interface, channel=self.channel,
                     receive_own_messages=False) as bus:
            with self.stats.lock:
                self.stats.connected = True
            self.opened.set()
            last_data = time.monotonic()
            while not stop.is_set():
                frame = bus.recv(timeout=0.5)
                if frame is None:
                    if time.monotonic() - last_data > self.silence_timeout:
                        raise TimeoutError(f'no frames for {self.silence_timeout:g} s')
                    continue
                last_data = time.monotonic()
                self.backoff.reset()
                readings = self.decoder.decode(frame, self.clock())
                if readings:
                    emit(readings)
