"""What autopilot-record sustains, and what it costs at the package's normal rates.

The installed `autopilot-record` records from real DDS (loopback, a domain of its own)
while this process publishes. Phase 1: the package's topics at their usual rates (imu
50 Hz, rudder_angle 20, heading, rudder_command and status 10, wind 5, speed 2: 107
messages/s) for 10 s; the recorder's CPU from /proc (user + system, of one core). Phase 2:
one Imu topic (332 bytes, reliable) at rising rates, 3 s each; every message is counted
in the bag, so a shortfall is what the recorder could not keep up with. The publisher
shares the machine's cores with the recorder: the rates reached are a floor.

    python -P bench/bench_record.py
"""

import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import time

from autopilot_ros.isolation import isolate_dds

isolate_dds()

from ament_index_python.packages import get_package_prefix  # noqa: E402
from geometry_msgs.msg import TwistStamped  # noqa: E402
from mcap.reader import make_reader  # noqa: E402
import rclpy  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Imu  # noqa: E402

from autopilot_ros.msg import AutopilotStatus, Heading, RudderAngle, RudderCommand, Wind  # noqa: E402,E501

NORMAL = {'imu': (Imu, 50), 'heading': (Heading, 10), 'wind': (Wind, 5),
          'speed': (TwistStamped, 2), 'rudder_angle': (RudderAngle, 20),
          'rudder_command': (RudderCommand, 10), 'autopilot/status': (AutopilotStatus, 10)}
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TICKS = os.sysconf('SC_CLK_TCK')


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def start_recorder(bag: Path, *topics: str) -> subprocess.Popen:
    exe = Path(get_package_prefix('autopilot_ros')) / 'lib' / 'autopilot_ros' / 'autopilot-record'
    return subprocess.Popen([str(exe), '-o', str(bag), '--status-interval', '0', *topics],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_matched(pubs, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.get_subscription_count() for p in pubs):
        if time.monotonic() > deadline:
            sys.exit('bench_record: the recorder never subscribed')
        time.sleep(0.05)
    time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        sys.exit(f'bench_record: the recorder failed: {err}')


def bag_stats(bag: Path) -> tuple[int, int]:
    count = size = 0
    for path in sorted(bag.glob('*.mcap')):
        size += path.stat().st_size
        with path.open('rb') as fh:
            count += make_reader(fh).get_summary().statistics.message_count
    return count, size


def normal_rates(node: Node, tmp: Path, seconds: float = 10.0) -> list[str]:
    pubs = {name: node.create_publisher(cls, name, RELIABLE if name in
                                        ('rudder_command', 'autopilot/status')
                                        else qos_profile_sensor_data)
            for name, (cls, _) in NORMAL.items()}
    proc = start_recorder(tmp / 'normal')
    wait_matched(pubs.values())
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    sent, step = 0, 0
    while time.monotonic() - t0 < seconds:
        for name, (cls, rate) in NORMAL.items():
            if step % (100 // rate) == 0:
                pubs[name].publish(cls())
                sent += 1
        step += 1
        time.sleep(max(0.0, step * 0.01 - (time.monotonic() - t0)))
    time.sleep(0.5)
    cpu = cpu_seconds(proc.pid) - cpu0
    wall = time.monotonic() - t0
    stop(proc)
    count, size = bag_stats(tmp / 'normal')
    for pub in pubs.values():
        node.destroy_publisher(pub)
    return [f'| normal rates, 7 topics | {sent / seconds:.0f} | {count} of {sent} | '
            f'{100 * cpu / wall:.1f} % | {size / wall / 1000:.1f} kB/s |']


def throughput(node: Node, tmp: Path, rates=(500, 1000, 2000, 4000), seconds=3.0
               ) -> list[str]:
    rows = []
    for rate in rates:
        pub = node.create_publisher(Imu, 'bench_imu', RELIABLE)
        bag = tmp / f'rate{rate}'
        proc = start_recorder(bag, '/bench_imu')  # its type from the publisher
        wait_matched([pub])
        msg = Imu()
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - t0) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                pub.publish(msg)
                sent += 1
            time.sleep(0.001)
        time.sleep(1.0)
        cpu = cpu_seconds(proc.pid) - cpu0
        wall = time.monotonic() - t0
        stop(proc)
        count, size = bag_stats(bag)
        rows.append(f'| Imu, reliable, asked {rate}/s | {sent / seconds:.0f} | '
                    f'{count} of {sent} | {100 * cpu / wall:.1f} % | '
                    f'{size / wall / 1000:.0f} kB/s |')
        node.destroy_publisher(pub)
    return rows


def main() -> None:
    rclpy.init()
    node = Node('bench_record_publisher')
    header = ['| load | published msg/s | recorded | recorder CPU (one core) | bag growth |',
              '|---|---|---|---|---|']
    with tempfile.TemporaryDirectory(prefix='bench_record_') as tmp:
        rows = normal_rates(node, Path(tmp))
        rows += throughput(node, Path(tmp))
    node.destroy_node()
    rclpy.shutdown()
    print('\n'.join(header + rows))


if __name__ == '__main__':
    main()
