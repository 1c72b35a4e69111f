"""make demo: the autopilot node steers the simulated boat over real ROS 2 topics.

Starts the installed sim_node and autopilot_node as two processes (use_sim_time, the
simulator running up to --speed times faster than real time, in lockstep with the
pilot's commands so a busy machine slows the run instead of the pilot), shows a live
one-line status from `autopilot/status`, and ends with the truth-based summary table and
the trace PNG.
"""

import argparse
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import time

from autopilot_ros.isolation import isolate_dds

DEFAULT_SCENARIOS = 'calm_compass,beam_reach,downwind_quartering'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scenarios', default=DEFAULT_SCENARIOS)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--speed', type=float, default=10.0,
                        help='at most this many times faster than real time')
    parser.add_argument('--no-lockstep', action='store_true',
                        help='let the simulator run at --speed even if the pilot lags')
    parser.add_argument('--model', default=None, help='ONNX model (default: the shipped one)')
    parser.add_argument('--out', default='out/demo_summary.json')
    parser.add_argument('--instruments', choices=('ros', 'nmea0183', 'signalk'),
                        default='ros',
                        help='nmea0183: the simulator serves NMEA 0183 over TCP and '
                             'instruments_node bridges it to the pilot, as on a boat; '
                             'signalk: the simulator writes Signal K deltas into a '
                             'throwaway signalk-server (make signalk-server) the bridge reads')
    args = parser.parse_args(argv)
    domain = isolate_dds()

    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    from autopilot_ros.launch_config import shipped_model_path

    share = get_package_share_directory('autopilot_ros')
    lib = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib' / 'autopilot_ros'
    # The demo shows the learned pilot on the yacht it was trained on; a real boat starts
    # with the PID (model_path none), the node's default.
    model = shipped_model_path(share) if args.model is None else \
        os.path.abspath(args.model) if args.model else ''  # '': the PID pilot alone
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if os.path.exists(out):
        os.remove(out)
    label = os.path.basename(model) if model else 'PID (no model shipped)'
    mode = 'free running' if args.no_lockstep else 'lockstep'
    print(f'demo: autopilot ({label}) vs simulated boat, scenarios {args.scenarios}, '
          f'up to {args.speed:g}x real time ({mode}), ROS_DOMAIN_ID={domain}', flush=True)
    # Signal K: the demo starts the server, before either node, and stops it last. It owns
    # every process of the run already; the server is shared by the simulator (writing, as
    # a Signal K sensor does) and the bridge (reading), and on a boat neither owns it either;
    # started first, its URL is known to both from the start and no scenario time is lost
    # while Node.js starts.
    signalk_server = None
    if args.instruments == 'signalk':
        from autopilot_ros.instruments.signalk_server import (
            LocalSignalKServer,
            SignalKServerUnavailable,
        )
        config = pathlib.Path(os.path.splitext(out)[0] + '_signalk')  # its log stays there
        shutil.rmtree(config, ignore_errors=True)  # a fresh server every run
        try:
            signalk_server = LocalSignalKServer(config, sample=None, die_with_parent=True)
            signalk_server.start()
        except (SignalKServerUnavailable, RuntimeError) as exc:
            if signalk_server is not None:
                signalk_server.close()
            print(f'demo: --instruments signalk: {exc}', file=sys.stderr)
            return 2
    try:
        return _run(args, out, model, label, lib, share, signalk_server)
    finally:
        if signalk_server is not None:
            signalk_server.close()


def _run(args: argparse.Namespace, out: str, model: str, label: str, lib: pathlib.Path,
         share: str, signalk_server) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from autopilot_ros.launch_config import SIM_STAMP_TOLERANCE, default_params_file
    from autopilot_ros.msg import AutopilotStatus
    from autopilot_ros.pilot import POLICY_NAMES
    from autopilot_ros.sim.evaluate import RunResult, summary_table
    from autopilot_ros.sim.scenarios import SCENARIOS

    logs = open(os.path.splitext(out)[0] + '.log', 'w')  # noqa: SIM115
    sim_out, bridge = [], []
    fast_retry = ['-p', 'backoff_initial:=0.1', '-p', 'backoff_max:=0.5']
    if signalk_server is not None:
        sim_out = ['-p', f'signalk.url:={signalk_server.url}', '-p', 'signalk.only:=true']
        bridge = [subprocess.Popen(
            [str(lib / 'instruments_node'), '--ros-args', '-p', 'source:=signalk',
             '-p', f'signalk.url:={signalk_server.url}', '-p', 'use_sim_time:=true',
             *fast_retry], stdout=logs, stderr=subprocess.STDOUT)]
        print(f'demo: sensors as Signal K deltas through signalk-server at '
              f'{signalk_server.url} and instruments_node (no accelerations in Signal K: '
              'the PID steers)', flush=True)
    if args.instruments == 'nmea0183':
        import socket
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        sim_out = ['-p', f'nmea.tcp_port:={port}', '-p', 'nmea.only:=true']
        bridge = [subprocess.Popen(
            [str(lib / 'instruments_node'), '--ros-args', '-p', 'source:=nmea0183',
             '-p', f'nmea0183.port:={port}', '-p', 'use_sim_time:=true', *fast_retry],
            stdout=logs, stderr=subprocess.STDOUT)]
        print(f'demo: sensors as NMEA 0183 on TCP port {port} through instruments_node '
              '(no accelerations in NMEA: the PID steers)', flush=True)
    procs = [
        subprocess.Popen([str(lib / 'autopilot_node'), '--ros-args', '--params-file',
                          default_params_file(share), '-p', f"model_path:='{model}'",
                          '-p', f"allowed_model_dirs:=['{os.path.dirname(model) or share}']",
                          '-p', 'use_sim_time:=true',
                          '-p', f'stamp_future_tolerance:={SIM_STAMP_TOLERANCE}'],
                         stdout=logs, stderr=subprocess.STDOUT),
        subprocess.Popen([str(lib / 'sim_node'), '--ros-args', '-p',
                          f'scenario:={args.scenarios}', '-p', f'seed:={args.seed}',
                          '-p', f'real_time_factor:={args.speed}', '-p',
                          f'summary_path:={out}', '-p', f'pilot_label:={label}',
                          '-p', f'lockstep:={str(not args.no_lockstep).lower()}', *sim_out],
                         stdout=logs, stderr=subprocess.STDOUT),
        *bridge,
    ]
    rclpy.init()
    node = Node('demo_monitor')
    last = {}
    node.create_subscription(AutopilotStatus, 'autopilot/status',
                             lambda m: last.update(msg=m),
                             QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    start = time.monotonic()
    try:
        while procs[1].poll() is None and time.monotonic() - start < 600:
            executor.spin_once(timeout_sec=0.1)
            if procs[0].poll() is not None:
                print(f'\ndemo: autopilot_node exited ({procs[0].returncode}); see {logs.name}',
                      file=sys.stderr)
                return 1
            m = last.get('msg')
            if m is not None and sys.stdout.isatty():
                t = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
                err = math.degrees(m.heading_error) if math.isfinite(m.heading_error) else 0
                print(f'\r  sim t {t:6.0f} s  {m.mode:9s} {POLICY_NAMES[m.policy]:7s} '
                      f'error {err:+6.1f} deg  rudder {m.command:+.2f}   ', end='', flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        logs.close()
        node.destroy_node()
        rclpy.shutdown()
    print()
    if not os.path.isfile(out):
        print(f'demo: the simulator did not finish; see {logs.name}', file=sys.stderr)
        return 1
    data = json.load(open(out))
    results = [RunResult(**{k: (math.nan if v is None else v) for k, v in r.items()})
               for r in data['results']]
    print(summary_table(results))
    wall = time.monotonic() - start
    sim_s = sum(SCENARIOS[r.scenario].duration_s for r in results)
    print(f'\n{sim_s:.0f} s of sailing in {wall:.0f} s wall ({sim_s / wall:.1f}x real time, '
          f'startup included); trace plot: {data["plot"]}; node logs: {logs.name}')
    print('Closed-loop comparison with the PID and PD pilots and the expert, on boats the '
          'model was not trained on too: autopilot-eval --pilots pid pd expert '
          'resource/autopilot.onnx --boats reference held_out')
    if model:
        print('This is the model on the reference yacht, one of the boats it was trained on. '
              'On a real boat the node '
              'starts with the PID pilot (model_path:=shipped loads this model): '
              'docs/held_out_boats.md says why.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
