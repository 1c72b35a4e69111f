"""systemd's notify protocol for the autopilot node: READY=1 once, WATCHDOG=1 per tick.

Under the boat's service (systemd/autopilot_ros.service: Type=notify, WatchdogSec=) the
node says READY=1 when its control tick first runs and WATCHDOG=1 from the tick, so a tick
that hangs stops the pings and systemd restarts the service. Outside systemd
(NOTIFY_SOCKET unset: a terminal, the tests, make demo) every call is a no-op. No rclpy
here: the node passes a log function.

WATCHDOG_PID is not checked on purpose: systemd sets it to the service's main process,
which is `ros2 launch`, and the node is its child; the unit says NotifyAccess=all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import os
import time

# Ping at half the watchdog timeout, as sd_watchdog_enabled(3) advises.
PING_FRACTION = 0.5


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    try:
        usec = int(environ.get('WATCHDOG_USEC', ''))
    except ValueError:
        return None
    return usec * 1e-6 * PING_FRACTION if usec > 0 else None


class SystemdNotifier:
    """Sends the node's state to systemd when, and only when, systemd is listening.

    Errors never reach the caller (the helm must not stop for a notify socket): the first
    is logged, all are counted in `errors`.
    """

    def __init__(self, log: Callable[[str], None] = print, *,
                 environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        environ = os.environ if environ is None else environ
        self.socket_path = environ.get('NOTIFY_SOCKET', '')
        self.watchdog_interval = _watchdog_interval(environ) if self.socket_path else None
        self.enabled = bool(self.socket_path)
        self.errors = 0
        self.ready_sent = False
        self._log = log
        self._clock = clock
        self._last_ping = -float('inf')
        self._notifier = None
        if not self.enabled:
            return
        try:
            import sdnotify

            # debug=True: sdnotify raises instead of swallowing, so failures are counted.
            self._notifier = self._connect(sdnotify)
        except Exception as exc:  # noqa: BLE001 - no sdnotify, or a socket we cannot use
            self._fail(f'cannot talk to systemd at NOTIFY_SOCKET={self.socket_path!r} ({exc}); '
                       'the service will time out and restart (pip install sdnotify)')

    def _connect(self, sdnotify):  # noqa: ANN001, ANN202 - the sdnotify module
        saved = os.environ.get('NOTIFY_SOCKET')
        os.environ['NOTIFY_SOCKET'] = self.socket_path  # sdnotify reads it from there
        try:
            return sdnotify.SystemdNotifier(debug=True)
        finally:
            if saved is None:
                os.environ.pop('NOTIFY_SOCKET', None)
            else:
                os.environ['NOTIFY_SOCKET'] = saved

    def _fail(self, message: str) -> None:
        self.errors += 1
        if self.errors == 1:
            self._log(message)

    def notify(self, state: str) -> bool:
        """Send one state message ('READY=1', 'STATUS=...'); False if not sent."""
        if self._notifier is None:
            return False
        try:
            self._notifier.notify(state)
        except Exception as exc:  # noqa: BLE001
            self._fail(f'systemd notify failed ({exc})')
            return False
        return True

    def tick(self, status: str = '') -> None:
        """From the control tick: READY=1 the first time, then WATCHDOG=1 when due."""
        if self._notifier is None:
            return
        if not self.ready_sent:
            self.ready_sent = self.notify('READY=1' + (f'\nSTATUS={status}' if status else ''))
        now = self._clock()
        if self.watchdog_interval is not None and now - self._last_ping >= \
                self.watchdog_interval:
            if self.notify('WATCHDOG=1'):
                self._last_ping = now

    def stopping(self) -> None:
        """Shutting down on purpose: systemd then does not count the pings' end as a hang."""
        self.notify('STOPPING=1')
