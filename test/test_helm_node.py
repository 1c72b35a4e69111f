"""helm_node over DDS without a browser: what its buttons answer when the boat is not
all there, and where its token comes from. test_helm_page.py runs the whole chain."""

import asyncio
import math
import pathlib
import socket
import subprocess

import pytest

pytest.importorskip('aiohttp')
pytestmark = pytest.mark.dds  # rclpy nodes, and the installed executable

TOKEN = 'harbour-0142'


def _helm(rclpy_context, **params):
    from rclpy.parameter import Parameter

    from autopilot_ros.helm_node import HelmNode
    overrides = [Parameter('port', value=0)] + [Parameter(k, value=v)
                                                for k, v in params.items()]
    return HelmNode(context=rclpy_context, parameter_overrides=overrides)


def test_without_an_autopilot_the_buttons_say_so(rclpy_context, spinner):
    helm = spinner.add(_helm(rclpy_context, access_token=TOKEN))
    assert helm.gate.enabled
    assert helm.server.url.startswith('http://127.0.0.1:')
    with pytest.raises(ConnectionError, match='autopilot/engage is not available'):
        asyncio.run(helm.execute('engage', 0.0))
    assert asyncio.run(helm.execute('nudge', 10.0)) == (
        False, 'no status from the autopilot: is it running?')
    assert asyncio.run(helm.execute('tack', 0.0))[0] is False


def test_the_token_file_wins_and_an_unreadable_one_leaves_the_page_view_only(
        rclpy_context, spinner, tmp_path):
    token_file = tmp_path / 'token'
    token_file.write_text(TOKEN + '\n')
    helm = spinner.add(_helm(rclpy_context, access_token='other-token-123',
                             access_token_file=str(token_file)))
    assert helm.gate.check('p', TOKEN, 0.0) == (True, '')
    assert not helm.gate.check('p', 'other-token-123', 0.0)[0]
    missing = spinner.add(_helm(rclpy_context, access_token_file=str(tmp_path / 'none')))
    assert not missing.gate.enabled and 'view only' in missing.gate.problem
    short = spinner.add(_helm(rclpy_context, access_token='1234'))
    assert not short.gate.enabled and 'too short' in short.gate.problem


def test_the_helm_reads_status_and_instruments_off_dds(rclpy_context, spinner, wait):
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data

    from autopilot_ros.msg import AutopilotStatus, Heading, RudderAngle, Wind
    helm = spinner.add(_helm(rclpy_context))
    pub = spinner.add(Node('helm_test_boat', context=rclpy_context))
    status = pub.create_publisher(AutopilotStatus, 'autopilot/status', 10)
    heading = pub.create_publisher(Heading, 'heading', qos_profile_sensor_data)
    wind = pub.create_publisher(Wind, 'wind', qos_profile_sensor_data)
    rudder = pub.create_publisher(RudderAngle, 'rudder_angle', qos_profile_sensor_data)

    def send() -> bool:
        status.publish(AutopilotStatus(mode='wind_twa', engaged=True, target=math.radians(-45),
                                       target_heading=math.radians(200),
                                       heading_error=math.radians(1.5), command=-0.2,
                                       raw_command=-0.25, policy=2, reason='no model loaded',
                                       stale_inputs=['speed']))
        heading.publish(Heading(heading=math.radians(198.5)))
        wind.publish(Wind(angle=math.radians(-30), speed=float('nan')))  # dropped, NaN
        rudder.publish(RudderAngle(angle=-0.18))
        snap = helm.sample()
        return snap['pilot_alive'] and snap['heading_deg'] is not None \
            and snap['rudder'] is not None
    assert wait(send, 10.0, 0.1)
    snap = helm.sample()
    assert snap['mode'] == 'wind_twa' and snap['target_deg'] == pytest.approx(-45.0)
    assert snap['heading_deg'] == pytest.approx(198.5) and snap['rudder'] == pytest.approx(-0.18)
    assert snap['policy'] == 'pid' and snap['reason'] == 'no model loaded'
    assert snap['awa_deg'] is None  # a NaN reading is not shown as a number
    # A nudge starts from the course the status gave: +1 (to starboard) takes a port wind
    # further aft, TWA -45 -> -46.
    from autopilot_ros.helm import nudge
    course = helm._current_course()
    assert course.mode == 'wind_twa'
    assert math.degrees(nudge(course, 1).target) == pytest.approx(-46.0)


def test_a_port_in_use_stops_helm_node_with_one_line(tmp_path):
    from ament_index_python.packages import get_package_prefix
    exe = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros/helm_node'
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([str(exe), '--ros-args', '-p', f'port:={port}'],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'helm_node: cannot serve the helm page:' in proc.stdout
    assert 'Traceback' not in proc.stdout + proc.stderr


def test_foxglove_gets_the_page_state_over_its_own_protocol(rclpy_context, spinner, wait):
    """foxglove_port: the foxglove-sdk server advertises /autopilot/helm (JSON, with its
    schema) and sends the page's state to a subscriber, as the Foxglove app would see it."""
    import json
    import struct

    import aiohttp
    from rclpy.node import Node
    pytest.importorskip('foxglove')

    from autopilot_ros.helm import STATE_SCHEMA
    from autopilot_ros.msg import AutopilotStatus
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    helm = spinner.add(_helm(rclpy_context, foxglove_port=port))
    assert helm.foxglove is not None
    pub = spinner.add(Node('helm_test_pilot', context=rclpy_context))
    status = pub.create_publisher(AutopilotStatus, 'autopilot/status', 10)

    def heard() -> bool:
        status.publish(AutopilotStatus(mode='compass', engaged=True, target=1.0,
                                       target_heading=1.0, heading_error=0.0, policy=2))
        return helm.sample(keep=False)['pilot_alive']
    assert wait(heard, 10.0, 0.1)

    async def watch():
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f'http://127.0.0.1:{port}/',
                                          protocols=('foxglove.sdk.v1', 'foxglove.websocket.v1'))
            channel = None
            while channel is None:
                msg = json.loads((await ws.receive()).data)
                if msg['op'] == 'advertise':
                    channel = next(c for c in msg['channels'] if c['topic'] == '/autopilot/helm')
            await ws.send_json({'op': 'subscribe',
                                'subscriptions': [{'id': 3, 'channelId': channel['id']}]})
            while True:
                status.publish(AutopilotStatus(mode='compass', engaged=True, target=1.0,
                                               target_heading=1.0, heading_error=0.0,
                                               policy=2))
                data = (await ws.receive()).data
                if isinstance(data, bytes):
                    await ws.close()
                    return channel, data
    channel, data = asyncio.run(asyncio.wait_for(watch(), 20.0))
    assert channel['encoding'] == 'json' and json.loads(channel['schema']) == STATE_SCHEMA
    opcode, subscription, _stamp = struct.unpack_from('<BIQ', data)
    assert (opcode, subscription) == (1, 3)  # messageData for our subscription
    state = json.loads(data[13:])
    assert state['mode'] == 'compass' and state['target_deg'] == pytest.approx(57.3, abs=0.01)
    assert state['policy'] == 'pid'
