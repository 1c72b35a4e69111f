"""What the launch file decides, kept here so it is testable without `launch`."""

from collections.abc import Mapping
import os
import shutil
import sys
import urllib.parse

MODEL_FILE = 'autopilot.onnx'
# `model_path: shipped` names the package's own model (resource/autopilot.onnx). It is an
# option, not the default: trained in the simulator across a family of boats, it is better
# than the PID in the mean on boats it has not seen but worse on some of them
# (docs/held_out_boats.md), and every real boat is one it has not seen.
SHIPPED = 'shipped'


def default_params_file(share_dir: str) -> str:
    return os.path.join(share_dir, 'config', 'autopilot.yaml')


def shipped_model_path(share_dir: str) -> str:
    """The package's own model file, or '' if this install has none."""
    path = os.path.join(share_dir, 'resource', MODEL_FILE)
    return path if os.path.isfile(path) else ''


def resolve_model_path(path: str, share_dir: str) -> str:
    """`shipped` is the package's model (ValueError if the install has none); else as given."""
    if path.strip().lower() != SHIPPED:
        return path
    shipped = shipped_model_path(share_dir)
    if not shipped:
        raise ValueError(f'model_path {SHIPPED}: this install has no {MODEL_FILE} in '
                         f'{os.path.join(share_dir, "resource")}')
    return shipped


def rviz_config(share_dir: str) -> str:
    return os.path.join(share_dir, 'resource', 'autopilot.rviz')


# sim_node publishes a step's samples before its /clock: they lead the node's sim clock by
# up to one 50 ms step (and some jitter), more than a real instrument's 0.05 s allowance.
SIM_STAMP_TOLERANCE = 0.1


def node_parameters(params_file: str, *, model_path: str, use_sim_time: bool,
                    hand_steering: bool, sim: bool = False) -> list:
    """The autopilot node's `parameters=` in the order ROS applies them (later wins).

    `model_path` goes in only when the command line gave one, so the precedence is: command
    line > params file > the node's own default (none: the PID pilot). With the package's
    simulator, the stamp tolerance is SIM_STAMP_TOLERANCE.
    """
    overrides: dict = {'use_sim_time': use_sim_time, 'hand_steering': hand_steering}
    if model_path.strip():
        overrides['model_path'] = model_path.strip()
    if sim:
        overrides['stamp_future_tolerance'] = SIM_STAMP_TOLERANCE
    return [params_file, overrides]


def rviz_missing() -> str:
    """'' when rviz2 can be started here, else the one line that says what to install."""
    if shutil.which('rviz2'):
        return ''
    try:
        from ament_index_python.packages import get_package_prefix
        get_package_prefix('rviz2')
        return ''
    except Exception:  # noqa: BLE001 - no ament index, or no rviz2 in it
        return ('rviz:=true but rviz2 is not installed here (sudo apt install '
                'ros-$ROS_DISTRO-rviz2); nothing was started')


# SROS2 (security/*.policy.xml, scripts/sros2-setup, docs/design.md "Who may steer").
AUTOPILOT_ENCLAVE = '/autopilot_ros/autopilot'
SIM_ENCLAVE = '/autopilot_ros/sim'  # security/bench.policy.xml: never in a boat's keystore
SENSORS_ENCLAVE = '/autopilot_ros/sensors'  # sensor drivers, instruments_node among them
RECORDER_ENCLAVE = '/autopilot_ros/recorder'  # autopilot-record: reads, never writes


def enclave_arguments(enclave: str) -> list[str] | None:
    """A node's `ros_arguments` for an SROS2 enclave; None (no --ros-args) for none ('')."""
    return ['--enclave', enclave] if enclave else None


def security_problem(enclave: str, environ: Mapping[str, str]) -> str:
    """'' when a node can run in `enclave` with SROS2 enforced, else the line that says why not.

    A node given an enclave without ROS_SECURITY_ENABLE=true runs with no security at all,
    and one under the Permissive strategy without its keys runs unsecured: both would look
    secured and are not, so the launch refuses them before starting anything.
    """
    setup = 'scripts/sros2-setup prints the exports'
    if not enclave.startswith('/'):
        return f'enclave:={enclave} is not an absolute enclave path (e.g. {AUTOPILOT_ENCLAVE})'
    if environ.get('ROS_SECURITY_ENABLE', '') != 'true':
        return (f'enclave:={enclave} needs ROS_SECURITY_ENABLE=true ({setup}); without it '
                'the node would run unsecured. Nothing was started')
    if environ.get('ROS_SECURITY_STRATEGY', '') != 'Enforce':
        return (f'enclave:={enclave} needs ROS_SECURITY_STRATEGY=Enforce ({setup}); '
                'Permissive lets a node without keys run unsecured. Nothing was started')
    keystore = environ.get('ROS_SECURITY_KEYSTORE', '')
    if not keystore:
        return f'enclave:={enclave} needs ROS_SECURITY_KEYSTORE ({setup}). Nothing was started'
    folder = os.path.join(keystore, 'enclaves', enclave.strip('/'))
    missing = [f for f in ('cert.pem', 'key.pem', 'permissions.p7s', 'governance.p7s')
               if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        return (f'enclave {enclave}: {", ".join(missing)} missing in {folder} (scripts/'
                'sros2-setup KEYSTORE makes the keystore). Nothing was started')
    return ''


# -- instruments_node (launch `instruments:=`; docs/design.md, "Instrument bridges") ----------
INSTRUMENTS = ('none', 'nmea0183', 'nmea2000', 'signalk')
# launch argument -> (instruments_node parameter, type). An argument left empty keeps the
# node's default (instruments_node.PARAMETERS).
INSTRUMENT_ARGUMENTS = {
    'nmea0183_transport': ('nmea0183.transport', str),
    'nmea0183_host': ('nmea0183.host', str),
    'nmea0183_port': ('nmea0183.port', int),
    'nmea0183_device': ('nmea0183.device', str),
    'nmea0183_baudrate': ('nmea0183.baudrate', int),
    'nmea2000_interface': ('nmea2000.interface', str),
    'nmea2000_channel': ('nmea2000.channel', str),
    'signalk_url': ('signalk.url', str),
    'signalk_token': ('signalk.token', str),
    'rudder_full_scale_deg': ('rudder_full_scale_deg', float),
}
SIM_NMEA_PORT = 10110  # the simulator's NMEA 0183 server with sim:=true instruments:=nmea0183
# The throwaway signalk-server of sim:=true instruments:=signalk: loopback, and not 3000, which
# a Pi's own Signal K server holds (the simulator must never write into the boat's server:
# every app on it would show the simulated boat).
SIM_SIGNALK_PORT = 3010
SIM_HOSTS = ('127.0.0.1', 'localhost')


def instruments_parameters(instruments: str, arguments: Mapping[str, str], *,
                           use_sim_time: bool, sim: bool) -> dict | None:
    """instruments_node's parameters for `instruments:=`, None for none (ValueError: why not).

    With sim:=true the simulator is the instruments: NMEA 0183 over TCP (it serves the
    sentences, sim_parameters_for_instruments) or Signal K (it writes deltas into a
    throwaway server on this computer, signalk_server_command), and the bridge reads them,
    as on a boat. NMEA 2000 has no simulator output.
    """
    choice = instruments.strip().lower() or 'none'
    if choice not in INSTRUMENTS:
        raise ValueError(f'instruments:={instruments}: one of {", ".join(INSTRUMENTS)}. '
                         'Nothing was started')
    if choice == 'none':
        return None
    params: dict = {'source': choice, 'use_sim_time': use_sim_time}
    for argument, (name, kind) in INSTRUMENT_ARGUMENTS.items():
        value = arguments.get(argument, '').strip()
        if not value:
            continue
        try:
            params[name] = kind(value)
        except ValueError:
            raise ValueError(f'{argument}:={value} is not a {kind.__name__}. '
                             'Nothing was started') from None
    if not sim:
        return params
    if choice == 'signalk':
        url = params.setdefault('signalk.url', f'ws://127.0.0.1:{SIM_SIGNALK_PORT}')
        _sim_signalk_port(url)
        return params
    if choice != 'nmea0183' or params.get('nmea0183.transport', 'tcp') != 'tcp':
        raise ValueError(f'sim:=true with instruments:={choice}: the simulator serves NMEA '
                         '0183 over TCP (instruments:=nmea0183) or writes to a Signal K '
                         'server (instruments:=signalk). Nothing was started')
    params.setdefault('nmea0183.host', '127.0.0.1')
    params.setdefault('nmea0183.port', SIM_NMEA_PORT)
    return params


def _sim_signalk_port(url: str) -> int:
    """The port of the simulator's throwaway server, from `signalk_url` (ValueError: why not).

    With sim:=true that server is started here, on loopback: the URL may choose its port,
    not another host.
    """
    parts = urllib.parse.urlsplit(url if '://' in url else 'ws://' + url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != 'ws' or parts.hostname not in SIM_HOSTS or not port:
        raise ValueError(f'sim:=true with signalk_url:={url}: the simulator writes into a '
                         f'throwaway server the launch starts on this computer, so the URL '
                         f'must be ws://127.0.0.1:PORT (default port {SIM_SIGNALK_PORT}). '
                         'Nothing was started')
    return port


def sim_parameters_for_instruments(instruments_params: dict | None) -> dict:
    """sim_node's instrument output for the bridge (nothing without instruments)."""
    if instruments_params is None:
        return {}
    if instruments_params['source'] == 'signalk':
        return {'signalk.url': str(instruments_params['signalk.url']),
                'signalk.token': str(instruments_params.get('signalk.token', '')),
                'signalk.only': True}
    return {'nmea.tcp_port': int(instruments_params['nmea0183.port']),
            'nmea.tcp_host': str(instruments_params['nmea0183.host']),
            'nmea.only': True}


def signalk_server_command(instruments_params: dict | None, *, sim: bool,
                           python: str = sys.executable) -> list[str] | None:
    """The throwaway signalk-server's command line for sim:=true instruments:=signalk.

    The launch starts it as a process of its own, next to the simulator (which writes to it)
    and the bridge (which reads it): on a boat neither the instruments nor the pilot own the
    server either. None when there is nothing to start.
    """
    if not sim or instruments_params is None or instruments_params['source'] != 'signalk':
        return None
    port = _sim_signalk_port(str(instruments_params['signalk.url']))
    return [python, '-m', 'autopilot_ros.instruments.signalk_server', '--port', str(port)]


# The helm page (helm_node, `helm:=true`): in the helm enclave when the autopilot has one.
HELM_ENCLAVE = '/autopilot_ros/helm'
HELM_PORT = 8080


def _port(name: str, value: str, allow_zero: bool = False) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f'{name}:={value} is not a port number') from None
    if not (allow_zero and number == 0) and not 0 < number < 65536:
        raise ValueError(f'{name}:={value} is not a port number (1-65535)')
    return number


def helm_parameters(address: str, port: str, token_file: str, foxglove_port: str = '0') -> dict:
    """helm_node's parameters from the launch arguments; ValueError says which is wrong.

    The token only as a file: a token given as a launch argument would sit in the process
    list and, as a parameter, be readable by anyone on the DDS domain.
    """
    params: dict = {'address': address.strip() or '127.0.0.1',
                    'port': _port('helm_port', port),
                    'foxglove_port': _port('helm_foxglove_port', foxglove_port or '0', True)}
    if token_file.strip():
        params['access_token_file'] = os.path.expanduser(token_file.strip())
    return params
