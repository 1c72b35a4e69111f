"""instruments_node: a boat's NMEA 0183, NMEA 2000 or Signal K data on the pilot's topics.

The thin ROS layer over autopilot_ros/instruments: parameters, one source running in a
thread of its own (it reconnects by itself), and publishers for the inputs of
inputs.INPUTS (`imu`, `heading`, `wind`, `speed`, `rudder_angle`, relative names, the
sensor-data QoS) filled by the same samples.fill_*_msg writers the simulator uses. Every
message is stamped with the time it was received; `/diagnostics` says so, with the rates,
last-seen ages, parse and checksum errors and reconnects of the source.

    ros2 run autopilot_ros instruments_node --ros-args -p source:=nmea0183 \\
        -p nmea0183.transport:=tcp -p nmea0183.host:=192.168.1.1 -p nmea0183.port:=10110
"""

from __future__ import annotations

import math
import signal
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions

from autopilot_ros.inputs import INPUT_BY_NAME, input_of
from autopilot_ros.instruments.bridge import (
    SOURCES,
    STAMPED_WITH,
    Bridge,
    BridgeConfig,
    RateMeter,
    diagnostic_values,
    make_source,
)
from autopilot_ros.instruments.checks import kind
from autopilot_ros.instruments.readings import Reading
from autopilot_ros.parameter_errors import parameter_error_message
from autopilot_ros.ros_messages import BASE_FRAME, message_class

# (name, default, description): every parameter, read once at start (read-only).
PARAMETERS = (
    ('source', 'nmea0183', f'where the instruments are: {", ".join(SOURCES)}'),
    ('rudder_full_scale_deg', 35.0, 'measured rudder angle (deg) that is full rudder (1.0)'),
    ('heading_reference', 'auto', 'auto (the first heard), magnetic or true: one, never both'),
    ('imu_combine_s', 0.25, 'turn rate and attitude this close in time share one Imu'),
    ('frame_id', BASE_FRAME, 'header.frame_id of the published messages'),
    ('silence_timeout', 10.0, 's without data before the connection is reopened'),
    ('backoff_initial', 0.5, 's before the first reconnect; doubles up to backoff_max'),
    ('backoff_max', 30.0, 's: the longest wait between reconnects'),
    ('nmea0183.transport', 'tcp', 'tcp (client of a multiplexer), udp (listen) or serial'),
    ('nmea0183.host', '127.0.0.1', 'TCP server to connect to; UDP address to listen on'),
    ('nmea0183.port', 10110, 'TCP or UDP port (10110 is the NMEA-over-IP port)'),
    ('nmea0183.device', '/dev/ttyUSB0', 'serial device'),
    ('nmea0183.baudrate', 4800, 'serial speed: 4800 (NMEA 0183), 38400 (high speed)'),
    ('nmea0183.require_checksum', True, 'drop sentences without a checksum'),
    ('nmea2000.interface', 'socketcan', 'python-can interface'),
    ('nmea2000.channel', 'can0', 'CAN channel'),
    ('nmea2000.rudder_instance', 0, 'PGN 127245 instance of the rudder to publish'),
    ('signalk.url', 'ws://localhost:3000/signalk/v1/stream', 'Signal K delta stream'),
    ('signalk.token', '', 'Signal K access token (empty: none)'),
    ('signalk.ca_file', '', 'wss:// only: the certificate to trust (empty: the system CAs)'),
)

# String parameters whose values YAML reads as something else (`true` is a bool): taken as
# typed, turned into their words.
YAML_WORDS = ('heading_reference',)


class InstrumentsNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('instruments', **kwargs)
        for name, default, description in PARAMETERS:
            try:
                self.declare_parameter(name, default, ParameterDescriptor(
                    description=description, read_only=True,
                    dynamic_typing=name in YAML_WORDS))
            except (InvalidParameterTypeException,
                    InvalidParameterValueException) as exc:  # one line, not a traceback
                raise ValueError(parameter_error_message(exc)) from None
        params = {name: self.get_parameter(name).value for name, _, _ in PARAMETERS}
        for name in YAML_WORDS:  # `-p heading_reference:=true` arrives as a YAML bool
            value = params[name]
            params[name] = str(value).lower() if isinstance(value, bool) else str(value)
        self.source_name = str(params['source'])
        self.frame_id = str(params['frame_id'])
        self.bridge = Bridge(BridgeConfig(
            rudder_full_scale=math.radians(float(params['rudder_full_scale_deg'])),
            heading_reference=str(params['heading_reference']),
            imu_combine_s=float(params['imu_combine_s'])))
        self.bridge.on_reference = lambda ref: self.get_logger().info(
            f'publishing the {ref} heading (the first reference heard); the other is dropped')
        self.source = make_source(self.source_name, params, self._log_link)
        self.pubs = {name: self.create_publisher(message_class(spec.msg_type), name,
                                                 qos_profile_sensor_data)
                     for name, spec in INPUT_BY_NAME.items()}
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.rates = RateMeter()
        self._rates_lock = threading.Lock()
        self.create_timer(1.0, self._diagnostics)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f'{self.source_name} source',
                                       daemon=True)
        where = getattr(self.source, 'describe', lambda: self.source_name)()
        self.where = where
        self.get_logger().info(f'{self.source_name} from {where}; messages stamped with the '
                               f'{STAMPED_WITH}')
        self.thread.start()

    def _log_link(self, line: str) -> None:
        self.get_logger().warning(f'{self.source_name}: {line}', throttle_duration_sec=10.0)

    def _run(self) -> None:
        try:
            self.source.run(self._emit, self.stop)
        except Exception as exc:  # noqa: BLE001 - a source must not raise; say so if it does
            self.get_logger().error(f'{self.source_name} source stopped: '
                                    f'{type(exc).__name__}: {exc}')

    def _emit(self, readings: list[Reading]) -> None:
        """Publish a batch (the source's thread): stamped now, on the node's clock."""
        stamp = self.get_clock().now().to_msg()
        for reading in readings:
            with self._rates_lock:
                self.rates.add(kind(reading), reading.stamp)
            for sample in self.bridge.take(reading):
                name = input_of(sample).name
                msg = message_class(INPUT_BY_NAME[name].msg_type)()
                msg.header.stamp = stamp
                msg.header.frame_id = self.frame_id
                INPUT_BY_NAME[name].fill_msg(msg, sample)
                if name == 'heading':  # the one reference the bridge publishes
                    msg.is_true_north = self.bridge.reference == 'true'
                self.pubs[name].publish(msg)

    def _diagnostics(self) -> None:
        now = time.time()
        with self._rates_lock:
            rates = self.rates.rates(now)
        level, message, values = diagnostic_values(
            self.source_name, self.where, self.source.stats, rates, self.bridge, now)
        status = DiagnosticStatus(
            level=bytes([level]), name=f'{self.get_name()}: {self.source_name}',
            message=message, hardware_id=self.source_name,
            values=[KeyValue(key=k, value=v) for k, v in values])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(timeout=3.0)


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda received, _frame: stop.append(received))
    try:
        node = InstrumentsNode()
    except ValueError as exc:
        print(f'instruments_node: {exc}', flush=True)
        rclpy.shutdown()
        raise SystemExit(2) from None
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not stop:
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        if stop:
            node.get_logger().info(f'{signal.Signals(stop[0]).name} received: stopping')
        node.shutdown()
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
