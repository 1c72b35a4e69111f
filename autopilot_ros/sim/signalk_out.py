"""The simulator's instruments as Signal K deltas, and a feed that writes them to a server.

So a bench run can go sim -> signalk-server -> bridge, as a boat goes instruments ->
signalk-server -> bridge. `samples_to_delta` is the pure encoder, the inverse of the
bridge's parser (instruments/signalk.py) for everything Signal K can say; the signs are
the specification's (that module's table): pitch is negated (Signal K pitch > 0 is bow
up), the turn rate is `-angular_velocity.z` (Signal K rateOfTurn > 0 is to starboard), the
rudder goes from normalised to radians over `rudder_max_rad`. Signal K has no paths for
roll and pitch rates or for accelerations, so those IMU fields do not travel: a pilot fed
through Signal K sees them as absent, as it would on a boat whose server only has an
attitude sensor.

`SignalKFeed` writes deltas over the server's WebSocket, as a sensor would: SensESP
devices and most Signal K sensors on a boat's network do exactly that (a WebSocket client
with a device token that may write), so the server handles the simulator like any other
instrument, merges it with its sources and needs no provider configured. The server must
allow the write: without security it does; with security, the token must be a read/write
user's or an approved device's.

    python -m autopilot_ros.sim.signalk_out --local-server --scenario beam_reach

starts a throwaway signalk-server on loopback (`make signalk-server` installs it), prints
its URL and sails the scenario with the expert helmsman, pushing the instruments to it in
real time; `--url ws://host:3000 [--token T]` pushes to a server already running.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
import contextlib
import datetime
import json
import math
import pathlib
import queue
import shutil
import sys
import tempfile
import threading
import time

from autopilot_ros.instruments.signalk import (
    ATTITUDE,
    HEADING_MAGNETIC,
    HEADING_TRUE,
    RATE_OF_TURN,
    RUDDER_ANGLE,
    SPEED_THROUGH_WATER,
    WIND_ANGLE,
    WIND_SPEED,
    stream_url,
)
from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SensorSample,
    SpeedSample,
    WindSample,
)

# The simulated rudder's travel each way: normalised 1 is this many radians (boat.py's
# "+-35 deg"). A real boat's bridge is told its own in the instruments node.
RUDDER_MAX_RAD = math.radians(35.0)
SOURCE = 'autopilot_ros.sim'


def iso_timestamp(stamp: float) -> str:
    """Signal K's timestamp form: ISO 8601 UTC with milliseconds and a Z."""
    when = datetime.datetime.fromtimestamp(stamp, tz=datetime.UTC)
    return when.isoformat(timespec='milliseconds').replace('+00:00', 'Z')


def sample_values(sample: SensorSample, *, rudder_max_rad: float = RUDDER_MAX_RAD,
                  true_north: bool = False) -> list[dict]:
    """The Signal K path values one sample gives (non-finite fields are left out)."""
    def ok(*xs: float) -> bool:
        return all(math.isfinite(x) for x in xs)

    values: list[dict] = []
    if isinstance(sample, ImuSample):
        # The rate first, as nmea_out sends ROT before XDR: the bridge folds the newest rate
        # into the attitude's Imu, so even the first one carries a turn rate.
        if ok(sample.yaw_rate_z):
            values.append({'path': RATE_OF_TURN, 'value': -sample.yaw_rate_z})
        if ok(sample.roll, sample.pitch):
            values.append({'path': ATTITUDE,
                           'value': {'roll': sample.roll, 'pitch': -sample.pitch}})
    elif isinstance(sample, HeadingSample):
        if ok(sample.heading):
            values.append({'path': HEADING_TRUE if true_north else HEADING_MAGNETIC,
                           'value': sample.heading})
    elif isinstance(sample, WindSample):
        if ok(sample.awa, sample.aws):
            values += [{'path': WIND_ANGLE, 'value': sample.awa},
                       {'path': WIND_SPEED, 'value': sample.aws}]
    elif isinstance(sample, SpeedSample):
        if ok(sample.stw):
            values.append({'path': SPEED_THROUGH_WATER, 'value': sample.stw})
    elif isinstance(sample, RudderSample):
        if ok(sample.angle):
            values.append({'path': RUDDER_ANGLE, 'value': sample.angle * rudder_max_rad})
    return values


def samples_to_delta(samples: Iterable[SensorSample], *, epoch: float = 0.0,
                     rudder_max_rad: float = RUDDER_MAX_RAD, true_north: bool = False,
                     source: str = SOURCE) -> str | None:
    """One delta (JSON text) for a batch of samples, an update per sample; None if empty.

    Each update is stamped with its sample's time plus `epoch` (sim time starts at 0; pass
    the wall time the run started to put the deltas on today's clock).
    """
    updates = []
    for sample in samples:
        values = sample_values(sample, rudder_max_rad=rudder_max_rad, true_north=true_north)
        if values:
            updates.append({'$source': source, 'timestamp': iso_timestamp(sample.stamp + epoch),
                            'values': values})
    if not updates:
        return None
    return json.dumps({'context': 'vessels.self', 'updates': updates}, allow_nan=False)


class SignalKFeed:
    """A WebSocket client that writes deltas to a Signal K server (as a sensor would)."""

    def __init__(self, url: str, token: str = '', open_timeout: float = 10.0) -> None:
        from websockets.sync.client import connect

        headers = {'Authorization': f'Bearer {token}'} if token else None
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(connect(
            stream_url(url), additional_headers=headers, open_timeout=open_timeout,
            proxy=None, close_timeout=1.0))
        try:
            self._ws.recv(timeout=open_timeout)  # the hello
        except BaseException:
            self._stack.close()
            raise

    def send(self, delta: str) -> None:
        self._ws.send(delta)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> SignalKFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SignalKWriter:
    """Deltas to a server from a thread of its own: the simulator never waits for the server.

    What sim_node uses. `send` only queues; the thread connects (a `SignalKFeed`), writes,
    and on any failure (the server not up yet, restarted, gone) counts it, waits a backoff
    (0.5 s doubling to 5 s) and connects again. Deltas that come while it is not connected,
    or faster than the link takes them, are dropped and counted, never sent late: a sensor
    that lost its link does not replay old readings either.
    """

    QUEUE = 64  # deltas: a few simulator steps; more would be stale
    BACKOFF = (0.5, 5.0)

    def __init__(self, url: str, token: str = '', *,
                 log: Callable[[str], None] | None = None) -> None:
        self.url = stream_url(url)  # ValueError for a URL that names no server
        self.token = token
        self.log = log or (lambda line: None)
        self.sent = self.dropped = self.failures = 0
        self.connected = False
        self.last_error = ''
        self._lock = threading.Lock()  # `dropped` is counted from both threads
        self._queue: queue.Queue[str] = queue.Queue(self.QUEUE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='signalk writer', daemon=True)
        self._thread.start()

    def send(self, delta: str) -> None:
        """Queue one delta for the server; dropped (counted) while there is no link."""
        if self.connected:
            try:
                self._queue.put_nowait(delta)
                return
            except queue.Full:
                pass
        with self._lock:
            self.dropped += 1

    def _run(self) -> None:
        from websockets.exceptions import WebSocketException

        delay = self.BACKOFF[0]
        while not self._stop.is_set():
            try:
                with SignalKFeed(self.url, self.token, open_timeout=5.0) as feed:
                    self.connected = True
                    delay = self.BACKOFF[0]
                    self.log(f'writing the instruments to {self.url}')
                    while not self._stop.is_set():
                        try:
                            delta = self._queue.get(timeout=0.1)
                        except queue.Empty:
                            continue
                        feed.send(delta)
                        self.sent += 1
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.failures += 1
                error = f'{type(exc).__name__}: {exc}'[:200]
                if error != self.last_error:
                    self.log(f'{self.url}: {error}; retrying')
                self.last_error = error
            finally:
                self.connected = False
                while not self._queue.empty():  # stale by the time a link is back
                    self._queue.get_nowait()
                    with self._lock:
                        self.dropped += 1
            if self._stop.wait(delay):
                break
            delay = min(self.BACKOFF[1], delay * 2.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=7.0)


def main(argv: list[str] | None = None) -> int:
    from websockets.exceptions import WebSocketException

    from autopilot_ros.sim.helmsman import ExpertHelmsman
    from autopilot_ros.sim.loop import ClosedLoop
    from autopilot_ros.sim.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument('--url', help='the Signal K server, e.g. ws://localhost:3000')
    where.add_argument('--local-server', action='store_true',
                       help='start a throwaway signalk-server on loopback and feed it')
    parser.add_argument('--token', default='', help='a token that may write')
    parser.add_argument('--scenario', default='beam_reach', choices=sorted(SCENARIOS))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--real-time-factor', type=float, default=1.0)
    parser.add_argument('--duration', type=float, default=None,
                        help='sim seconds (default: the scenario)')
    args = parser.parse_args(argv)
    if not args.real_time_factor > 0.0:
        parser.error('--real-time-factor must be > 0')

    server = None
    url = args.url
    if args.local_server:
        from autopilot_ros.instruments.signalk_server import (
            LocalSignalKServer,
            SignalKServerUnavailable,
        )
        try:
            server = LocalSignalKServer(pathlib.Path(tempfile.mkdtemp(prefix='signalk-')),
                                        sample=None)
            server.start()
        except (SignalKServerUnavailable, RuntimeError) as exc:
            print(f'signalk_out: {exc}', file=sys.stderr)
            return 2
        url = server.url
        print(f'signalk-server at {url} (config {server.config_dir})', flush=True)
    scenario = SCENARIOS[args.scenario]
    expert = ExpertHelmsman(args.seed, imperfection=0.3)
    loop = ClosedLoop(scenario, args.seed, rate_hz=10.0,
                      steer=lambda sim, target, samples, now: expert.command(
                          sim, scenario.mode, target))
    pending: list[SensorSample] = []
    loop.sink = pending.append
    epoch = time.time()
    duration = scenario.duration_s if args.duration is None else args.duration
    sent = 0
    try:
        with SignalKFeed(url, args.token) as feed:
            start = time.monotonic()
            while not loop.done and loop.sim.time < duration:
                loop.tick()
                delta = samples_to_delta(pending, epoch=epoch)
                pending.clear()
                if delta is not None:
                    feed.send(delta)
                    sent += 1
                lag = loop.sim.time / args.real_time_factor - (time.monotonic() - start)
                if lag > 0:
                    time.sleep(lag)
                if sent and sent % 100 == 0:
                    print(f'\rsim {loop.sim.time:6.1f} s, {sent} deltas', end='', flush=True)
    except KeyboardInterrupt:
        pass
    except (OSError, TimeoutError, WebSocketException) as exc:
        print(f'\nsignalk_out: {url}: {exc}', file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.close()
            shutil.rmtree(server.config_dir, ignore_errors=True)
    print(f'\nsent {sent} deltas over {loop.sim.time:.1f} sim s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
