"""What every connection to the instruments shares: backoff, line framing, the retry loop.

A boat's multiplexer reboots, a USB adapter is unplugged, a Wi-Fi link drops: none of it may
stop the bridge or flood the log. `run_connected` keeps one connection alive with a capped
exponential backoff and counts every retry; `LineFramer` turns a byte stream into lines and
survives garbage, partial lines and lines that never end.
"""

from __future__ import annotations

from collections.abc import Callable
import threading

from autopilot_ros.instruments.readings import SourceStats

# NMEA 0183 caps a sentence at 82 characters; proprietary ones and some multiplexers' tag
# blocks run longer. A "line" past this is noise (or a binary stream on the wrong port).
MAX_LINE = 256


class Backoff:
    """Capped exponential backoff: initial, 2x, 4x ... up to `cap` seconds; reset on success."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0) -> None:
        if not 0.0 < initial <= cap:
            raise ValueError(f'backoff needs 0 < initial ({initial}) <= cap ({cap})')
        self.initial = initial
        self.cap = cap
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2.0)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class LineFramer:
    """Bytes in, complete lines out (CR, LF or CRLF ended), never more than MAX_LINE long.

    A line longer than MAX_LINE is dropped whole, counted once, and everything up to the
    next line end is discarded with it, so a stream with no line ends cannot grow memory.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False
        self.overlong = 0  # lines dropped for length

    def feed(self, data: bytes, final: bool = False) -> list[bytes]:
        """Lines completed by `data`; `final` ends the last one too (a UDP datagram's end)."""
        lines = []
        buf = self._buf
        buf += data
        start = 0
        n = len(buf)
        while start < n:
            cut = _line_end(buf, start)
            if cut < 0:
                break
            if self._discarding:
                self._discarding = False
            elif cut > start:
                if cut - start > self.max_line:
                    self.overlong += 1
                else:
                    lines.append(bytes(buf[start:cut]))
            start = cut + 1
        del buf[:start]
        if final and buf:
            if not self._discarding and len(buf) <= self.max_line:
                lines.append(bytes(buf))
            elif not self._discarding:
                self.overlong += 1
            buf.clear()
            self._discarding = False
        elif len(buf) > self.max_line:
            if not self._discarding:
                self.overlong += 1
            self._discarding = True
            buf.clear()
        return lines

    def reset(self) -> None:
        """Forget a partial line (the connection it came on is gone)."""
        self._buf.clear()
        self._discarding = False


def _line_end(buf: bytearray, start: int) -> int:
    lf = buf.find(b'\n', start)
    cr = buf.find(b'\r', start)
    if lf < 0:
        return cr
    if cr < 0:
        return lf
    return min(lf, cr)


def run_connected(session: Callable[[], None], stats: SourceStats, stop: threading.Event,
                  backoff: Backoff, log: Callable[[str], None] | None = None) -> None:
    """Run `session` (connect, read until the link fails) again and again until `stop`.

    `session` returns or raises when its connection ends; either way the failure is counted
    in `stats`, the loop waits the next backoff delay (the session resets `backoff` once data
    flows) and connects again. Only `stop` ends the loop; nothing escapes it.
    """
    first = True
    while not stop.is_set():
        if not first:
            stats.count('reconnects')
        first = False
        try:
            session()
            why = 'connection closed'
        except Exception as exc:  # noqa: BLE001 - a link failure of any kind is a retry
            why = f'{type(exc).__name__}: {exc}'.splitlines()[0][:200]
        with stats.lock:
            stats.connected = False
            if not stop.is_set():
                stats.last_error = why
        if stop.is_set():
            break
        delay = backoff.next_delay()
        if log is not None:
            log(f'{why}; reconnecting in {delay:g} s')
        stop.wait(delay)
