"""The participants of `scripts/sros2-setup --check`: one role per process.

The enclave comes from the command line (`--ros-args --enclave /autopilot_ros/helm`) and
security from the environment (ROS_SECURITY_*), as for any ROS node; the script runs an
unauthenticated participant by leaving ROS_SECURITY_ENABLE out. Each role prints one JSON
line and exits 0 when what it saw is what SROS2 must make happen, 1 when not (the boat is
not protected), 3 when it could not tell (nothing to judge by: no autopilot found).

    helm-set NAME VALUE  the helm station sets a float parameter of /autopilot: must work
    helm-get NAME VALUE  ... and reads it back: must equal VALUE
    listen SECONDS       the rudder driver: must receive rudder_command, none of it forged
    forge SECONDS        no keys at all: publish forged commands, try to set a parameter
    intrude SECONDS      the sensor drivers' keys (or another enclave's, with
                         `-r __node:=NAME` for its profile's node name): try to publish
                         rudder_command and to call set_parameters; both must be refused

Needs a full ROS 2 install with Fast DDS built with its security plugins, and this package
built and sourced (its RudderCommand message). Not run in this repository's tests: the
PyPI wheels' Fast DDS has no security plugins (docs/design.md, "Who may steer").
"""

import argparse
import json
import sys
import time

from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args

from autopilot_ros.msg import RudderCommand

AUTOPILOT = '/autopilot'
COMMAND_TOPIC = 'rudder_command'
# A forged command says so: engaged, this command, this sequence number.
FORGED_COMMAND = 0.777
FORGED_SEQUENCE = 0xC0FFEE
FORGED_PARAMETER = ('max_rudder_rate', 0.99)
DISCOVERY_TIMEOUT = 30.0  # s: secured discovery (handshakes) takes a few seconds
INTRUDER_DISCOVERY = 8.0  # s an unauthorised participant looks for the autopilot


def _report(ok: bool | None, **facts) -> int:
    facts['verdict'] = {True: 'as required', False: 'NOT PROTECTED', None: 'undecided'}[ok]
    print(json.dumps(facts), flush=True)
    return {True: 0, False: 1, None: 3}[ok]


def _node(name: str) -> Node:
    # No parameter services: a check node serves nothing.
    return Node(name, start_parameter_services=False)


def _call(node: Node, client, request, timeout: float):
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    return future.result() if future.done() else None


def _set_request(name: str, value: float) -> SetParameters.Request:
    return SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE, double_value=value))])


def _forged() -> RudderCommand:
    return RudderCommand(command=FORGED_COMMAND, engaged=True, sequence=FORGED_SEQUENCE,
                         valid_for=10.0)


def helm_set(name: str, value: float) -> int:
    node = _node('helm')
    client = node.create_client(SetParameters, f'{AUTOPILOT}/set_parameters')
    if not client.wait_for_service(timeout_sec=DISCOVERY_TIMEOUT):
        return _report(None, role='helm', error=f'{AUTOPILOT}/set_parameters not found in '
                                                f'{DISCOVERY_TIMEOUT:g} s')
    response = _call(node, client, _set_request(name, value), DISCOVERY_TIMEOUT)
    if response is None:
        return _report(None, role='helm', error='no answer from set_parameters')
    result = response.results[0]
    return _report(result.successful, role='helm', set=name, value=value,
                   reason=result.reason)


def helm_get(name: str, expected: float) -> int:
    node = _node('helm')
    client = node.create_client(GetParameters, f'{AUTOPILOT}/get_parameters')
    if not client.wait_for_service(timeout_sec=DISCOVERY_TIMEOUT):
        return _report(None, role='helm', error=f'{AUTOPILOT}/get_parameters not found')
    response = _call(node, client, GetParameters.Request(names=[name]), DISCOVERY_TIMEOUT)
    if response is None or not response.values:
        return _report(None, role='helm', error='no answer from get_parameters')
    value = response.values[0].double_value
    return _report(abs(value - expected) < 1e-9, role='helm', get=name, value=value,
                   expected=expected)


def listen(seconds: float) -> int:
    node = _node('rudder_driver')
    seen = {'commands': 0, 'forged': 0}

    def on_command(msg: RudderCommand) -> None:
        seen['commands'] += 1
        if msg.sequence == FORGED_SEQUENCE or msg.command == FORGED_COMMAND:
            seen['forged'] += 1

    node.create_subscription(RudderCommand, COMMAND_TOPIC, on_command,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    if not seen['commands']:
        return _report(None, role='rudder', error='no rudder_command from the autopilot',
                       **seen)
    return _report(seen['forged'] == 0, role='rudder', **seen)


def _intrude(node: Node, seconds: float, role: str) -> int:
    """Try to publish forged commands and to set a parameter; say what got through."""
    facts = {'role': role}
    try:
        publisher = node.create_publisher(RudderCommand, COMMAND_TOPIC, 10)
        facts['publisher'] = 'created'
    except Exception as exc:  # noqa: BLE001 - rclpy raises RCLError; any refusal will do
        publisher, facts['publisher'] = None, f'refused: {type(exc).__name__}'
    try:
        client = node.create_client(SetParameters, f'{AUTOPILOT}/set_parameters')
        facts['client'] = 'created'
    except Exception as exc:  # noqa: BLE001
        client, facts['client'] = None, f'refused: {type(exc).__name__}'
    deadline = time.monotonic() + seconds
    while publisher is not None and time.monotonic() < deadline:
        publisher.publish(_forged())
        rclpy.spin_once(node, timeout_sec=0.05)
    facts['set_parameters'] = 'no client'
    if client is not None:
        if not client.wait_for_service(timeout_sec=INTRUDER_DISCOVERY):
            facts['set_parameters'] = 'autopilot not found'
        else:
            response = _call(node, client, _set_request(*FORGED_PARAMETER), 10.0)
            if response is None:
                facts['set_parameters'] = 'no answer'
            else:
                facts['set_parameters'] = ('ACCEPTED' if response.results[0].successful
                                           else 'refused by the node')
    # Whether forged commands reached the rudder is the rudder driver's to say (listen),
    # whether the parameter changed helm-get's. Here: with keys of its own (intrude) the
    # participant's own permissions must refuse both at creation; with none (forge) it
    # creates them unhindered, and must find nobody to talk to.
    ok = facts['set_parameters'] != 'ACCEPTED'
    if role == 'intrude':
        ok = ok and publisher is None and client is None
    return _report(ok, **facts)


def main(argv: list[str] | None = None) -> int:
    args = remove_ros_args(argv if argv is not None else sys.argv)[1:]
    parser = argparse.ArgumentParser(prog='sros2_check.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('role', choices=['helm-set', 'helm-get', 'listen', 'forge', 'intrude'])
    parser.add_argument('values', nargs='*')
    options = parser.parse_args(args)
    rclpy.init(args=argv)
    try:
        v = options.values
        if options.role == 'helm-set':
            return helm_set(v[0], float(v[1]))
        if options.role == 'helm-get':
            return helm_get(v[0], float(v[1]))
        if options.role == 'listen':
            return listen(float(v[0]))
        name = 'intruder' if options.role == 'forge' else 'sensors'
        return _intrude(_node(name), float(v[0]), options.role)
    except Exception as exc:  # noqa: BLE001 - a participant that cannot even start
        return _report(None, role=options.role, error=f'{type(exc).__name__}: {exc}')
    finally:
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
