"""The simulator's sensors as NMEA 0183 sentences, served over TCP or UDP like a multiplexer.

`encode` is pure and the exact inverse of instruments/nmea0183.py's conventions, so a run
can go simulator -> NMEA 0183 -> instruments_node -> autopilot and see the boat the way a
real one's instruments show it (sim_node `nmea.*` parameters). Sentences and resolution:

- heading: HDM, 0.1 deg (the simulated compass is magnetic).
- IMU: ROT in deg/min (0.1), > 0 = bow to starboard = -angular_velocity.z; XDR roll and
  pitch (0.1 deg) with PITCH BOW UP (the package's pitch is bow down: flipped), when the
  sample knows its attitude. Accelerations and roll/pitch rates have no sentence.
- wind: MWV relative, angle 0..360 clockwise from the bow (0.1 deg), speed in knots (0.01).
- speed: VHW, knots (0.01).
- rudder: RSA starboard field, degrees (0.1), `rudder_full_scale` deg = normalised 1.0.
"""

from __future__ import annotations

import math
import socket
import threading

from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SensorSample,
    SpeedSample,
    WindSample,
)

KNOT = 1852.0 / 3600.0
TALKER = 'II'  # integrated instrumentation


def sentence(body: str) -> str:
    """'$' + body + '*' + checksum (XOR of the body's characters) + CRLF."""
    checksum = 0
    for ch in body:
        checksum ^= ord(ch)
    return f'${body}*{checksum:02X}\r\n'


def _f(value: float, decimals: int) -> str:
    """A fixed-point field, never '-0.0' (a value that rounds to zero has no sign)."""
    text = f'{value:.{decimals}f}'
    return text[1:] if text.startswith('-') and float(text) == 0.0 else text


def encode(sample: SensorSample, rudder_full_scale_deg: float = 35.0,
           talker: str = TALKER) -> list[str]:
    """The sentences that carry a sample ([] for a value NMEA 0183 cannot say: NaN)."""
    if isinstance(sample, HeadingSample):
        values = (sample.heading,)
        body = f'{talker}HDM,{_f(math.degrees(sample.heading) % 360.0, 1)},M'
    elif isinstance(sample, WindSample):
        values = (sample.awa, sample.aws)
        body = (f'{talker}MWV,{_f(math.degrees(sample.awa) % 360.0, 1)},R,'
                f'{_f(sample.aws / KNOT, 2)},N,A')
    elif isinstance(sample, SpeedSample):
        values = (sample.stw,)
        body = f'{talker}VHW,,T,,M,{_f(sample.stw / KNOT, 2)},N,{_f(sample.stw * 3.6, 2)},K'
    elif isinstance(sample, RudderSample):
        values = (sample.angle,)
        body = f'{talker}RSA,{_f(sample.angle * rudder_full_scale_deg, 1)},A,,V'
    elif isinstance(sample, ImuSample):
        out = []
        if math.isfinite(sample.yaw_rate_z):
            out.append(sentence(f'{talker}ROT,{_f(math.degrees(-sample.yaw_rate_z) * 60.0, 1)},A'))
        if sample.orientation_known and math.isfinite(sample.roll) \
                and math.isfinite(sample.pitch):
            out.append(sentence(f'{talker}XDR,A,{_f(math.degrees(-sample.pitch), 1)},D,PTCH,'
                                f'A,{_f(math.degrees(sample.roll), 1)},D,ROLL'))
        return out
    else:
        return []
    if not all(math.isfinite(v) for v in values):
        return []
    return [sentence(body)]


class NmeaTcpServer:
    """Serves sentences to every connected TCP client (what a Wi-Fi multiplexer does).

    Port 0 takes any free port (`port` says which). A client that stops reading or goes
    away is dropped; the simulator never waits for one.
    """

    def __init__(self, host: str = '127.0.0.1', port: int = 10110) -> None:
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name='nmea tcp', daemon=True)
        self._thread.start()

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            conn.setblocking(False)
            with self._lock:
                self._clients.append(conn)

    def send(self, lines: list[str]) -> None:
        if not lines:
            return
        data = ''.join(lines).encode('ascii')
        with self._lock:
            for conn in list(self._clients):
                try:
                    conn.sendall(data)
                except OSError:  # gone, or its buffer full: a multiplexer drops it too
                    self._clients.remove(conn)
                    conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._server.close()
        with self._lock:
            for conn in self._clients:
                conn.close()
            self._clients.clear()


class NmeaUdpSender:
    """Sends each batch of sentences as one datagram to host:port (unicast or broadcast)."""

    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self._address = (host, port)

    def send(self, lines: list[str]) -> None:
        if lines:
            try:
                self._sock.sendto(''.join(lines).encode('ascii'), self._address)
            except OSError:
                pass  # nobody listening is no error for a broadcaster

    def close(self) -> None:
        self._sock.close()
