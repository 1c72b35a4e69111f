"""Benchmark the instrument bridges: parser throughput and input-to-topic latency.

Prints two tables:
- each parser's throughput (messages parsed per second, one core, pure Python): NMEA 0183
  sentences through Nmea0183Parser (framing, checksum, pynmea2, fields, checks), NMEA 2000
  frames through Nmea2000Decoder (single-frame PGNs, and a fast packet's 3 frames), Signal K
  deltas through DeltaParser, and the whole bridge (parse + readings to samples);
- for each bridge, the end-to-end latency from the input leaving this process to its message
  arriving here on the `heading` topic, through the installed instruments_node process over
  DDS (p50, p99, max, lost): an NMEA 0183 sentence written to a TCP socket, an NMEA 2000
  127250 frame sent on a CAN bus shared between processes (vcan0, else python-can's
  udp_multicast), a Signal K delta written into a real signalk-server the node subscribes
  to. Every heading carries a number, so each message is matched with what was sent. One
  measuring routine serves all three: a node per bridge runs throughout, and the headings
  go in rounds taken in turn, so a spell of load on a shared machine falls on all alike.
Run with `make bench`; figures depend on the machine and its load (printed).
"""

import argparse
from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass, field
import math
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from autopilot_ros.instruments import nmea2000_out as n2k
from autopilot_ros.instruments.bridge import Bridge
from autopilot_ros.instruments.nmea0183 import Nmea0183Parser
from autopilot_ros.instruments.nmea2000 import Nmea2000Decoder, fast_packet_frames
from autopilot_ros.sim.nmea_out import sentence

MIXED_0183 = [sentence(b) for b in (
    'HCHDG,98.3,2.0,E,12.6,W', 'HCHDM,238.5,M', 'TIROT,-30.0,A', 'WIMWV,214.8,R,10.1,N,A',
    'VWVHW,,T,,M,5.0,N,9.26,K', 'IIRSA,-12.5,A,,V', 'YXXDR,A,4.0,D,PTCH,A,-2.5,D,ROLL',
    'GPGLL,6005.071,N,02332.346,E,095559,A,D')]  # one not read: ignored


def throughput(fn, count: int, seconds: float = 2.0) -> float:
    """Messages per second: fn() handles `count` messages; repeated for `seconds`."""
    fn()  # warm up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += count
    return n / (time.perf_counter() - start)


def bench_parsers(seconds: float) -> list[tuple[str, float]]:
    rows = []
    data = ''.join(MIXED_0183).encode() * 50
    count = len(MIXED_0183) * 50
    parser = Nmea0183Parser()
    rows.append(('NMEA 0183 sentences (8 kinds)', throughput(
        lambda: parser.feed(data, 1.0), count, seconds)))
    bridge = Bridge()

    def parse_and_map():
        for reading in parser.feed(data, 1.0):
            bridge.take(reading)
    rows.append(('NMEA 0183 sentences, parse + bridge to samples',
                 throughput(parse_and_map, count, seconds)))

    singles = [n2k.frame(127250, n2k.heading(1.0)),
               n2k.frame(127251, n2k.rate_of_turn(3.125e-5)),
               n2k.frame(127257, n2k.attitude(roll=0.02, pitch=0.01)),
               n2k.frame(130306, n2k.wind(5.0, 1.0)),
               n2k.frame(128259, n2k.speed(3.12)),
               n2k.frame(127245, n2k.rudder(-0.1745))] * 50
    decoder = Nmea2000Decoder()

    def decode_all():
        for f in singles:
            decoder.decode(f, 1.0)
    rows.append(('NMEA 2000 single-frame PGNs (6 kinds)',
                 throughput(decode_all, len(singles), seconds)))

    def decode_and_map():
        for f in singles:
            for reading in decoder.decode(f, 1.0):
                bridge.take(reading)
    rows.append(('NMEA 2000 single-frame PGNs, decode + bridge to samples',
                 throughput(decode_and_map, len(singles), seconds)))
    fast = [n2k.frame(130577, f) for s in range(8)
            for f in fast_packet_frames(n2k.direction_data(3.21), s)] * 20

    def decode_fast():
        for f in fast:
            decoder.decode(f, 1.0)
    rows.append(('NMEA 2000 fast-packet frames (130577, 3 per PGN)',
                 throughput(decode_fast, len(fast), seconds)))
    # What signalk-server sends a subscriber: one path per delta (bench_signalk.py's mix).
    sys.path.append(str(pathlib.Path(__file__).resolve().parent))  # after: `python -P`
    from bench_signalk import server_deltas

    from autopilot_ros.instruments.signalk import DeltaParser
    deltas = server_deltas(350)
    delta_parser = DeltaParser()

    def parse_deltas():
        for d in deltas:
            delta_parser.parse(d, 1.0)
    rows.append(('Signal K server deltas (7 paths, 1 per delta)',
                 throughput(parse_deltas, len(deltas), seconds)))

    def parse_deltas_and_map():
        for d in deltas:
            for reading in delta_parser.parse(d, 1.0).readings:
                bridge.take(reading)
    rows.append(('Signal K server deltas, parse + bridge to samples',
                 throughput(parse_deltas_and_map, len(deltas), seconds)))
    return rows


@dataclass
class Link:
    """One bridge's input, as the latency routine drives it.

    `send(tag)` sends a heading numbered `tag` (step `step` radians, so the message's
    heading / step is the tag), to a node started with `node_args` and `env`.
    """

    name: str
    path: str  # what the figure spans, for the table
    node_args: list[str]
    send: Callable[[int], None]
    step: float  # rad per tag
    env: dict[str, str] = field(default_factory=dict)
    tags: int = 3600  # headings below 2 pi: tags 0 .. tags - 1


class RowSkipped(Exception):
    """A latency row this machine cannot run (no Node.js, no shared CAN bus): says why."""


@contextlib.contextmanager
def nmea0183_link() -> Iterator[Link]:
    """A TCP server the node connects to (as to a multiplexer); HDM at 0.1 deg."""
    server = socket.create_server(('127.0.0.1', 0))
    server.settimeout(60.0)
    conn: list[socket.socket] = []

    def send(tag: int) -> None:
        if not conn:
            conn.append(server.accept()[0])
        conn[0].sendall(sentence(f'HCHDM,{tag / 10:.1f},M').encode())

    try:
        yield Link('NMEA 0183', 'HDM sentence sendall() on TCP',
                   ['-p', 'source:=nmea0183', '-p', f'nmea0183.port:={server.getsockname()[1]}'],
                   send, math.radians(0.1), tags=3600)
    finally:
        for c in conn:
            c.close()
        server.close()


@contextlib.contextmanager
def nmea2000_link() -> Iterator[Link]:
    """A 127250 frame (magnetic heading, 1e-4 rad) on a bus shared with the node."""
    try:
        bus = n2k.shared_bus()
    except n2k.SharedBusUnavailable as exc:
        raise RowSkipped(str(exc)) from None
    with bus.open() as tx:
        def send(tag: int) -> None:
            tx.send(n2k.frame(127250, n2k.heading(tag * 1e-4)))

        yield Link('NMEA 2000', f'127250 frame send() on {bus.interface} {bus.channel}',
                   bus.node_args(), send, 1e-4, env=bus.env(), tags=62831)


@contextlib.contextmanager
def signalk_link() -> Iterator[Link]:
    """A throwaway signalk-server: deltas written into it, the node subscribed to it."""
    from autopilot_ros.instruments.signalk_server import LocalSignalKServer, node_executable
    from autopilot_ros.samples import HeadingSample
    from autopilot_ros.sim.signalk_out import SignalKFeed, samples_to_delta

    if node_executable() is None:
        raise RowSkipped('Node.js is not installed: the real signalk-server cannot run here')
    with tempfile.TemporaryDirectory(prefix='signalk-bench-') as folder, \
            LocalSignalKServer(pathlib.Path(folder), sample=None) as server, \
            SignalKFeed(server.url) as feed:
        def send(tag: int) -> None:
            feed.send(samples_to_delta([HeadingSample(0.0, tag * 1e-4)], epoch=time.time()))

        yield Link('Signal K', 'delta written into signalk-server (WebSocket)',
                   ['-p', 'source:=signalk', '-p', f'signalk.url:={server.url}'], send, 1e-4,
                   tags=62831)


LINKS = {'nmea0183': nmea0183_link, 'nmea2000': nmea2000_link, 'signalk': signalk_link}


class HeadingProbe:
    """One subscriber node: for each watched topic, when each numbered heading arrived."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        rclpy.init()
        self.node = Node('bench_instruments')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def watch(self, topic: str, step: float) -> dict[int, float]:
        """Tag -> perf_counter() of its first arrival on `topic` (filled as they come)."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from autopilot_ros.msg import Heading

        arrivals: dict[int, float] = {}
        # Best effort, as published, with room: a drop in this probe is not the bridge's.
        self.node.create_subscription(
            Heading, topic,
            lambda msg: arrivals.setdefault(round(msg.heading / step), time.perf_counter()),
            QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT))
        return arrivals

    def _spin(self) -> None:
        while not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        import rclpy
        self.stop.set()
        self.thread.join(timeout=2)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown()


def instruments_node() -> str:
    from ament_index_python.packages import get_package_prefix
    return str(pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros'
               / 'instruments_node')


class Row:
    """One bridge under measurement: its link, its instruments_node process (publishing
    `heading` on a topic of its own), and what was sent and what arrived."""

    def __init__(self, name: str, link: Link, probe: HeadingProbe) -> None:
        self.name, self.link = name, link
        topic = f'/bench_instruments/{name}/heading'
        self.arrivals = probe.watch(topic, link.step)
        self.sent: dict[int, float] = {}
        self.proc = subprocess.Popen(
            [instruments_node(), '--ros-args', *link.node_args, '-r', f'heading:={topic}'],
            env={**os.environ, **link.env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def warm(self) -> None:
        """Until the node is up, reading its input and matched with the probe: a heading
        the measured ones never use (the last tag)."""
        warm = self.link.tags - 1
        deadline = time.monotonic() + 60.0
        while warm not in self.arrivals:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f'{self.link.name}: no heading from instruments_node '
                                   f'(exit code {self.proc.poll()})')
            self.link.send(warm)
            time.sleep(0.05)

    def result(self) -> tuple[np.ndarray, int]:
        arrivals = dict(self.arrivals)
        lat = np.array([arrivals[k] - t for k, t in self.sent.items() if k in arrivals])
        return lat, len(self.sent) - len(lat)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(rows: list[Row], count: int, rate_hz: float, rounds: int,
            progress: 'Progress') -> None:
    """Send `count` numbered headings to every row at `rate_hz`, in `rounds` blocks taken in
    turn, so a spell of load on a shared machine falls on every bridge alike: the one
    measuring routine of all rows. Arrival times fill in as they come."""
    for row in rows:
        if count > row.link.tags - 1:
            raise ValueError(f'{row.name}: at most {row.link.tags - 1} numbered headings')
    done, total = 0, count * len(rows)
    for r in range(rounds):
        block = range(r * count // rounds, (r + 1) * count // rounds)
        for row in rows:
            start = time.perf_counter()
            for i, k in enumerate(block):
                time.sleep(max(0.0, start + i / rate_hz - time.perf_counter()))
                row.sent[k] = time.perf_counter()
                row.link.send(k)
                done += 1
                if done % 25 == 0 or done == total:
                    progress.bar('latency', done, total)
    time.sleep(0.5)  # the last ones arrive


class Progress:
    """A bar on a terminal, lines otherwise (as training/train.py's Progress)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def bar(self, label: str, done: int, total: int) -> None:
        if self.tty:
            filled = int(30 * done / max(1, total))
            sys.stderr.write(f'\r{label} [{"#" * filled}{"." * (30 - filled)}] '
                             f'{done}/{total}'.ljust(80))
            sys.stderr.flush()

    def line(self, text: str) -> None:
        if self.tty:
            sys.stderr.write('\r' + ' ' * 80 + '\r')
        sys.stderr.write(text + '\n')
        sys.stderr.flush()


def bench_latency(names: list[str], count: int, rate_hz: float, rounds: int
                  ) -> list[tuple[str, str, np.ndarray | None, int, str]]:
    """(bridge, input, latencies or None, lost, why not measured) per bridge."""
    from autopilot_ros.isolation import isolate_dds

    isolate_dds()
    probe = HeadingProbe()
    progress = Progress()
    out: dict[str, tuple] = {}
    rows: list[Row] = []
    try:
        with contextlib.ExitStack() as stack:
            for name in names:
                try:
                    link = stack.enter_context(LINKS[name]())
                except RowSkipped as exc:
                    out[name] = (name, '', None, count, str(exc))
                    progress.line(f'{name}: not measured: {exc}')
                    continue
                row = Row(name, link, probe)
                stack.callback(row.stop)
                rows.append(row)
            for row in rows:
                row.warm()
                progress.line(f'{row.link.name}: instruments_node up ({row.link.path})')
            progress.line(f'{count} numbered headings to each at {rate_hz:g} Hz, '
                          f'in {rounds} rounds ...')
            measure(rows, count, rate_hz, rounds, progress)
            progress.line('done')
            for row in rows:
                lat, lost = row.result()
                out[row.name] = (row.link.name, row.link.path, lat, lost, '')
    finally:
        probe.close()
    return [out[name] for name in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=2.0, help='per throughput row')
    parser.add_argument('--count', type=int, default=1000, help='headings per latency row')
    parser.add_argument('--rate', type=float, default=50.0, help='headings per second')
    parser.add_argument('--rounds', type=int, default=5,
                        help='blocks per bridge, taken in turn (spreads load spells evenly)')
    parser.add_argument('--bridges', nargs='+', choices=sorted(LINKS), default=list(LINKS),
                        help='latency rows to measure (default: all three)')
    parser.add_argument('--no-throughput', action='store_true', help='latency rows only')
    args = parser.parse_args()
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    print(f'Instrument bridges (python {sys.version.split()[0]}, {os.cpu_count()} cores, '
          f'load average {load}, OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "-")})\n')
    if not args.no_throughput:
        print('| parser | messages / s |\n|---|---|')
        for name, rate in bench_parsers(args.seconds):
            print(f'| {name} | {rate:,.0f} |', flush=True)
    rows = bench_latency(args.bridges, args.count, args.rate, args.rounds)
    print(f'\nInput -> message on `heading` in this process (an instruments_node process per '
          f'bridge, over DDS; {args.count} numbered headings each at {args.rate:g} Hz in '
          f'{args.rounds} rounds taken in turn; load average now {os.getloadavg()[0]:.2f})\n')
    print('| bridge | input | p50 ms | p90 ms | p99 ms | max ms | lost |\n'
          '|---|---|---|---|---|---|---|')
    for name, path, lat, lost, why in rows:
        if lat is None or not len(lat):
            print(f'| {name} | not measured: {why or "nothing arrived"} | | | | | {lost} |')
            continue
        p50, p90, p99 = np.percentile(lat * 1e3, [50, 90, 99])
        print(f'| {name} | {path} | {p50:.2f} | {p90:.2f} | {p99:.2f} | {lat.max() * 1e3:.2f} '
              f'| {lost} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
