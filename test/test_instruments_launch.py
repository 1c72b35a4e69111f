"""What `ros2 launch ... instruments:=...` starts, decided in launch_config (no `launch` here),
and what instruments_node builds from its parameters (no DDS)."""

import ast
import math
import pathlib
import sys

import pytest

from autopilot_ros.instruments.bridge import (
    Bridge,
    BridgeConfig,
    RateMeter,
    diagnostic_values,
    make_source,
)
from autopilot_ros.instruments.readings import (
    AttitudeReading,
    HeadingReading,
    RudderReading,
    SourceStats,
    TurnRateReading,
)
from autopilot_ros.launch_config import (
    INSTRUMENT_ARGUMENTS,
    SIM_NMEA_PORT,
    SIM_SIGNALK_PORT,
    instruments_parameters,
    signalk_server_command,
    sim_parameters_for_instruments,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
DEG = math.pi / 180


def test_none_starts_no_bridge_and_an_unknown_choice_is_refused():
    assert instruments_parameters('none', {}, use_sim_time=False, sim=False) is None
    assert instruments_parameters('', {}, use_sim_time=False, sim=False) is None
    with pytest.raises(ValueError, match='one of none, nmea0183, nmea2000, signalk'):
        instruments_parameters('seatalk', {}, use_sim_time=False, sim=False)


def test_connection_arguments_reach_the_node_typed_and_empty_ones_keep_its_defaults():
    params = instruments_parameters(
        'nmea0183', {'nmea0183_host': '192.168.1.1', 'nmea0183_port': '2000',
                     'nmea0183_baudrate': '', 'rudder_full_scale_deg': '40'},
        use_sim_time=False, sim=False)
    assert params == {'source': 'nmea0183', 'use_sim_time': False,
                      'nmea0183.host': '192.168.1.1', 'nmea0183.port': 2000,
                      'rudder_full_scale_deg': 40.0}
    with pytest.raises(ValueError, match='nmea0183_port:=ten is not a int'):
        instruments_parameters('nmea0183', {'nmea0183_port': 'ten'}, use_sim_time=False,
                               sim=False)
    assert instruments_parameters('nmea2000', {'nmea2000_channel': 'can1'},
                                  use_sim_time=False, sim=False)['nmea2000.channel'] == 'can1'


def test_with_the_simulator_the_bridge_reads_its_nmea_server():
    params = instruments_parameters('nmea0183', {}, use_sim_time=True, sim=True)
    assert params['nmea0183.port'] == SIM_NMEA_PORT and params['use_sim_time'] is True
    assert sim_parameters_for_instruments(params) == {
        'nmea.tcp_port': SIM_NMEA_PORT, 'nmea.tcp_host': '127.0.0.1', 'nmea.only': True}
    assert sim_parameters_for_instruments(None) == {}
    assert signalk_server_command(params, sim=True) is None
    with pytest.raises(ValueError, match='NMEA 0183 over TCP'):
        instruments_parameters('nmea2000', {}, use_sim_time=True, sim=True)
    with pytest.raises(ValueError, match='NMEA 0183 over TCP'):
        instruments_parameters('nmea0183', {'nmea0183_transport': 'udp'}, use_sim_time=True,
                               sim=True)


def test_with_the_simulator_signalk_goes_through_a_throwaway_server_the_launch_starts():
    params = instruments_parameters('signalk', {}, use_sim_time=True, sim=True)
    url = f'ws://127.0.0.1:{SIM_SIGNALK_PORT}'
    assert params == {'source': 'signalk', 'use_sim_time': True, 'signalk.url': url}
    # The simulator writes where the bridge reads, and leaves the ROS topics to the bridge.
    assert sim_parameters_for_instruments(params) == {
        'signalk.url': url, 'signalk.token': '', 'signalk.only': True}
    assert signalk_server_command(params, sim=True, python='py') == [
        'py', '-m', 'autopilot_ros.instruments.signalk_server', '--port',
        str(SIM_SIGNALK_PORT)]
    # signalk_url chooses the throwaway server's port, never another server.
    moved = instruments_parameters('signalk', {'signalk_url': 'ws://localhost:3999'},
                                   use_sim_time=True, sim=True)
    assert signalk_server_command(moved, sim=True)[-1] == '3999'
    for url in ('ws://192.168.1.1:3000', 'wss://127.0.0.1:3443', 'ws://127.0.0.1'):
        with pytest.raises(ValueError, match='throwaway server'):
            instruments_parameters('signalk', {'signalk_url': url}, use_sim_time=True,
                                   sim=True)
    # On the boat: the sailor's server, as given, and nothing started.
    boat = instruments_parameters('signalk', {'signalk_url': 'ws://192.168.1.1:3000'},
                                  use_sim_time=False, sim=False)
    assert boat['signalk.url'] == 'ws://192.168.1.1:3000'
    assert signalk_server_command(boat, sim=False) is None


def test_the_launchs_signalk_server_command_runs_a_server_that_stops_on_sigint(tmp_path):
    """The command line the launch runs, for real: it serves, and SIGINT (the launch's
    Ctrl-C) stops it with nothing left behind: no process, no folder, the port free."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from autopilot_ros.instruments.signalk_server import node_executable
    if node_executable() is None:
        pytest.skip('Node.js is not installed: the real signalk-server cannot run here')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    params = instruments_parameters('signalk', {'signalk_url': f'ws://127.0.0.1:{port}'},
                                    use_sim_time=True, sim=True)
    command = signalk_server_command(params, sim=True, python=sys.executable)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f'signalk-server at ws://127.0.0.1:{port} '), line
        config = pathlib.Path(line.split('(config ')[1].split(')')[0])
        assert config.is_dir()
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/signalk', timeout=10) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not config.exists()
    time.sleep(0.2)
    with socket.socket() as s:  # nobody holds the port any more (no orphan server)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('127.0.0.1', port))
        # A port already taken (the Pi's own server there?) is one clear line, exit 2.
        s.listen(1)
        busy = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert busy.returncode == 2, busy
    assert busy.stderr.strip() == (f'signalk_server: cannot listen on 127.0.0.1:{port} '
                                   '(Address already in use): another server there?')


def test_the_launch_file_declares_every_instruments_argument():
    source = (REPO / 'launch' / 'autopilot.launch.py').read_text()
    compile(source, 'autopilot.launch.py', 'exec')
    assert "'instruments'" in source and 'INSTRUMENT_ARGUMENTS' in source
    node_source = (REPO / 'autopilot_ros' / 'instruments_node.py').read_text()
    for _, (param, _) in INSTRUMENT_ARGUMENTS.items():
        assert f"('{param}'," in node_source, param  # a parameter the node declares


def test_the_launch_restarts_the_bridge_and_the_helm_page_but_not_the_pilot():
    """ros2 launch is not installable here, so the launch file's Node() calls are read: the
    boot service's watchdog sees only the autopilot's tick (a dead autopilot is a restart of
    the service), so the launch itself must bring back a bridge or a helm page that exits."""
    tree = ast.parse((REPO / 'launch' / 'autopilot.launch.py').read_text())
    respawn = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, 'id', '') == 'Node':
            kw = {k.arg: k.value for k in call.keywords}
            respawn[ast.literal_eval(kw['executable'])] = (
                ast.literal_eval(kw['respawn']) if 'respawn' in kw else False,
                getattr(kw.get('respawn_delay'), 'id', None))
    assert respawn == {'autopilot_node': (False, None), 'sim_node': (False, None),
                       'instruments_node': (True, 'RESPAWN_DELAY'),
                       'helm_node': (True, 'RESPAWN_DELAY'), 'rviz2': (False, None)}


PARAMS = {'backoff_initial': 0.5, 'backoff_max': 30.0, 'silence_timeout': 10.0,
          'nmea0183.transport': 'udp', 'nmea0183.host': '127.0.0.1', 'nmea0183.port': 0,
          'nmea0183.device': '/dev/null', 'nmea0183.baudrate': 4800,
          'nmea0183.require_checksum': True, 'nmea2000.interface': 'virtual',
          'nmea2000.channel': 'x', 'nmea2000.rudder_instance': 0,
          'signalk.url': 'ws://localhost:3000/signalk/v1/stream', 'signalk.token': ''}


def test_the_node_builds_each_source_from_its_parameters():
    assert make_source('nmea0183', PARAMS).describe() == 'UDP on 127.0.0.1:0'
    assert make_source('nmea2000', PARAMS).describe() == 'virtual CAN bus x'
    with pytest.raises(ValueError, match='one of nmea0183'):
        make_source('seatalk', PARAMS)


def test_signalk_is_built_from_its_parameters():
    assert make_source('signalk', PARAMS).name == 'signalk'


@pytest.mark.parametrize('source, missing, install', [
    ('nmea0183', 'pynmea2', 'pynmea2 pyserial'),
    ('nmea2000', 'can', 'python-can nmea2000'),
    ('nmea2000', 'nmea2000', 'python-can nmea2000'),
    ('signalk', 'websockets', "'websockets>=15'"),
])
def test_a_package_a_source_needs_that_is_not_installed_is_one_line(
        monkeypatch, source, missing, install):
    # None in sys.modules is how Python itself marks a module as not importable.
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, f'autopilot_ros.instruments.{source}', raising=False)
    with pytest.raises(ValueError) as err:
        make_source(source, PARAMS)
    if source == 'signalk':  # its module imports websockets late, to say which version
        assert str(err.value) == ("source:=signalk: the Signal K source needs the websockets "
                                  "package: pip install 'websockets>=15'")
    else:
        assert str(err.value) == (f'source:={source} needs the Python package {missing!r}: '
                                  f'pip install {install}')


def test_pyserial_is_needed_only_for_the_serial_transport(monkeypatch):
    monkeypatch.setitem(sys.modules, 'serial', None)
    assert make_source('nmea0183', PARAMS).describe() == 'UDP on 127.0.0.1:0'
    with pytest.raises(ValueError, match="needs the Python package 'serial': pip install "):
        make_source('nmea0183', {**PARAMS, 'nmea0183.transport': 'serial'})


def test_the_bridge_normalises_the_rudder_and_keeps_one_heading_reference():
    bridge = Bridge(BridgeConfig(rudder_full_scale=math.radians(40.0)))
    (rudder,) = bridge.take(RudderReading(1.0, -20 * DEG))
    assert rudder.angle == pytest.approx(-0.5)
    (first,) = bridge.take(HeadingReading(1.0, 1.0, True))
    assert first.heading == 1.0 and bridge.reference == 'true'
    assert bridge.take(HeadingReading(1.1, 1.2, False)) == []
    assert bridge.dropped == {'magnetic heading (publishing true)': 1}
    fixed = Bridge(BridgeConfig(heading_reference='magnetic'))
    assert fixed.take(HeadingReading(1.0, 1.0, True)) == []
    with pytest.raises(ValueError, match='rudder_full_scale_deg'):
        Bridge(BridgeConfig(rudder_full_scale=math.radians(200.0)))


def test_turn_rate_and_attitude_fold_into_one_imu_only_when_recent():
    bridge = Bridge(BridgeConfig(imu_combine_s=0.25))
    (alone,) = bridge.take(TurnRateReading(10.0, 0.1))
    assert alone.yaw_rate_z == -0.1  # REP-103: starboard turn is negative z
    assert not alone.orientation_known and math.isnan(alone.roll)
    (both,) = bridge.take(AttitudeReading(10.1, 0.2, -0.05))
    assert (both.roll, both.pitch, both.yaw_rate_z) == (0.2, -0.05, -0.1)
    (late,) = bridge.take(AttitudeReading(10.5, 0.2, -0.05))  # the rate is 0.5 s old
    assert math.isnan(late.yaw_rate_z) and late.orientation_known
    assert not any((both.rates_known, both.accel_known))


def test_diagnostics_say_connected_rates_errors_and_the_stamp_source():
    stats = SourceStats(received=12, readings=9, parse_errors=2, checksum_errors=1,
                        reconnects=3, connected=True, last_seen={'heading': 99.5})
    meter = RateMeter()
    for k in range(10):
        meter.add('heading', 95.5 + 0.5 * k)
    level, message, values = diagnostic_values('nmea0183', 'TCP client of h:1', stats,
                                               meter.rates(100.0), Bridge(), 100.0)
    values = dict(values)
    assert level == 0 and message == '9 readings from TCP client of h:1'
    assert values['heading rate'] == '2.0 Hz' and values['heading last seen'] == '0.5 s ago'
    assert values['wind last seen'] == 'never'
    assert (values['checksum errors'], values['reconnects']) == ('1', '3')
    assert values['stamped with'].startswith('receive time')
    level, message, _ = diagnostic_values('nmea0183', 'w', stats, {}, Bridge(), 104.0)
    assert level == 1 and message == 'no heading for over 3 s'
    stats.connected = False
    stats.last_error = 'ConnectionRefusedError: refused'
    level, message, _ = diagnostic_values('nmea0183', 'w', stats, {}, Bridge(), 104.0)
    assert level == 2 and 'refused' in message
