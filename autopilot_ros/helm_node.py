"""helm_node: the helm page in a browser, for a phone on the boat's wifi. Thin ROS layer.

It listens to what a helm station sees (autopilot/status, heading, wind, speed and the
measured rudder), serves the page (helm_server.py, a thread of its own), and turns the
page's buttons into the calls a helm station makes: `autopilot/engage` (SetBool) for
standby and engage, `autopilot/steer` (mode and target in degrees, one atomic change) for
the nudges and the tack. So the autopilot checks, applies and logs them like any other
change (docs/design.md, "Who may steer"); under SROS2 this node runs in the helm enclave.
The rules of the buttons (token, nudges, tack) are in helm.py.
"""

from __future__ import annotations

import asyncio
import math
import pathlib
import signal
import threading
import time

from geometry_msgs.msg import TwistStamped
from rcl_interfaces.msg import ParameterDescriptor
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import SetBool

from autopilot_ros.helm import (
    STATE_SCHEMA,
    Course,
    HelmState,
    Reading,
    Refused,
    TokenGate,
    degrees_in_mode,
    describe,
    nudge,
    status_fields,
    tack,
)
from autopilot_ros.helm_server import HelmServer, tls_context
from autopilot_ros.msg import AutopilotStatus, Heading, RudderAngle, Wind
from autopilot_ros.parameter_errors import parameter_error_message
from autopilot_ros.pilot import POLICY_NAMES
from autopilot_ros.srv import Steer

# After the autopilot accepts a course, the helm works from it rather than from the
# status for this long: a second press a tick later must not start from the old target.
COURSE_HOLD_S = 1.0
SERVICE_TIMEOUT = 3.0  # s: waiting for the autopilot's services to answer
FOXGLOVE_TOPIC = '/autopilot/helm'  # the page's state as a Foxglove channel (JSON)


class HelmNode(Node):
    """The ROS side of the helm page: the state it shows and the calls its buttons make."""

    def __init__(self, **kwargs) -> None:
        super().__init__('helm', **kwargs)
        d = self.declare_parameter
        d('address', '127.0.0.1', ParameterDescriptor(
            read_only=True, description='address to serve on: 127.0.0.1 (this computer), '
            "the boat's own wifi address, or 0.0.0.0 (every network the computer is on: "
            'read the README first)'))
        d('port', 8080, ParameterDescriptor(read_only=True, description='TCP port'))
        d('access_token_file', '', ParameterDescriptor(
            read_only=True, description='file holding the access token (the buttons stay '
            'disabled without one); safer than access_token'))
        d('access_token', '', ParameterDescriptor(
            read_only=True, description='the access token itself; visible to anyone on the '
            'DDS domain (ros2 param get): prefer access_token_file'))
        d('tls_cert', '', ParameterDescriptor(read_only=True, description='HTTPS certificate'))
        d('tls_key', '', ParameterDescriptor(read_only=True, description='HTTPS private key'))
        d('history_s', 300.0, ParameterDescriptor(
            read_only=True, description='seconds of heading error and rudder in the plot'))
        d('rate_hz', 5.0, ParameterDescriptor(read_only=True,
                                              description='page updates per second'))
        d('foxglove_port', 0, ParameterDescriptor(
            read_only=True, description='also offer the page state to Foxglove on this port '
            '(foxglove-sdk WebSocket server, view only, on `address`); 0 = off'))
        p = self.get_parameter
        self._lock = threading.Lock()
        self.state = HelmState(history_s=float(p('history_s').value),
                               sample_period=1.0 / float(p('rate_hz').value))
        self.gate = TokenGate(self._token(p('access_token_file').value,
                                          p('access_token').value))
        self.state.commands_enabled = self.gate.enabled
        if self.gate.enabled:
            self.get_logger().info('helm buttons enabled for whoever enters the access token')
        else:
            self.get_logger().warning(f'helm: {self.gate.problem}')
        self._course: tuple[Course, float] | None = None  # the last course we set, and when
        self._last_course: tuple | None = None  # (mode, target, engaged, policy) last seen

        status_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(AutopilotStatus, 'autopilot/status', self._on_status,
                                 status_qos)
        sensors = qos_profile_sensor_data
        self.create_subscription(Heading, 'heading', self._reading('heading',
                                 lambda m: m.heading), sensors)
        self.create_subscription(Wind, 'wind', self._reading('wind',
                                 lambda m: (m.angle, m.speed)), sensors)
        self.create_subscription(RudderAngle, 'rudder_angle', self._reading('rudder',
                                 lambda m: m.angle), sensors)
        self.create_subscription(TwistStamped, 'speed', self._reading('speed',
                                 lambda m: m.twist.linear.x), sensors)
        self.engage_client = self.create_client(SetBool, 'autopilot/engage')
        self.steer_client = self.create_client(Steer, 'autopilot/steer')

        ssl_context = None
        cert, key = p('tls_cert').value, p('tls_key').value
        if cert or key:
            ssl_context = tls_context(cert, key)
        self.server = HelmServer(self, self.gate, p('address').value, int(p('port').value),
                                 ssl_context=ssl_context, rate_hz=float(p('rate_hz').value),
                                 log=self.get_logger().info)
        self.server.start()
        if p('address').value not in ('127.0.0.1', '::1', 'localhost'):
            self.get_logger().warning(
                f"helm page open to the network on {p('address').value}: anyone who can "
                'reach it sees the boat' + ('' if ssl_context else
                                            ', and the token crosses the wifi unencrypted'))
        self.get_logger().info(f'helm page: {self.server.url}')
        self.foxglove = None  # (server, channel, context) when foxglove_port is set
        if int(p('foxglove_port').value):
            self.foxglove = self._start_foxglove(p('address').value,
                                                 int(p('foxglove_port').value))

    def _start_foxglove(self, address: str, port: int):
        """The same state as the page's, for the Foxglove app: channel FOXGLOVE_TOPIC."""
        try:
            import foxglove
        except ImportError:
            self.get_logger().error('helm: foxglove_port is set but foxglove-sdk is not '
                                    'installed (pip install foxglove-sdk): no Foxglove server')
            return None
        context = foxglove.Context()
        try:
            server = foxglove.start_server(name='autopilot_ros helm', host=address, port=port,
                                           context=context)
        except Exception as exc:  # noqa: BLE001 - the SDK's own error type; the page stays
            self.get_logger().error(f'helm: Foxglove server not started: {exc}')
            return None
        channel = foxglove.Channel(FOXGLOVE_TOPIC, schema=STATE_SCHEMA, context=context)
        self.get_logger().info(f'helm state for Foxglove: ws://{address}:{server.port} '
                               f'({FOXGLOVE_TOPIC}, view only)')
        return server, channel, context  # the context too: the channel closes without it

    def _token(self, path: str, value: str) -> str:
        if path:
            try:
                return pathlib.Path(path).expanduser().read_text().strip()
            except OSError as exc:
                self.get_logger().error(f'helm: access_token_file unreadable: {exc}')
                return ''
        return value

    # -- what the page shows ------------------------------------------------------------
    def _on_status(self, msg: AutopilotStatus) -> None:
        fields = status_fields(msg.mode, msg.engaged, msg.target, msg.target_heading,
                               msg.heading_error, msg.command, msg.raw_command,
                               POLICY_NAMES.get(msg.policy, f'policy {msg.policy}'),
                               msg.reason, msg.model_path, msg.stale_inputs)
        course = (msg.mode, msg.target, msg.engaged, msg.policy)
        with self._lock:
            self.state.status = Reading(fields, time.monotonic())
        if course != self._last_course:
            # A new mode, target, engagement or policy: every page sees it now, not at the
            # next regular update (a press shows within the autopilot's next tick).
            self._last_course = course
            server = getattr(self, 'server', None)
            if server is not None:
                server.poke()

    def _reading(self, name: str, value):
        def callback(msg) -> None:
            v = value(msg)
            finite = all(math.isfinite(x) for x in (v if isinstance(v, tuple) else (v,)))
            if finite:
                with self._lock:
                    setattr(self.state, name, Reading(v, time.monotonic()))
        return callback

    def sample(self, keep: bool = True) -> dict:
        """The page's state now; `keep`: also a point of the rolling plot."""
        with self._lock:
            snap = (self.state.sample if keep else self.state.snapshot)(time.monotonic(),
                                                                        time.time())
        if keep and self.foxglove is not None:
            self.foxglove[1].log(snap, log_time=time.time_ns())
        return snap

    def history(self) -> dict:
        with self._lock:
            return self.state.history_message()

    # -- what the buttons do ------------------------------------------------------------
    def _current_course(self) -> Course | None:
        """The course to nudge from: ours just after we set it, else the status's."""
        with self._lock:
            course = self.state.course()
            alive = self.state.fresh(self.state.status, time.monotonic(), 1.0)
        if self._course is not None and time.monotonic() - self._course[1] < COURSE_HOLD_S:
            return self._course[0]
        return course if alive else None

    async def execute(self, action: str, degrees: float) -> tuple[bool, str]:
        """One button, as the autopilot's services: (accepted, what the pilot now does)."""
        if action in ('engage', 'standby'):
            request = SetBool.Request(data=action == 'engage')
            response = await self._call(self.engage_client, request)
            self._course = None
            if response.success:
                with self._lock:
                    self.state.last_result = response.message
            return response.success, response.message
        course = self._current_course()
        if course is None:
            return False, 'no status from the autopilot: is it running?'
        try:
            if action == 'nudge':
                new, note = nudge(course, degrees), ''
            else:
                now = time.monotonic()
                with self._lock:
                    heading = self.state.heading_now(now)
                    wind = self.state.wind_now(now)
                plan = tack(course, heading, wind)
                new = plan.course
                note = (f' (tack: turning {abs(plan.turn_deg):.0f} deg to '
                        f"{'starboard' if plan.turn_deg > 0 else 'port'})")
        except Refused as exc:
            return False, str(exc)
        request = Steer.Request(mode=new.mode, target_deg=degrees_in_mode(new))
        response = await self._call(self.steer_client, request)
        if response.success:
            self._course = (new, time.monotonic())
            with self._lock:
                self.state.last_result = describe(new) + note
        return response.success, (describe(new) + note) if response.success \
            else response.message

    async def _call(self, client, request):
        """A service call from the server's loop, answered on the executor's thread."""
        if not client.service_is_ready():
            raise ConnectionError(f'{client.srv_name} is not available: is the autopilot '
                                  'running, in this namespace and domain?')
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def finished(future) -> None:
            def settle() -> None:
                if done.done():
                    return
                if future.exception() is not None:
                    done.set_exception(future.exception())
                else:
                    done.set_result(future.result())
            loop.call_soon_threadsafe(settle)

        future = client.call_async(request)
        future.add_done_callback(finished)
        try:
            return await asyncio.wait_for(done, SERVICE_TIMEOUT)
        except TimeoutError:
            client.remove_pending_request(future)
            raise ConnectionError(f'{client.srv_name} did not answer within '
                                  f'{SERVICE_TIMEOUT:g} s') from None

    def destroy_node(self) -> None:
        # getattr: rclpy also destroys a node whose __init__ failed (no server yet) at shutdown.
        if getattr(self, 'server', None) is not None:
            self.server.stop()
        if getattr(self, 'foxglove', None) is not None:
            self.foxglove[0].stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop: list[str] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda s, _f: stop.append(signal.Signals(s).name))
    try:
        node = HelmNode()
    except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
        print(f'helm_node: {parameter_error_message(exc)}', flush=True)
        rclpy.shutdown()
        raise SystemExit(2) from None
    except (OSError, ValueError) as exc:
        # A port in use, an address this machine does not have, a bad certificate.
        print(f'helm_node: cannot serve the helm page: {exc}', flush=True)
        rclpy.shutdown()
        raise SystemExit(2) from None
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
        if stop:
            node.get_logger().info(f'{stop[0]} received: helm page stopped')
    except (ExternalShutdownException, KeyboardInterrupt):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
