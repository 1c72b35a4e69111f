"""sim_node: the boat simulator on ROS 2 topics, with /clock, faster than real time.

Publishes every sensor topic of docs/design.md stamped with simulated time, plus /clock, and
steers the simulated rudder with `rudder_command`. It runs one or more scenarios back to
back, sets the autopilot's mode and target for each (like a crew member at the pilot's
keypad), and at the end writes the truth-based summary (JSON) and a trace PNG.

With `lockstep`, the simulator never runs more than `lockstep_lead` sim seconds ahead of
the last rudder command it received. Faster than real time on a loaded machine, the
pilot's processing otherwise falls behind the simulated clock and it steers on stale
inputs; in lockstep it sees the boat as it would at sea, and real_time_factor becomes a
cap on the speed. If the pilot stays silent for `lockstep_timeout` wall seconds, the
simulator runs free (and says so) until a command arrives again.

With `nmea.tcp_port` (and/or `nmea.udp`) the sensors also go out as NMEA 0183 sentences
(sim/nmea_out.py), served like a multiplexer; `nmea.only` leaves the ROS sensor topics to
instruments_node, so the pilot sees the boat through the bridge as it would at sea.
With `signalk.url` they also go as Signal K deltas to that server (sim/signalk_out.py), written
as a Signal K sensor writes them; `signalk.only` likewise leaves the topics to the bridge.
The simulator does not start the server, as on a boat neither the sensors nor the pilot own
it: whoever starts the run does (demo.py; the launch file's throwaway server process).

With `helmsman:=expert` the simulator's expert helmsman steers and `rudder_command` only
paces lockstep: run the autopilot with `hand_steering:=true` and record, and you have the
bags a sailor brings home from a day of hand steering, to practise the training workflow.
"""

import json
import math
import os
import signal
import time

from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParametersAtomically
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time
from rosgraph_msgs.msg import Clock as ClockMsg

from autopilot_ros.inputs import INPUTS, input_of
from autopilot_ros.msg import RudderCommand
from autopilot_ros.parameter_errors import parameter_error_message
from autopilot_ros.ros_messages import BASE_FRAME, message_class
from autopilot_ros.samples import SensorSample
from autopilot_ros.sim.boats import boat_by_name
from autopilot_ros.sim.evaluate import plot_traces, summarize
from autopilot_ros.sim.helmsman import ExpertHelmsman
from autopilot_ros.sim.loop import ClosedLoop
from autopilot_ros.sim.nmea_out import NmeaTcpServer, NmeaUdpSender, encode
from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.sim.signalk_out import SignalKWriter, samples_to_delta
from autopilot_ros.sim.simulator import Simulator

STEP = 0.05  # simulated seconds per wall-timer tick (20 Hz /clock)


def _stamp(t: float):
    return Time(nanoseconds=int(round(t * 1e9))).to_msg()


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('boat_sim', **kwargs)
        self.declare_parameter('scenario', 'beam_reach')  # comma-separated list allowed
        self.declare_parameter('seed', 0)
        # After the last scenario: false = write the summary and exit (make demo, tests);
        # true = sail the list again with the next seed, until stopped (ros2 launch sim:=true:
        # a pilot on a frozen clock would otherwise go silent).
        self.declare_parameter('repeat', False)
        self.declare_parameter('real_time_factor', 1.0)
        self.declare_parameter('engage_autopilot', True)
        self.declare_parameter('autopilot_node', 'autopilot')
        self.declare_parameter('summary_path', '')  # write JSON + PNG here when done
        self.declare_parameter('pilot_label', 'autopilot')
        self.declare_parameter('lockstep', False)
        self.declare_parameter('lockstep_lead', 0.2)  # sim s ahead of the last command
        self.declare_parameter('lockstep_timeout', 2.0)  # wall s without a command
        self.declare_parameter('helmsman', 'autopilot')  # who steers: rudder_command, 'expert'
        self.declare_parameter('helmsman_imperfection', 0.3)  # 0 = flawless expert
        # The boat sailed: a built-in one by name (reference, a held-out boat, family_<seed>)
        # or, when boat_file is set, a boat file (autopilot-train identify writes one).
        self.declare_parameter('boat', 'reference')
        self.declare_parameter('boat_file', '')
        # NMEA 0183 out (sim/nmea_out.py): a TCP server (-1: none, 0: any free port) and/or
        # UDP datagrams to 'host:port'; `nmea.only`: no ROS sensor topics, the bridge's job.
        self.declare_parameter('nmea.tcp_port', -1)
        self.declare_parameter('nmea.tcp_host', '127.0.0.1')
        self.declare_parameter('nmea.udp', '')
        self.declare_parameter('nmea.only', False)
        self.declare_parameter('nmea.rudder_full_scale_deg', 35.0)
        # Signal K out (sim/signalk_out.py): deltas written to this server ('' none), with a
        # token that may write if its security is on; `signalk.only` as `nmea.only`.
        self.declare_parameter('signalk.url', '')
        self.declare_parameter('signalk.token', '')
        self.declare_parameter('signalk.only', False)
        names = [s.strip() for s in self.get_parameter('scenario').value.split(',') if s.strip()]
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown or not names:
            raise ValueError(f'unknown scenario(s) {unknown}; choose from {sorted(SCENARIOS)}')
        self.queue = names
        self.scenario_names = list(names)
        self.seed = int(self.get_parameter('seed').value)
        rtf = float(self.get_parameter('real_time_factor').value)
        if not 0.01 <= rtf <= 1000.0:
            raise ValueError(f'real_time_factor {rtf} not in [0.01, 1000]')
        self.lockstep = bool(self.get_parameter('lockstep').value)
        self.lockstep_lead = float(self.get_parameter('lockstep_lead').value)
        self.lockstep_timeout = float(self.get_parameter('lockstep_timeout').value)
        if not STEP <= self.lockstep_lead <= 10.0 or not 0.1 <= self.lockstep_timeout <= 60.0:
            raise ValueError(f'lockstep_lead must be in [{STEP}, 10] s and lockstep_timeout '
                             'in [0.1, 60] s')
        self.helmsman = self.get_parameter('helmsman').value
        if self.helmsman not in ('autopilot', 'expert'):
            raise ValueError(f"helmsman must be 'autopilot' (rudder_command steers) or "
                             f"'expert', not {self.helmsman!r}")
        self.imperfection = float(self.get_parameter('helmsman_imperfection').value)
        if not 0.0 <= self.imperfection <= 1.0:
            raise ValueError(f'helmsman_imperfection {self.imperfection} not in [0, 1]')
        boat_file = str(self.get_parameter('boat_file').value).strip()
        self.boat = boat_by_name(boat_file or str(self.get_parameter('boat').value))
        self.nmea_outs = self._nmea_outputs()
        self.nmea_only = bool(self.get_parameter('nmea.only').value)
        if self.nmea_only and not self.nmea_outs:
            raise ValueError('nmea.only needs nmea.tcp_port or nmea.udp')
        self.rudder_full_scale_deg = float(self.get_parameter('nmea.rudder_full_scale_deg').value)
        self.signalk = self._signalk_output()
        self.signalk_only = bool(self.get_parameter('signalk.only').value)
        if self.signalk_only and self.signalk is None:
            raise ValueError('signalk.only needs signalk.url')
        self._signalk_batch: list[SensorSample] = []
        self._epoch = time.time()  # the deltas' timestamps: this wall time + sim time
        self.last_command_stamp = 0.0  # sim time (with offset) of the newest command
        self._waiting_since: float | None = None
        self._free_running = False
        self.offset = 0.0  # sim time at which the current scenario started
        self.results = []
        self.finished = False
        self.pubs = {spec.name: self.create_publisher(message_class(spec.msg_type), spec.name,
                                                      qos_profile_sensor_data)
                     for spec in INPUTS}
        self.clock_pub = self.create_publisher(ClockMsg, '/clock', 10)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.command = 0.0
        self.last_policy = None
        self.model_ticks = 0
        self.ticks_seen = 0
        self.create_subscription(RudderCommand, 'rudder_command', self._on_command, reliable)
        pilot = self.get_parameter('autopilot_node').value
        # Mode and target in one atomic request: the pilot reads a mode change that comes
        # alone as 'keep the current course' (what a sailor at the keypad wants). Without
        # engage_autopilot no client at all: under SROS2 only the helm may call the
        # autopilot's services, and the simulator's enclave may not create one
        # (security/bench.policy.xml).
        self.param_client = self.create_client(
            SetParametersAtomically, f'{pilot}/set_parameters_atomically') \
            if self.get_parameter('engage_autopilot').value else None
        self._start_scenario()
        self.create_timer(STEP / rtf, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _nmea_outputs(self) -> list:
        outs = []
        port = int(self.get_parameter('nmea.tcp_port').value)
        if port >= 0:
            server = NmeaTcpServer(self.get_parameter('nmea.tcp_host').value, port)
            self.get_logger().info(f'NMEA 0183 on TCP port {server.port}')
            outs.append(server)
        udp = str(self.get_parameter('nmea.udp').value).strip()
        if udp:
            host, _, udp_port = udp.rpartition(':')
            if not host or not udp_port.isdigit():
                raise ValueError(f"nmea.udp {udp!r} is not 'host:port'")
            outs.append(NmeaUdpSender(host, int(udp_port)))
            self.get_logger().info(f'NMEA 0183 as UDP datagrams to {udp}')
        return outs

    def _signalk_output(self) -> SignalKWriter | None:
        url = str(self.get_parameter('signalk.url').value).strip()
        if not url:
            return None
        writer = SignalKWriter(url, str(self.get_parameter('signalk.token').value),
                               log=lambda line: self.get_logger().info(f'Signal K: {line}'))
        self.get_logger().info(f'Signal K deltas to {writer.url}')
        return writer

    def destroy_node(self) -> None:
        for out in getattr(self, 'nmea_outs', ()):  # also when __init__ stopped early
            out.close()
        if getattr(self, 'signalk', None) is not None:
            self.signalk.close()
            w = self.signalk
            self.get_logger().info(f'Signal K: {w.sent} deltas written, {w.dropped} dropped '
                                   f'while not connected, {w.failures} connection failures')
        super().destroy_node()

    def _start_scenario(self) -> None:
        self.scenario = SCENARIOS[self.queue.pop(0)]
        self.loop = ClosedLoop(self.scenario, self.seed, rate_hz=1.0 / STEP, steer=self._steer,
                               sink=self._publish, params=self.boat.params,
                               sensors=self.boat.sensors)
        self.target = self.loop.target
        self.expert = (ExpertHelmsman(self.seed, imperfection=self.imperfection,
                                      rate_hz=1.0 / STEP)
                       if self.helmsman == 'expert' else None)
        self.model_ticks = self.ticks_seen = 0
        self._set_autopilot(self.scenario.mode, self.target)
        self.get_logger().info(f'scenario {self.scenario.name} (seed {self.seed}, boat '
                               f'{self.boat.name}): {self.scenario.description}')

    def _set_autopilot(self, mode: str, target: float) -> None:
        # Started without engage_autopilot there is no client: switching it on later does
        # nothing (switching it off does).
        if self.param_client is None or not self.get_parameter('engage_autopilot').value:
            return
        request = SetParametersAtomically.Request(parameters=[
            ParameterMsg(name='mode', value=ParameterValue(
                type=ParameterType.PARAMETER_STRING, string_value=mode)),
            ParameterMsg(name='target', value=ParameterValue(
                type=ParameterType.PARAMETER_DOUBLE, double_value=float(target)))])
        if self.param_client.service_is_ready():
            self.param_client.call_async(request)
            self._pending = None
        else:
            self._pending = (mode, target)

    def _on_command(self, msg: RudderCommand) -> None:
        if self.expert is None:
            # Straight to the rudder, as a servo driver would: the next step uses it.
            self.command = msg.command if msg.engaged else 0.0
            self.loop.sim.set_rudder_command(self.command)
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        self.last_command_stamp = max(self.last_command_stamp, stamp)
        if self._free_running:
            self._free_running = False
            self.get_logger().info('rudder_command is back: lockstep again')
        self.ticks_seen += 1
        self.model_ticks += msg.policy == RudderCommand.POLICY_MODEL

    def _steer(self, sim: Simulator, target: float, samples: list, now: float) -> float:
        """The loop's steering callback: the expert, or the autopilot's latest command."""
        if target != self.target:
            self.target = target
            self._set_autopilot(self.scenario.mode, target)
        if self.expert is not None:
            self.command = self.expert.command(sim, self.scenario.mode, target)
        return self.command

    def _tick(self) -> None:
        if self.finished:
            return
        if getattr(self, '_pending', None) and self.param_client.service_is_ready():
            self._set_autopilot(*self._pending)
        if self.lockstep and not self._may_advance():
            return
        self.loop.tick()
        if self.signalk is not None and self._signalk_batch:
            # One delta per step, as one instrument message; stamped in this run's sim time.
            delta = samples_to_delta(self._signalk_batch, epoch=self._epoch + self.offset)
            self._signalk_batch.clear()
            if delta is not None:
                self.signalk.send(delta)
        self.clock_pub.publish(ClockMsg(clock=_stamp(self.offset + self.loop.sim.time)))
        if self.loop.done:
            self._finish_scenario()

    def _may_advance(self) -> bool:
        """Lockstep: step only while the pilot's last command is recent in sim time."""
        ahead = self.offset + self.loop.sim.time + STEP - self.last_command_stamp
        if ahead <= self.lockstep_lead + 1e-9 or self._free_running:
            self._waiting_since = None
            return True
        wall = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = wall
        elif wall - self._waiting_since > self.lockstep_timeout:
            self._free_running = True
            self.get_logger().warning(
                f'no rudder_command for {self.lockstep_timeout:g} s: running free until the '
                'pilot answers')
            return True
        return False

    def _finish_scenario(self) -> None:
        label = 'expert helmsman' if self.expert else self.get_parameter('pilot_label').value
        trace = self.loop.trace()
        result = summarize(pilot=label, scenario=self.scenario.name, seed=self.seed,
                           t=trace['t'], err=trace['err'], rudder=trace['rudder'],
                           changes=self.loop.changes, model_ticks=None, trace=trace,
                           boat=self.boat.name)
        if self.ticks_seen and self.expert is None:
            result.fallback_frac = 1.0 - self.model_ticks / self.ticks_seen
        self.results.append(result)
        self.get_logger().info(
            f'{self.scenario.name}: RMS error {result.rms_deg:.1f} deg, max '
            f'{result.max_deg:.1f} deg, rudder travel {result.rudder_travel_per_min:.1f}/min')
        self.offset += self.loop.sim.time + STEP
        if not self.queue and self.get_parameter('repeat').value:
            self._write_summary()
            self.queue = list(self.scenario_names)
            self.seed += 1
            self.get_logger().info(f'all scenarios sailed: again with seed {self.seed}')
        if self.queue:
            self._start_scenario()
        else:
            self.finished = True
            self._write_summary()

    def _write_summary(self) -> None:
        path = self.get_parameter('summary_path').value
        if not path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        rows = [{k: v for k, v in vars(r).items() if k != 'trace'} for r in self.results]
        png = os.path.splitext(path)[0] + '.png'
        plot_traces(self.results, png)
        with open(path, 'w') as f:
            json.dump({'results': rows, 'plot': png}, f, indent=1,
                      default=lambda x: None if isinstance(x, float) and math.isnan(x) else x)

    def _publish(self, sample: SensorSample) -> None:
        """The loop's sink: one sample on its topic, stamped in this run's sim time."""
        if self.nmea_outs:
            lines = encode(sample, self.rudder_full_scale_deg)
            for out in self.nmea_outs:
                out.send(lines)
        if self.signalk is not None:
            self._signalk_batch.append(sample)
        if self.nmea_only or self.signalk_only:
            return
        spec = input_of(sample)
        pub = self.pubs[spec.name]
        msg = pub.msg_type()
        spec.fill_msg(msg, sample)
        msg.header.stamp = _stamp(self.offset + sample.stamp)
        msg.header.frame_id = BASE_FRAME
        pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    # SIGINT/SIGTERM only ask the loop to stop, so the node shuts down in order, with no
    # traceback and exit status 0 (rclpy's own handlers tear the context down under it).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda received, _frame: stop.append(received))
    try:
        node = SimNode()
    except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
        print(f'sim_node: {parameter_error_message(exc)}', flush=True)
        rclpy.shutdown()
        raise SystemExit(2) from None
    except ValueError as exc:
        print(f'sim_node: {exc}')
        rclpy.shutdown()
        raise SystemExit(2) from None
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not node.finished and not stop:
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        if stop:
            node.get_logger().info(f'{signal.Signals(stop[0]).name} received: stopping')
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
