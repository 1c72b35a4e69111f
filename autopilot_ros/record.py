"""`autopilot-record`: record the autopilot's topics into an mcap bag, without rosbag2.

The pip route (the ROS 2 wheels from PyPI) has rclpy but no rosbag2, so `ros2 bag record`
is not there. This records the package's topics (the inputs of inputs.py, rudder_command
and autopilot/status) as `ros2 bag record -s mcap` would: the serialised messages as
received, the full message definitions, rosbag2's folder layout. Options follow `ros2 bag
record`'s names (-o, -b/--max-bag-size, -d/--max-bag-duration, --use-sim-time).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from autopilot_ros.bag_recorder import (
    COMPRESSIONS,
    BagRecorder,
    RecordError,
    default_bag_name,
    human_size,
)
from autopilot_ros.inputs import INPUTS
from autopilot_ros.status import OUTPUTS

SIGNAL_POLL = 0.1  # s: how often the main loop looks for Ctrl-C / SIGTERM


def resolve(topic: str, namespace: str) -> str:
    """An absolute topic name: relative names go under the namespace ('/' by default)."""
    topic = topic.strip()
    if not topic or topic == '/':
        raise RecordError(f'{topic!r} is not a topic name')
    if topic.startswith('/'):
        return topic
    ns = namespace.strip('/')
    return f'/{ns}/{topic}' if ns else f'/{topic}'


def package_topics(namespace: str = '') -> list[tuple[str, str, bool]]:
    """(absolute name, type, reliable) of every topic the package reads or writes."""
    rows = [(resolve(i.name, namespace), i.msg_type, False) for i in INPUTS]
    rows += [(resolve(o.name, namespace), o.msg_type, True) for o in OUTPUTS]
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='autopilot-record',
        description='Record the autopilot topics from DDS into a rosbag2 mcap bag (the '
                    'serialised messages as received), without rosbag2. Ctrl-C or SIGTERM '
                    'closes the bag; after a power cut what was flushed stays readable.')
    p.add_argument('topics', nargs='*', metavar='TOPIC',
                   help="record these topics instead of the package's (relative names go "
                        'under --namespace)')
    p.add_argument('--extra', nargs='+', default=[], metavar='TOPIC',
                   help='record these topics too (their type comes from their publisher)')
    p.add_argument('-n', '--namespace', default='',
                   help='the namespace the autopilot runs in (its launch argument)')
    p.add_argument('-o', '--output', default=None,
                   help='bag folder to create (default: autopilot_YYYY_MM_DD-HH_MM_SS)')
    p.add_argument('-b', '--max-bag-size', type=int, default=0, metavar='BYTES',
                   help='start a new file when this one reaches BYTES (0: never)')
    p.add_argument('-d', '--max-bag-duration', type=float, default=0.0, metavar='SECONDS',
                   help='start a new file after SECONDS of messages (0: never)')
    p.add_argument('--flush-interval', type=float, default=1.0, metavar='SECONDS',
                   help='close, write and fsync a chunk this often: a power cut loses at '
                        'most this much (default 1)')
    p.add_argument('--compression', choices=COMPRESSIONS, default='none',
                   help='mcap chunk compression (default none, as ros2 bag record)')
    p.add_argument('--status-interval', type=float, default=1.0, metavar='SECONDS',
                   help='the live line of rates and size (0: quiet)')
    p.add_argument('--use-sim-time', action='store_true',
                   help='stamp messages with /clock time instead of the receive time')
    p.add_argument('--enclave', default='', metavar='ENCLAVE',
                   help='SROS2 enclave, e.g. /autopilot_ros/recorder (read-only: '
                        'security/autopilot_ros.policy.xml); refused unless ROS_SECURITY_* '
                        'enforce security and the keystore has its keys')
    p.add_argument('--list', action='store_true',
                   help='print the topics that would be recorded, and exit')
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        rows = ([(resolve(t, args.namespace), None, False) for t in args.topics]
                if args.topics else package_topics(args.namespace))
        rows += [(resolve(t, args.namespace), None, False) for t in args.extra]
    except RecordError as exc:
        print(f'autopilot-record: {exc}', file=sys.stderr)
        return 2
    known = {name: (msgtype, reliable) for name, msgtype, reliable in
             package_topics(args.namespace)}
    rows = [(name, *known.get(name, (msgtype, reliable))) for name, msgtype, reliable in rows]
    rows = list({r[0]: r for r in rows}.values())
    if args.list:
        for name, msgtype, reliable in rows:
            qos = 'reliable' if reliable else 'best effort'
            print(f'{name}  {msgtype or "(type from its publisher)"}  {qos} until a '
                  'publisher is seen')
        return 0
    if args.enclave:
        from autopilot_ros.launch_config import security_problem
        # An enclave without security enforced would record unsecured and look secured.
        why = security_problem(args.enclave.strip(), os.environ)
        if why:
            print(f'autopilot-record: {why.replace("enclave:=", "--enclave ")}',
                  file=sys.stderr)
            return 2
    try:
        import rclpy  # noqa: F401 - the ROS layer needs it; say so clearly
    except ImportError:
        print('autopilot-record: rclpy is not importable. Source a ROS 2 setup file, or '
              'install the ROS 2 wheels (make setup; source install/env.bash).',
              file=sys.stderr)
        return 2
    output = args.output or default_bag_name()
    try:
        recorder = BagRecorder(output, max_bag_size=args.max_bag_size,
                               max_bag_duration=args.max_bag_duration,
                               flush_interval=args.flush_interval,
                               compression=args.compression).open()
    except RecordError as exc:
        print(f'autopilot-record: {exc}', file=sys.stderr)
        return 2
    return _record(recorder, rows, args)


def _record(recorder: BagRecorder, rows: list, args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from autopilot_ros.record_node import RecorderNode, RecordTopic, WriterThread

    # Our own handlers: rclpy's would shut the context down at once; these let the loop
    # stop the subscriptions first and then close the bag with everything queued.
    enclave = ['--enclave', args.enclave.strip()] if args.enclave.strip() else []
    rclpy.init(args=['--ros-args', *enclave,
                     '-p', f'use_sim_time:={str(args.use_sim_time).lower()}'],
               signal_handler_options=SignalHandlerOptions.NO)
    stop: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop.append(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    writer = WriterThread(recorder, status_interval=args.status_interval)
    writer.start()
    node = RecorderNode([RecordTopic(n, t, r) for n, t, r in rows], writer.put)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print(f'autopilot-record: recording {len(rows)} topics into {recorder.path}',
          file=sys.stderr)
    try:
        while not stop and rclpy.ok() and writer.is_alive():
            executor.spin_once(timeout_sec=SIGNAL_POLL)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        writer.stop()
    why = f' ({stop[0]})' if stop else ''
    print(f'autopilot-record: closed {recorder.path}{why}: {recorder.message_count} messages, '
          f'{human_size(recorder.size)} in {len(recorder.files)} file(s)', file=sys.stderr)
    for error in writer.errors:
        print(f'autopilot-record: {error}', file=sys.stderr)
    return 1 if writer.errors else 0


def entry() -> None:
    sys.exit(main())


if __name__ == '__main__':
    os.environ.setdefault('PYTHONUNBUFFERED', '1')
    entry()
