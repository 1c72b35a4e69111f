"""NMEA 0183 in: sentences from a serial port, a TCP server or UDP broadcasts, as readings.

The parser (`Nmea0183Parser`) is pure: lines in, readings out, every problem counted. It
uses `pynmea2` to frame and checksum a sentence and reads the fields itself, so that an
empty field is absent (never 0) and a field that is not a number is a counted parse error.

Sentences read, and how each becomes this package's conventions (docs/design.md,
"Instrument bridges"; N = the NMEA field):

- HDG (heading, deviation, variation): magnetic heading = N heading + N deviation (E +,
  W -; none given: 0), degrees -> rad, wrapped to [0, 2*pi). Variation is not applied: the
  pilot steers a magnetic course as well as a true one, as long as it gets one of them.
- HDM: magnetic heading, degrees -> rad. HDT: true heading, degrees -> rad.
- ROT: rate of turn in degrees per MINUTE, negative = bow turns to port. -> rad/s
  (x pi/180/60), sign kept: > 0 = turning to starboard, as TurnRateReading says (the node
  flips it for sensor_msgs/Imu, whose z is up). Status V (invalid): dropped.
- MWV: relative (R) only; angle 0..360 deg clockwise from the bow -> (-pi, pi], > 0 = wind
  from starboard (angles over 180 become negative: wind from port). Speed in K (km/h), M
  (m/s), N (knots) or S (statute mph) -> m/s. Theoretical/true (T) wind is ignored: the
  pilot computes true wind itself. Status V: dropped.
- VHW: speed through water, knots (N field) else km/h (K field) -> m/s.
- RSA: rudder angle in degrees, negative = port, i.e. the rudder set to turn the boat to
  port -> rad, sign kept (> 0 turns the boat to starboard, the package's rudder sign). The
  starboard (or single) rudder field, else the port one; status V: dropped.
- XDR angular displacement ('A', units 'D') named PTCH/PITCH and ROLL/HEEL: roll in
  degrees, > 0 = starboard side down (list to starboard) -> rad, sign kept; pitch in degrees,
  > 0 = BOW UP (Airmar, Signal K) -> rad, SIGN FLIPPED (the package's pitch > 0 is bow
  down). A sentence with only one of them is paired with the other from the last second.

Knots are 1852/3600 m/s. A checksum is required unless `require_checksum` is off (a wrong
one is never accepted); talker IDs are not checked (multiplexers rewrite them).
"""

from __future__ import annotations

from collections.abc import Callable
import math
import socket
import threading
import time

import pynmea2

from autopilot_ros.instruments.checks import keep_plausible
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
from autopilot_ros.instruments.transport import Backoff, LineFramer, run_connected

KNOT = 1852.0 / 3600.0  # m/s
KMH = 1000.0 / 3600.0
MPH = 1609.344 / 3600.0
SPEED_UNITS = {'N': KNOT, 'K': KMH, 'M': 1.0, 'S': MPH}
DEG = math.pi / 180.0
ATTITUDE_PAIR_S = 1.0  # a lone roll or pitch is paired with the other if it is this recent

PITCH_NAMES = ('PTCH', 'PITCH')
ROLL_NAMES = ('ROLL', 'HEEL')
SENTENCES = ('HDG', 'HDM', 'HDT', 'ROT', 'MWV', 'VHW', 'RSA', 'XDR')


class FieldError(ValueError):
    """A field that should be a number, a unit or a flag is not."""


def _num(value: str) -> float | None:
    """A field's number, None when empty; FieldError for text or a non-finite number."""
    value = value.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise FieldError(f'not a number: {value[:20]!r}') from None
    if not math.isfinite(number):
        raise FieldError(f'not a finite number: {value[:20]!r}')
    return number


def _field(data: list[str], i: int) -> str:
    return data[i] if i < len(data) else ''


def _angle_deg(value: float, name: str, low: float, high: float) -> float:
    if not low <= value <= high:
        raise FieldError(f'{name} {value:g} deg outside [{low:g}, {high:g}]')
    return value * DEG


def _heading(deg: float) -> float:
    """Degrees in [0, 360] to rad in [0, 2*pi) (360 is north, like 0)."""
    rad = _angle_deg(deg, 'heading', 0.0, 360.0)
    return 0.0 if rad >= 2.0 * math.pi else rad


def _valid(status: str) -> bool:
    """A status field: 'A' valid, 'V' invalid, empty (older talkers) taken as valid."""
    status = status.strip().upper()
    if status not in ('', 'A', 'V'):
        raise FieldError(f'status {status[:5]!r} is neither A nor V')
    return status != 'V'


class Nmea0183Parser:
    """Lines in, readings out; every sentence counted in `stats` (received and how it ended)."""

    def __init__(self, stats: SourceStats | None = None, *, require_checksum: bool = True
                 ) -> None:
        self.stats = stats if stats is not None else SourceStats()
        self.require_checksum = require_checksum
        self.framer = LineFramer()
        self._roll: tuple[float, float] | None = None  # (rad, stamp) of a lone roll
        self._pitch: tuple[float, float] | None = None

    # -- bytes and lines ----------------------------------------------------------------
    def feed(self, data: bytes, stamp: float, final: bool = False) -> list[Reading]:
        """Readings from the complete lines in `data` (plus any partial line before it)."""
        overlong = self.framer.overlong
        lines = self.framer.feed(data, final)
        if self.framer.overlong != overlong:
            self._error(f'line over {self.framer.max_line} characters dropped',
                        self.framer.overlong - overlong)
        out: list[Reading] = []
        for line in lines:
            out.extend(self.parse_line(line, stamp))
        return out

    def parse_line(self, line: bytes | str, stamp: float) -> list[Reading]:
        """One line (without its line end): its readings, [] when it has none."""
        if isinstance(line, bytes):
            line = line.decode('latin-1')  # every byte a character; checked for ASCII below
        # Garbage before the start character (a line joined to noise, a partial sentence
        # after a reconnect): the sentence starts at the last '$' or '!'.
        start = max(line.rfind('$'), line.rfind('!'))
        line = line[start:].strip() if start >= 0 else line.strip()
        if not line:
            return []
        self.stats.count('received')
        if start < 0:
            self._error('no sentence start ($ or !)')
            return []
        if not line.isascii() or not line.isprintable():
            self._error('sentence has characters that are not printable ASCII')
            return []
        if line[0] == '!' or line[1:2] == 'P':  # encapsulated (AIS) and proprietary
            if self._checksum_ok(line):
                self.stats.count('ignored')
            return []
        if not self._checksum_ok(line):
            return []
        try:
            msg = pynmea2.parse(line, check=False)  # checksum verified above
        except pynmea2.SentenceTypeError:
            self.stats.count('ignored')  # a sentence pynmea2 does not know: not ours
            return []
        except (pynmea2.ParseError, ValueError) as exc:
            self._error(f'unparseable sentence: {exc}')
            return []
        kind_ = msg.sentence_type
        if kind_ not in SENTENCES:
            self.stats.count('ignored')
            return []
        try:
            readings = getattr(self, f'_{kind_.lower()}')(msg.data, stamp)
        except FieldError as exc:
            self._error(f'{kind_}: {exc}')
            return []
        if not readings:
            self.stats.count('ignored')  # well-formed, but says nothing we use (empty fields)
            return []
        return keep_plausible(readings, self.stats, stamp, kind_, self._error)

    def _checksum_ok(self, line: str) -> bool:
        star = line.rfind('*')
        if star < 0:
            if self.require_checksum:
                self.stats.count('checksum_errors')
                self._note('sentence without checksum (require_checksum is on)')
                return False
            return True
        given = line[star + 1:star + 3]
        body = line[1:star]
        checksum = 0
        for ch in body:
            checksum ^= ord(ch)
        try:
            ok = len(given) == 2 and int(given, 16) == checksum
        except ValueError:
            ok = False
        if not ok:
            self.stats.count('checksum_errors')
            self._note(f'checksum mismatch: {line[:40]!r}')
        return ok

    def _error(self, why: str, n: int = 1) -> None:
        with self.stats.lock:
            self.stats.parse_errors += n
            self.stats.last_error = why[:200]

    def _note(self, why: str) -> None:
        with self.stats.lock:
            self.stats.last_error = why[:200]

    # -- sentences (data = the fields after the address) -------------------------------
    def _hdg(self, data: list[str], stamp: float) -> list[Reading]:
        heading = _num(_field(data, 0))
        if heading is None:
            return []
        deviation = _num(_field(data, 1))
        if deviation is not None:
            side = _field(data, 2).strip().upper()
            if side not in ('E', 'W'):
                raise FieldError(f'deviation side {side[:5]!r} is neither E nor W')
            deviation = deviation if side == 'E' else -deviation
            _angle_deg(abs(deviation), 'deviation', 0.0, 180.0)
        magnetic = _heading(heading) + (deviation or 0.0) * DEG
        return [HeadingReading(stamp, magnetic % (2.0 * math.pi), False)]

    def _hdm(self, data: list[str], stamp: float) -> list[Reading]:
        return self._reference_heading(data, stamp, 'M')

    def _hdt(self, data: list[str], stamp: float) -> list[Reading]:
        return self._reference_heading(data, stamp, 'T')

    def _reference_heading(self, data: list[str], stamp: float, ref: str) -> list[Reading]:
        heading = _num(_field(data, 0))
        if heading is None:
            return []
        given = _field(data, 1).strip().upper()
        if given not in ('', ref):
            raise FieldError(f'reference {given[:5]!r} in an HD{ref} sentence')
        return [HeadingReading(stamp, _heading(heading), ref == 'T')]

    def _rot(self, data: list[str], stamp: float) -> list[Reading]:
        rate = _num(_field(data, 0))
        if rate is None or not _valid(_field(data, 1)):
            return []
        return [TurnRateReading(stamp, rate * DEG / 60.0)]

    def _mwv(self, data: list[str], stamp: float) -> list[Reading]:
        angle = _num(_field(data, 0))
        ref = _field(data, 1).strip().upper()
        speed = _num(_field(data, 2))
        unit = _field(data, 3).strip().upper()
        if ref not in ('R', 'T'):
            raise FieldError(f'reference {ref[:5]!r} is neither R nor T')
        if ref != 'R' or angle is None or speed is None or not _valid(_field(data, 4)):
            return []
        if unit not in SPEED_UNITS:
            raise FieldError(f'wind speed unit {unit[:5]!r} (K, M, N or S)')
        awa = _angle_deg(angle, 'wind angle', 0.0, 360.0)
        if awa > math.pi:
            awa -= 2.0 * math.pi  # wind from port: negative
        if speed < 0.0:
            raise FieldError(f'wind speed {speed:g} is negative')
        return [WindReading(stamp, awa, speed * SPEED_UNITS[unit])]

    def _vhw(self, data: list[str], stamp: float) -> list[Reading]:
        knots = _num(_field(data, 4))
        if knots is not None:
            return [SpeedReading(stamp, knots * KNOT)]
        kmh = _num(_field(data, 6))
        return [] if kmh is None else [SpeedReading(stamp, kmh * KMH)]

    def _rsa(self, data: list[str], stamp: float) -> list[Reading]:
        for value, status in ((_field(data, 0), _field(data, 1)),
                              (_field(data, 2), _field(data, 3))):
            angle = _num(value)
            if angle is not None:
                if not _valid(status):
                    return []
                return [RudderReading(stamp, _angle_deg(angle, 'rudder', -90.0, 90.0))]
        return []

    def _xdr(self, data: list[str], stamp: float) -> list[Reading]:
        roll = pitch = None
        for i in range(0, len(data) - 3, 4):
            kind_, value, unit, name = (f.strip().upper() for f in data[i:i + 4])
            name = name.split('#', 1)[0]
            if kind_ != 'A' or name not in PITCH_NAMES + ROLL_NAMES:
                continue
            number = _num(value)
            if number is None:
                continue
            if unit != 'D':
                raise FieldError(f'{name} in unit {unit[:5]!r}, not degrees')
            if name in ROLL_NAMES:
                roll = _angle_deg(number, 'roll', -180.0, 180.0)
            else:
                pitch = -_angle_deg(number, 'pitch', -90.0, 90.0)  # bow up -> bow down
        if roll is not None and pitch is None and self._pitch is not None \
                and stamp - self._pitch[1] <= ATTITUDE_PAIR_S:
            pitch = self._pitch[0]
        if pitch is not None and roll is None and self._roll is not None \
                and stamp - self._roll[1] <= ATTITUDE_PAIR_S:
            roll = self._roll[0]
        if roll is not None:
            self._roll = (roll, stamp)
        if pitch is not None:
            self._pitch = (pitch, stamp)
        if roll is None or pitch is None:
            return []
        return [AttitudeReading(stamp, roll, pitch)]


# -- transports -------------------------------------------------------------------------

TRANSPORTS = ('tcp', 'udp', 'serial')
READ_TIMEOUT = 0.5  # s: how often a blocked read looks at the stop flag


class Nmea0183Source:
    """NMEA 0183 over `tcp` (client of a multiplexer), `udp` (listen) or `serial`.

    A TCP server that closes, refuses or goes silent for `silence_timeout` seconds, and a
    serial port that vanishes or cannot be opened, are counted reconnects with backoff.
    """

    name = 'nmea0183'

    def __init__(self, transport: str = 'tcp', *, host: str = '127.0.0.1', port: int = 10110,
                 device: str = '/dev/ttyUSB0', baudrate: int = 4800,
                 require_checksum: bool = True, silence_timeout: float = 10.0,
                 backoff: Backoff | None = None,
                 log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f'nmea0183 transport {transport!r}: one of {", ".join(TRANSPORTS)}')
        if not 0 <= port <= 65535:
            raise ValueError(f'nmea0183 port {port} is not a port number')
        if silence_timeout <= 0.0:
            raise ValueError('nmea0183 silence_timeout must be positive')
        self.transport = transport
        self.host, self.port = host, int(port)
        self.device, self.baudrate = device, int(baudrate)
        self.silence_timeout = silence_timeout
        self.stats = SourceStats()
        self.parser = Nmea0183Parser(self.stats, require_checksum=require_checksum)
        self.backoff = backoff or Backoff()
        self.log = log
        self.clock = clock
        self.bound_port: int | None = None  # the UDP port actually bound (port 0: any)

    def describe(self) -> str:
        if self.transport == 'serial':
            return f'serial {self.device} at {self.baudrate} baud'
        where = f'{self.host}:{self.port}'
        return f'TCP client of {where}' if self.transport == 'tcp' else f'UDP on {where}'

    def run(self, emit: Callable[[list[Reading]], None], stop: threading.Event) -> None:
        session = {'tcp': self._tcp, 'udp': self._udp, 'serial': self._serial}[self.transport]
        run_connected(lambda: session(emit, stop), self.stats, stop, self.backoff, self.log)

    def _connected(self) -> None:
        with self.stats.lock:
            self.stats.connected = True
        self.parser.framer.reset()

    def _take(self, data: bytes, emit, final: bool = False) -> None:
        readings = self.parser.feed(data, self.clock(), final)
        if readings:
            emit(readings)

    def _tcp(self, emit, stop: threading.Event) -> None:
        with socket.create_connection((self.host, self.port), timeout=5.0) as sock:
            sock.settimeout(READ_TIMEOUT)
            self._connected()
            last_data = time.monotonic()
            while not stop.is_set():
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    if time.monotonic() - last_data > self.silence_timeout:
                        raise TimeoutError(f'no data for {self.silence_timeout:g} s') from None
                    continue
                if not data:
                    return  # the server closed the connection
                last_data = time.monotonic()
                self.backoff.reset()
                self._take(data, emit)

    def _udp(self, emit, stop: threading.Event) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            self.bound_port = sock.getsockname()[1]
            sock.settimeout(READ_TIMEOUT)
            self._connected()
            while not stop.is_set():
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    continue
                self.backoff.reset()
                self._take(data, emit, final=True)  # a datagram holds whole sentences

    def _serial(self, emit, stop: threading.Event) -> None:
        import serial  # pyserial: only this transport needs it

        with serial.Serial(self.device, self.baudrate, timeout=READ_TIMEOUT) as port:
            self._connected()
            last_data = time.monotonic()
            while not stop.is_set():
                data = port.read(port.in_waiting or 1)
                if not data:
                    if time.monotonic() - last_data > self.silence_timeout:
                        raise TimeoutError(f'no data for {self.silence_timeout:g} s')
                    continue
                last_data = time.monotonic()
                self.backoff.reset()
                self._take(data, emit)
