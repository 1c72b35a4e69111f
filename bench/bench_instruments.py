"""Benchmark the instrument bridges: parser throughput and sentence-to-topic latency.

Prints two tables:
- each parser's throughput (messages parsed per second, one core, pure Python): NMEA 0183
  sentences through Nmea0183Parser (framing, checksum, pynmea2, fields, checks), and NMEA
  2000 frames through Nmea2000Decoder (single-frame PGNs, and a fast packet's 3 frames),
  and the whole bridge (parse + readings to samples);
- the end-to-end latency from a sentence written to a TCP socket to its message arriving
  on the `heading` topic, through the installed instruments_node process (p50, p99, max).
Run with `make bench`; figures depend on the machine and its load.
"""

import argparse
import math
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

import can
import numpy as np

from autopilot_ros.instruments.bridge import Bridge
from autopilot_ros.instruments.nmea0183 import Nmea0183Parser
from autopilot_ros.instruments.nmea2000 import Nmea2000Decoder, can_id, fast_packet_frames
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

    def frame(pgn, payload):
        return can.Message(arbitration_id=can_id(pgn, 35), data=payload, is_extended_id=True)
    import struct
    singles = [frame(127250, struct.pack('<BHhhB', 0, 10000, 0x7FFF, 0x7FFF, 0xFD)),
               frame(127251, struct.pack('<BiBBB', 0, 1000, 255, 255, 255)),
               frame(127257, struct.pack('<BhhhB', 0, 0x7FFF, 100, 200, 255)),
               frame(130306, struct.pack('<BHHBBB', 0, 500, 10000, 0xFA, 255, 255)),
               frame(128259, struct.pack('<BHHBBB', 0, 312, 0xFFFF, 0, 255, 255)),
               frame(127245, struct.pack('<BBhhBB', 0, 255, 0x7FFF, -1745, 255, 255))] * 50
    decoder = Nmea2000Decoder()

    def decode_all():
        for f in singles:
            decoder.decode(f, 1.0)
    rows.append(('NMEA 2000 single-frame PGNs (6 kinds)',
                 throughput(decode_all, len(singles), seconds)))
    payload = struct.pack('<BBHHHHHH', 0xC0, 0, 10000, 200, 15000, 321, 0xFFFF, 0xFFFF)
    fast = [frame(130577, f) for s in range(8) for f in fast_packet_frames(payload, s)] * 20

    def decode_fast():
        for f in fast:
            decoder.decode(f, 1.0)
    rows.append(('NMEA 2000 fast-packet frames (130577, 3 per PGN)',
                 throughput(decode_fast, len(fast), seconds)))
    return rows


def bench_latency(count: int, rate_hz: float) -> tuple[np.ndarray, int]:
    """Seconds from sendall() of an HDM sentence to its `heading` message in a subscriber."""
    from ament_index_python.packages import get_package_prefix
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data

    from autopilot_ros.isolation import isolate_dds
    from autopilot_ros.msg import Heading

    isolate_dds()
    server = socket.create_server(('127.0.0.1', 0))
    port = server.getsockname()[1]
    exe = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros/instruments_node'
    proc = subprocess.Popen([str(exe), '--ros-args', '-p', 'source:=nmea0183',
                             '-p', f'nmea0183.port:={port}'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    node = Node('bench_instruments')
    arrivals: dict[int, float] = {}
    # The heading in hundredths of a degree numbers the sentence (0..35999).
    node.create_subscription(
        Heading, 'heading',
        lambda m: arrivals.setdefault(round(math.degrees(m.heading) * 10), time.perf_counter()),
        qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [executor.spin_once(timeout_sec=0.05)
                                            for _ in iter(stop.is_set, True)], daemon=True)
    spin.start()
    sent: dict[int, float] = {}
    try:
        conn, _ = server.accept()
        # Wait until the node's publisher and our subscription have matched.
        warm = 0
        while not arrivals and warm < 200:
            conn.sendall(sentence('HCHDM,359.9,M').encode())
            time.sleep(0.05)
            warm += 1
        arrivals.clear()
        period = 1.0 / rate_hz
        for k in range(count):
            tag = k % 3000
            line = sentence(f'HCHDM,{tag / 10:.1f},M').encode()
            sent[tag] = time.perf_counter()
            conn.sendall(line)
            time.sleep(period)
        time.sleep(0.5)
        conn.close()
    finally:
        stop.set()
        spin.join(timeout=2)
        proc.terminate()
        proc.wait(timeout=10)
        node.destroy_node()
        rclpy.shutdown()
        server.close()
    lat = np.array([arrivals[t] - sent[t] for t in sent if t in arrivals])
    return lat, len(sent) - len(lat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=2.0, help='per throughput row')
    parser.add_argument('--count', type=int, default=1000, help='sentences for the latency')
    parser.add_argument('--rate', type=float, default=50.0, help='sentences per second')
    args = parser.parse_args()
    print(f'Instrument bridges (python {sys.version.split()[0]}, '
          f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "-")})\n')
    print('| parser | messages / s |\n|---|---|')
    for name, rate in bench_parsers(args.seconds):
        print(f'| {name} | {rate:,.0f} |')
    lat, lost = bench_latency(args.count, args.rate)
    ms = lat * 1e3
    print(f'\nSentence written to TCP -> message on `heading` (instruments_node process, '
          f'{args.count} sentences at {args.rate:g} Hz)\n')
    print('| p50 ms | p99 ms | max ms | lost |\n|---|---|---|---|')
    print(f'| {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} | {ms.max():.2f} '
          f'| {lost} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
