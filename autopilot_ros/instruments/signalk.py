"""Signal K source: the server's delta stream over WebSocket, turned into readings.

Signal K (https://signalk.org/specification/1.7.0/doc/) is what most Raspberry Pi boats
already run (OpenPlotter installs signalk-server): it merges NMEA 0183, NMEA 2000 and
sensors into one data model in SI units and radians. This source subscribes to only the
paths the pilot reads and maps each to a reading in this package's conventions
(readings.py, docs/design.md "Instrument bridges"). The signs, from the specification's
schema (signalk-schema 1.8, `schemas/groups/*.json`, the version the server ships):

| Signal K path | spec says | reading | flip |
|---|---|---|---|
| navigation.headingMagnetic, headingTrue | rad | heading, [0, 2*pi) | none (wrapped) |
| navigation.rateOfTurn | rad/s, "+ve is change to starboard" | rate > 0 to starboard | none |
| navigation.attitude.roll | rad, "+ve is list to starboard" | roll > 0 stbd down | none |
| navigation.attitude.pitch | rad, "+ve is bow up" | pitch > 0 bow DOWN | negated |
| navigation.attitude.yaw | rad | not used (heading has its paths) | - |
| environment.wind.angleApparent | rad, "negative to port" | awa > 0 from stbd | none |
| environment.wind.speedApparent | m/s | aws | none |
| navigation.speedThroughWater | m/s | stw | none |
| steering.rudderAngle | rad, "+ve is rudder to Starboard" | > 0 turns to stbd | none |

Angles outside the reading's range (a wind angle of 338 deg from a server that did not
wrap it) are wrapped, never clipped.

"Rudder to starboard" is the helm order's sense (the boat turns to starboard): the server's
own NMEA 0183 RSA converter maps RSA's "- means turn to port" straight onto it, and its
NMEA 2000 converter passes PGN 127245's position through, so a positive value turns the
boat to starboard, as ours does.

Wind angle and speed travel as two paths, and the server sends each in a delta of its own;
a `WindReading` needs both, so they are paired per `$source`: same update timestamp (one
instrument message), or else the other half received within `WIND_PAIR_S`. Nothing is
filled in: a value that is null (the spec's "not available"), missing, of the wrong type,
non-finite or outside what the quantity can be (an angle over 2*pi is degrees sent as
radians) gives no reading and is counted.

Transport: `ws://host:port/signalk/v1/stream?subscribe=none`, then one subscribe message for
our paths in the `vessels.self` context. An access token goes in an `Authorization: Bearer`
header (signalk-server also reads a `token` query parameter or cookie; a URL that carries
`token=` is used as given). Every failure (refused, closed, a handshake or hello that never
comes, a lost pong, a token refused, no data for `silence_timeout`) is counted and followed
by a reconnect after a capped exponential backoff; `run` returns only when `stop` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import json
import math
import ssl
import threading
import time
from typing import Any
import urllib.error
import urllib.parse
import urllib.request

from autopilot_ros.conventions import TWO_PI, wrap_2pi, wrap_pi
from autopilot_ros.instruments.checks import kind as reading_kind
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
from autopilot_ros.instruments.transport import Backoff

HEADING_MAGNETIC = 'navigation.headingMagnetic'
HEADING_TRUE = 'navigation.headingTrue'
RATE_OF_TURN = 'navigation.rateOfTurn'
ATTITUDE = 'navigation.attitude'
WIND_ANGLE = 'environment.wind.angleApparent'
WIND_SPEED = 'environment.wind.speedApparent'
SPEED_THROUGH_WATER = 'navigation.speedThroughWater'
RUDDER_ANGLE = 'steering.rudderAngle'
PATHS = (HEADING_MAGNETIC, HEADING_TRUE, RATE_OF_TURN, ATTITUDE, WIND_ANGLE, WIND_SPEED,
         SPEED_THROUGH_WATER, RUDDER_ANGLE)

PATH_KIND = {HEADING_MAGNETIC: 'heading', HEADING_TRUE: 'heading',
             RATE_OF_TURN: 'turn_rate', ATTITUDE: 'attitude', WIND_ANGLE: 'wind',
             WIND_SPEED: 'wind', SPEED_THROUGH_WATER: 'speed', RUDDER_ANGLE: 'rudder'}
HEADING_CHOICES = ('auto', 'magnetic', 'true')

# Wind angle and speed from one source pair up if received this close together (s).
WIND_PAIR_S = 1.0
# A source that holds a kind of reading keeps it until silent this long (s).
SOURCE_SWITCH_S = 2.0
# What a quantity can be at all, in Signal K's units; beyond it a value is a fault (an
# angle in degrees where radians belong), not a reading. Plausible spans for a boat are the
# node's business (plausible.*), not the parser's.
MAX_ANGLE = TWO_PI
MAX_RUDDER = math.pi / 2

STREAM_PATH = '/signalk/v1/stream'
# The sync client with `proxy=` (websockets 15); Debian 12's and Ubuntu 24.04's
# python3-websockets (10.4) has no sync client at all: pip install 'websockets>=15'.
MIN_WEBSOCKETS = (15, 0)
LOGIN_STATUS_PATH = '/skServer/loginStatus'




class BadValue(Exception):
    """A value the parser cannot use; the message says which path and why."""


def _number(path: str, value: Any, low: float, high: float) -> float:
    """A finite JSON number within [low, high]; JSON booleans are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue(f'{path}: expected a number, got {type(value).__name__}')
    try:
        number = float(value)
    except OverflowError:
        raise BadValue(f'{path}: number out of range') from None
    if not math.isfinite(number):
        raise BadValue(f'{path}: not a finite number')
    if not low <= number <= high:
        raise BadValue(f'{path}: {number:g} outside [{low:g}, {high:g}]')
    return number


@dataclass
class ParseResult:
    """What one WebSocket message gave: readings, and counts for `SourceStats`."""

    readings: list[Reading] = field(default_factory=list)
    errors: int = 0
    ignored: int = 0
    last_error: str = ''
    is_delta: bool = False

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message


@dataclass
class _WindHalf:
    value: float
    timestamp: Any
    stamp: float


class DeltaParser:
    """Signal K JSON (hello and delta messages) in, readings out; no I/O, never raises.

    One instrument per kind of reading: a server passes on every source of a path (two
    compasses, a compass and a GPS-derived true heading, magnetic and true from one
    compass plus a plugin), and alternating between them would make the heading jump by
    the variation or the deviation. The first source (and, for the heading, the first
    path, unless `heading` is 'magnetic' or 'true') of a kind holds it until it has been
    silent for `SOURCE_SWITCH_S`; the others are ignored (counted) meanwhile.

    Keeps only that, what pairing the wind needs (the latest unpaired angle or speed per
    `$source`) and the server's self context from its hello.
    """

    def __init__(self, heading: str = 'auto') -> None:
        if heading not in HEADING_CHOICES:
            raise ValueError(f"heading '{heading}' is not one of {', '.join(HEADING_CHOICES)}")
        self.heading = heading
        self.self_context: str | None = None
        self._wind: dict[str, dict[str, _WindHalf]] = {}
        self._held: dict[str, tuple[tuple[str, str], float]] = {}  # kind -> (key, last seen)

    def held_by(self, kind: str) -> tuple[str, str] | None:
        """The (path, $source) that holds a kind of reading now, if any."""
        held = self._held.get(kind)
        return held[0] if held else None

    def _holds(self, kind: str, key: tuple[str, str], stamp: float) -> bool:
        held = self._held.get(kind)
        if held is not None and held[0] != key and abs(stamp - held[1]) <= SOURCE_SWITCH_S:
            return False
        self._held[kind] = (key, stamp)
        return True

    def parse(self, message: str | bytes, stamp: float) -> ParseResult:
        """Parse one message received at `stamp` (this machine's clock, seconds)."""
        result = ParseResult()
        try:
            doc = json.loads(message, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, NaN
            result.error(f'not JSON: {str(exc)[:80]}')
            return result
        if not isinstance(doc, dict):
            result.error(f'expected a JSON object, got {type(doc).__name__}')
            return result
        if 'updates' not in doc:
            if isinstance(doc.get('self'), str) and 'version' in doc:  # the hello
                self.self_context = doc['self']
            result.ignored += 1
            return result
        result.is_delta = True
        context = doc.get('context', 'vessels.self')  # the spec: no context means self
        if not isinstance(context, str):
            result.error('delta context is not a string')
            return result
        if context not in ('vessels.self', self.self_context):
            result.ignored += 1  # another vessel (AIS), an aircraft, an aid to navigation
            return result
        updates = doc['updates']
        if not isinstance(updates, list):
            result.error('delta updates is not a list')
            return result
        for update in updates:
            self._parse_update(update, stamp, result)
        return result

    def _parse_update(self, update: Any, stamp: float, result: ParseResult) -> None:
        if not isinstance(update, dict):
            result.error('an update is not an object')
            return
        values = update.get('values')
        if values is None:
            result.ignored += 1  # a meta-only update
            return
        if not isinstance(values, list):
            result.error('update values is not a list')
            return
        source = update.get('$source')
        if not isinstance(source, str):
            source = json.dumps(update.get('source'), sort_keys=True, default=str)
        timestamp = update.get('timestamp')
        timestamp = timestamp if isinstance(timestamp, str) else None
        for item in values:
            if not isinstance(item, dict) or not isinstance(item.get('path'), str):
                result.error('a value without a path')
                continue
            if 'value' not in item:
                result.error(f"{item['path']}: no value")
                continue
            path, value = item['path'], item['value']
            if value is None:
                result.ignored += 1  # the spec's "not available"
                continue
            try:
                reading = self._reading(path, value, source, timestamp, stamp)
            except BadValue as exc:
                result.error(str(exc))
                continue
            if reading is _IGNORED:
                result.ignored += 1
            elif reading is not None:
                result.readings.append(reading)

    def _reading(self, path: str, value: Any, source: str, timestamp: str | None,
                 stamp: float) -> Reading | object | None:
        kind = PATH_KIND.get(path)
        if kind is None:
            return _IGNORED
        reading: Reading
        if kind == 'heading':
            heading = _number(path, value, -MAX_ANGLE, MAX_ANGLE)
            if self.heading != 'auto' and (path == HEADING_TRUE) != (self.heading == 'true'):
                return _IGNORED
            if not 0.0 <= heading < TWO_PI:  # wrap only what needs it: no rounding
                heading = wrap_2pi(heading)
            reading = HeadingReading(stamp, heading, path == HEADING_TRUE)
        elif kind == 'turn_rate':
            reading = TurnRateReading(stamp, _number(path, value, -math.inf, math.inf))
        elif kind == 'attitude':
            if not isinstance(value, dict):
                raise BadValue(f'{path}: expected an object with roll and pitch')
            if value.get('roll') is None or value.get('pitch') is None:
                return _IGNORED  # not available (a roll-only sensor): no partial reading
            roll = _number(f'{path}.roll', value['roll'], -math.pi, math.pi)
            pitch = _number(f'{path}.pitch', value['pitch'], -math.pi, math.pi)
            reading = AttitudeReading(stamp, roll, -pitch)  # Signal K pitch > 0 is bow UP
        elif kind == 'wind':
            if path == WIND_ANGLE:
                number = _number(path, value, -MAX_ANGLE, MAX_ANGLE)
                if not -math.pi < number <= math.pi:
                    number = wrap_pi(number)
            else:
                number = _number(path, value, 0.0, math.inf)
            if not self._holds(kind, ('', source), stamp):
                return _IGNORED
            half = 'angle' if path == WIND_ANGLE else 'speed'
            return self._wind_half(source, half, _WindHalf(number, timestamp, stamp))
        elif kind == 'speed':
            reading = SpeedReading(stamp, _number(path, value, -math.inf, math.inf))
        else:
            reading = RudderReading(stamp, _number(path, value, -MAX_RUDDER, MAX_RUDDER))
        key = (path if kind == 'heading' else '', source)
        return reading if self._holds(kind, key, stamp) else _IGNORED

    def _wind_half(self, source: str, half: str, new: _WindHalf) -> WindReading | None:
        """Store one half; a reading once its partner from the same source is there."""
        pending = self._wind.setdefault(source, {})
        other = pending.get('speed' if half == 'angle' else 'angle')
        if other is not None and (
                (new.timestamp is not None and other.timestamp == new.timestamp)
                or abs(new.stamp - other.stamp) <= WIND_PAIR_S):
            pending.clear()
            angle, speed = (new, other) if half == 'angle' else (other, new)
            return WindReading(new.stamp, angle.value, speed.value)
        pending.pop('speed' if half == 'angle' else 'angle', None)  # stale partner
        pending[half] = new
        if len(self._wind) > 64:  # sources come and go; never grow without bound
            self._wind.pop(next(iter(self._wind)))
        return None


_IGNORED = object()


def _reject_constant(name: str) -> float:
    raise ValueError(f'{name} is not JSON')


def subscribe_message(paths: tuple[str, ...] = PATHS) -> str:
    """The subscription for our paths: every update as it comes ('instant')."""
    return json.dumps({'context': 'vessels.self',
                       'subscribe': [{'path': p, 'policy': 'instant'} for p in paths]})


def stream_url(url: str) -> str:
    """`ws[s]://host[:port][/path]` (or `host:port`) to the delta stream, subscribe=none.

    Raises ValueError with the reason for a URL that names no host or another scheme.
    """
    text = url.strip()
    if '://' not in text:
        text = 'ws://' + text
    parts = urllib.parse.urlsplit(text)
    scheme = {'http': 'ws', 'https': 'wss'}.get(parts.scheme, parts.scheme)
    if scheme not in ('ws', 'wss'):
        raise ValueError(f"Signal K url '{url}': the scheme must be ws or wss")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"Signal K url '{url}': the port is not a number") from None
    if not parts.hostname:
        raise ValueError(f"Signal K url '{url}' names no host")
    path = parts.path if parts.path not in ('', '/') else STREAM_PATH
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != 'subscribe']
    query.append(('subscribe', 'none'))
    netloc = parts.hostname if port is None else f'{parts.hostname}:{port}'
    if ':' in parts.hostname:  # IPv6 literal
        netloc = f'[{parts.hostname}]' + ('' if port is None else f':{port}')
    return urllib.parse.urlunsplit((scheme, netloc, path, urllib.parse.urlencode(query), ''))


def tls_context(ca_file: str = '') -> ssl.SSLContext:
    """The system's authorities and host name check, or trust in exactly `ca_file`'s
    certificate (a boat's self-signed one names 'localhost', not the Pi: pinned, the host
    name does not matter). A missing or unreadable file is a ValueError saying so."""
    if not ca_file:
        return ssl.create_default_context()
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"Signal K ca_file '{ca_file}': {exc}") from None
    context.check_hostname = False
    return context


def check_websockets() -> None:
    """Raise RuntimeError saying what to install when `websockets` is missing or too old."""
    try:
        import websockets
    except ImportError:
        raise RuntimeError('the Signal K source needs the websockets package: '
                           "pip install 'websockets>=15'") from None
    try:
        version = tuple(int(x) for x in websockets.__version__.split('.')[:2])
    except ValueError:
        return  # a development build: let it try
    if version < MIN_WEBSOCKETS:
        raise RuntimeError(f'the Signal K source needs websockets >= 15, found '
                           f"{websockets.__version__}: pip install 'websockets>=15'")


class SignalKError(Exception):
    """A failure of one connection, with the message the diagnostics show."""


class AccessRefused(SignalKError):
    """The server wants a token it was not given, or refused the one it got."""


@dataclass
class SignalKStats(SourceStats):
    """`SourceStats` plus the refusals that a token would cure."""

    auth_errors: int = 0


class SignalKSource:
    """One connection to a Signal K server's delta stream (readings.Source).

    `url` is the server (`ws://localhost:3000` on an OpenPlotter Pi); `token` an access
    token for a server with security on (a device token approved in its admin page, or one
    from `signalk-generate-token`). The timeouts are seconds. `heading`: 'auto' (the first
    heading path seen holds), 'magnetic' or 'true' (only that path is read). `ca_file`
    (wss only): the certificate to trust, e.g. the self-signed `~/.signalk/ssl-cert.pem`
    signalk-server makes (pinned: then the host name is not checked, the certificate is);
    without it, the system's authorities and the host name are checked.
    """

    name = 'signalk'

    def __init__(self, url: str, token: str = '', *, open_timeout: float = 5.0,
                 hello_timeout: float = 5.0, ping_interval: float = 5.0,
                 ping_timeout: float = 5.0, silence_timeout: float = 30.0,
                 backoff_initial: float = 0.5, backoff_cap: float = 30.0,
                 heading: str = 'auto', ca_file: str = '') -> None:
        self.url = stream_url(url)
        timeouts = {'open_timeout': open_timeout, 'hello_timeout': hello_timeout,
                    'ping_interval': ping_interval, 'ping_timeout': ping_timeout,
                    'silence_timeout': silence_timeout, 'backoff_initial': backoff_initial,
                    'backoff_cap': backoff_cap}
        for key, value in timeouts.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f'Signal K source: {key} must be a number of seconds > 0, '
                                 f'got {value!r}')
        if backoff_cap < backoff_initial:
            raise ValueError('Signal K source: backoff_cap must be >= backoff_initial')
        check_websockets()
        self.ssl_context = tls_context(ca_file) if self.url.startswith('wss:') else None
        self.token = token.strip()
        self.open_timeout, self.hello_timeout = open_timeout, hello_timeout
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.silence_timeout = silence_timeout
        self.backoff = Backoff(backoff_initial, backoff_cap)
        self.stats = SignalKStats()
        self.parser = DeltaParser(heading)
        self._got_data = False

    def describe(self) -> str:
        """Where it reads, for the log and `/diagnostics`: the URL without its query (which
        may hold a token)."""
        parts = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, '', ''))

    # -- the loop ---------------------------------------------------------------------------
    def run(self, emit: Callable[[list[Reading]], None], stop: threading.Event) -> None:
        """Connect, read and emit until `stop`; every failure is counted, then a retry."""
        first = True
        while not stop.is_set():
            if not first:
                self.stats.count('reconnects')
            first = False
            self._got_data = False  # set once a delta arrives: the backoff starts afresh
            try:
                self._session(emit, stop)
            except AccessRefused as exc:
                self._failed(str(exc), auth=True)
            except SignalKError as exc:
                self._failed(str(exc))
            except Exception as exc:  # any transport failure: count, retry
                self._failed(_describe(exc))
            finally:
                with self.stats.lock:
                    self.stats.connected = False
            if self._got_data:
                self.backoff.reset()
            if stop.wait(self.backoff.next_delay()):
                break

    def _failed(self, message: str, auth: bool = False) -> None:
        with self.stats.lock:
            self.stats.last_error = message
            if auth:
                self.stats.auth_errors += 1

    def _session(self, emit: Callable[[list[Reading]], None], stop: threading.Event) -> None:
        """One connection, until `stop` or a failure (raised)."""
        from websockets.exceptions import ConnectionClosed, InvalidStatus
        from websockets.sync.client import connect

        headers = {'Authorization': f'Bearer {self.token}'} if self.token else None
        try:
            ws = connect(self.url, additional_headers=headers, open_timeout=self.open_timeout,
                         ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
                         close_timeout=1.0, proxy=None, max_size=2 ** 20,
                         ssl=self.ssl_context)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise AccessRefused(
                    f'the server refused the access token (HTTP {status}): '
                    + ('give a valid token' if not self.token else 'the token is invalid, '
                       'expired or of a removed user or device')) from None
            raise SignalKError(f'the server refused the WebSocket (HTTP {status})') from None
        except ssl.SSLCertVerificationError as exc:
            raise SignalKError('the TLS certificate of the server is not trusted '
                               f'({exc.verify_message}): give it as ca_file') from None
        except TimeoutError:
            raise SignalKError(f'no WebSocket handshake within {self.open_timeout:g} s '
                               '(a server that accepts and never answers?)') from None
        with ws:
            try:
                self._read(ws, emit, stop)
            except ConnectionClosed as exc:
                sent = exc.sent
                if sent is not None and sent.code == 1011 and 'keepalive' in sent.reason:
                    raise SignalKError(
                        f'no answer to the heartbeat within {self.ping_timeout:g} s '
                        '(a hung server or a lost link)') from None
                raise SignalKError(f'the server closed the stream ({_describe(exc)})'
                                   ) from None

    def _read(self, ws: Any, emit: Callable[[list[Reading]], None],
              stop: threading.Event) -> None:
        try:
            hello = ws.recv(timeout=self.hello_timeout)
        except TimeoutError:
            raise SignalKError(f'connected, but no hello within {self.hello_timeout:g} s'
                               ) from None
        self._count(self.parser.parse(hello, time.time()))
        self._check_access()
        ws.send(subscribe_message())
        with self.stats.lock:
            self.stats.connected = True
        last_data = time.monotonic()
        while not stop.is_set():
            try:
                message = ws.recv(timeout=0.25)
            except TimeoutError:
                if time.monotonic() - last_data > self.silence_timeout:
                    raise SignalKError(
                        f'no data for {self.silence_timeout:g} s: reconnecting') from None
                continue
            result = self.parser.parse(message, time.time())
            self._count(result)
            if result.is_delta:
                last_data = time.monotonic()
                self._got_data = True
            if result.readings:
                self._emit(emit, result.readings)

    def _count(self, result: ParseResult) -> None:
        stats = self.stats
        with stats.lock:
            stats.received += 1
            stats.readings += len(result.readings)
            stats.parse_errors += result.errors
            stats.ignored += result.ignored
            if result.last_error:
                stats.last_error = result.last_error
            for reading in result.readings:
                stats.last_seen[reading_kind(reading)] = reading.stamp

    def _emit(self, emit: Callable[[list[Reading]], None], readings: list[Reading]) -> None:
        try:
            emit(readings)
        except Exception as exc:  # the consumer's fault must not end the source
            with self.stats.lock:
                self.stats.last_error = f'emit failed: {_describe(exc)}'

    def _check_access(self) -> None:
        """Ask the server whether this client may read; a clear refusal instead of silence.

        signalk-server with security on and read-only access off accepts a WebSocket
        without a token, sends its hello and then nothing at all. Its login status says
        why. A server without that endpoint (another implementation) is not asked again.
        """
        parts = urllib.parse.urlsplit(self.url)
        scheme = 'https' if parts.scheme == 'wss' else 'http'
        url = urllib.parse.urlunsplit((scheme, parts.netloc, LOGIN_STATUS_PATH, '', ''))
        request = urllib.request.Request(url, headers={'Accept': 'application/json'})
        if self.token:
            request.add_header('Authorization', f'Bearer {self.token}')
        handlers: list = [urllib.request.ProxyHandler({})]
        if self.ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=self.ssl_context))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=self.hello_timeout) as response:
                status = json.loads(response.read(65536))
        except (OSError, ValueError):  # no such endpoint, not JSON: nothing to say
            return
        if not isinstance(status, dict) or status.get('authenticationRequired') is not True:
            return
        if status.get('status') == 'loggedIn' or status.get('readOnlyAccess') is True:
            return
        raise AccessRefused(
            'the server requires an access token (security on, no read-only access)'
            if not self.token else 'the server does not accept this access token')


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f'{type(exc).__name__}: {text}'[:200]
