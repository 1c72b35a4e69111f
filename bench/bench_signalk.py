"""Benchmark the Signal K source: delta parsing throughput and latency through a real server.

Prints one table:
- parse: deltas per second through `DeltaParser.parse` (one core, this process), for the
  single-value deltas signalk-server sends a subscriber, for the sim's multi-sample deltas
  and for the encoder that makes them;
- latency: a delta written into a real signalk-server (`make signalk-server`) over its
  WebSocket, as a sensor writes, until `SignalKSource` emits the reading (p50, p99, max),
  at a steady rate for a few seconds. Both ends are this process's clocks.
Run with `make bench`; absolute figures depend on the machine (and on its load).
"""

import argparse
import json
import pathlib
import sys
import tempfile
import threading
import time

import numpy as np

from autopilot_ros.instruments.readings import RudderReading
from autopilot_ros.instruments.signalk import DeltaParser, SignalKSource
from autopilot_ros.samples import HeadingSample, ImuSample, RudderSample, SpeedSample, WindSample
from autopilot_ros.sim.signalk_out import RUDDER_MAX_RAD, SignalKFeed, samples_to_delta

SELF = 'vessels.urn:mrn:signalk:uuid:c0d79334-4e25-4245-8892-54e8ccc8021d'


def server_deltas(n: int) -> list[str]:
    """What a subscriber gets: one path per delta, as signalk-server splits them."""
    rng = np.random.default_rng(0)
    paths = [('navigation.headingMagnetic', lambda: float(rng.uniform(0, 6.28))),
             ('navigation.rateOfTurn', lambda: float(rng.normal(0, 0.05))),
             ('navigation.attitude', lambda: {'roll': float(rng.normal(0, 0.2)),
                                              'pitch': float(rng.normal(0, 0.05)),
                                              'yaw': 0.0}),
             ('environment.wind.angleApparent', lambda: float(rng.uniform(-3, 3))),
             ('environment.wind.speedApparent', lambda: float(rng.uniform(0, 15))),
             ('navigation.speedThroughWater', lambda: float(rng.uniform(0, 4))),
             ('steering.rudderAngle', lambda: float(rng.uniform(-0.5, 0.5)))]
    out = []
    for k in range(n):
        path, value = paths[k % len(paths)]
        ts = f'2026-01-01T00:00:{k % 60:02d}.{k % 1000:03d}Z'
        out.append(json.dumps({'context': SELF, 'updates': [{
            'source': {'label': 'n2k', 'type': 'NMEA2000', 'pgn': 130306, 'src': '115'},
            '$source': 'n2k.115', 'timestamp': ts,
            'values': [{'path': path, 'value': value()}]}]}))
    return out


def sim_batches(n: int) -> list[list]:
    rng = np.random.default_rng(1)
    batches = []
    for k in range(n):
        t = k * 0.1
        batches.append([
            ImuSample(t, *rng.normal(0, 0.05, 5), 0.1, 0.0, 9.8),
            HeadingSample(t + 0.01, float(rng.uniform(0, 6.28))),
            WindSample(t + 0.02, float(rng.uniform(-3, 3)), 7.0),
            SpeedSample(t + 0.03, 3.0),
            RudderSample(t + 0.04, float(rng.uniform(-1, 1)))])
    return batches


def rate(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def latency(n: int, hz: float) -> tuple[np.ndarray, dict]:
    """Seconds from feed.send() to the source's emit, for n rudder deltas at hz."""
    from autopilot_ros.instruments.signalk_server import LocalSignalKServer

    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    lock = threading.Lock()

    def emit(batch):
        now = time.perf_counter()
        for reading in batch:
            if isinstance(reading, RudderReading):
                with lock:
                    got.setdefault(round(reading.angle / RUDDER_MAX_RAD * 1e4), now)

    with LocalSignalKServer(pathlib.Path(tempfile.mkdtemp(prefix='signalk-bench-')),
                            sample=None) as server:
        source = SignalKSource(server.url)
        stop = threading.Event()
        thread = threading.Thread(target=source.run, args=(emit, stop), daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not source.stats.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the subscription is in
        with SignalKFeed(server.url) as feed:
            start = time.perf_counter()
            for k in range(1, n + 1):
                delta = samples_to_delta([RudderSample(k, k * 1e-4)], epoch=time.time())
                target = start + k / hz
                time.sleep(max(0.0, target - time.perf_counter()))
                sent[k] = time.perf_counter()
                feed.send(delta)
            time.sleep(1.0)
        stop.set()
        thread.join(timeout=10)
        stats = source.stats
    lat = np.array([got[k] - sent[k] for k in sent if k in got])
    return lat, {'lost': n - len(lat), 'parse_errors': stats.parse_errors,
                 'reconnects': stats.reconnects}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--deltas', type=int, default=50000, help='deltas parsed per case')
    parser.add_argument('--latency-n', type=int, default=400)
    parser.add_argument('--latency-hz', type=float, default=50.0)
    args = parser.parse_args()

    rows = []
    deltas = server_deltas(args.deltas)
    parse = DeltaParser().parse
    rows.append(('parse, server deltas (1 path each)',
                 f'{rate(lambda d: parse(d, 0.0), deltas):,.0f} deltas/s', ''))
    batches = sim_batches(args.deltas // 5)
    texts = [samples_to_delta(b) for b in batches]
    parse = DeltaParser().parse
    rows.append(('parse, sim deltas (5 samples, 7 paths)',
                 f'{rate(lambda d: parse(d, 0.0), texts):,.0f} deltas/s', ''))
    rows.append(('encode, sim deltas (samples_to_delta)',
                 f'{rate(samples_to_delta, batches):,.0f} deltas/s', ''))
    try:
        lat, info = latency(args.latency_n, args.latency_hz)
    except Exception as exc:  # no Node, no server: the parse figures still stand
        rows.append(('latency via signalk-server', f'not measured: {exc}', ''))
    else:
        ms = lat * 1e3
        rows.append((f'send -> reading via signalk-server, {args.latency_hz:g} Hz',
                     f'p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, '
                     f'max {ms.max():.2f} ms', f'n={len(ms)}, lost {info["lost"]}, '
                     f'parse errors {info["parse_errors"]}, reconnects {info["reconnects"]}'))
    width = max(len(r[0]) for r in rows)
    print(f'{"Signal K source":<{width}}  result')
    print('-' * (width + 60))
    for name, value, note in rows:
        print(f'{name:<{width}}  {value}' + (f'  ({note})' if note else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
