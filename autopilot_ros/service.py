"""`install-service`: start the autopilot at boot under systemd, with its watchdog.

Renders the unit template the package installs (share/autopilot_ros/systemd/
autopilot_ros.service.in) for this boat: the ROS setup file to source, the dedicated user,
the launch arguments and ROS environment; then writes it to /etc/systemd/system,
`systemctl daemon-reload` and `enable --now`. `--print` shows the unit and changes nothing.
Steps that need root go through sudo when not run as root, so `ros2 run` works as is.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import grp
import os
from pathlib import Path
import pwd
import re
import subprocess
import sys
import tempfile

UNIT_TEMPLATE = 'autopilot_ros.service.in'
DEFAULT_USER = 'autopilot'
DEFAULT_HOME = '/var/lib/autopilot_ros'
# Groups a boat's instruments need: serial ports (NMEA 0183 adapters, USB-serial).
INSTRUMENT_GROUPS = ('dialout',)
# Carried into the unit from the installing shell when set: the ROS graph's identity.
CARRIED_ENV = ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_STATIC_PEERS',
               'RMW_IMPLEMENTATION', 'ROS_SECURITY_KEYSTORE', 'ROS_SECURITY_ENABLE',
               'ROS_SECURITY_STRATEGY')
# What may go into ExecStart and Environment= unquoted: no whitespace, no quotes, no '%'
# (a systemd specifier), no shell syntax.
_SAFE = re.compile(r'^[A-Za-z0-9_./:=@+,~-]+$')


class ServiceError(Exception):
    """One line saying what is wrong and what to do."""


@dataclass
class ServiceConfig:
    setup: str  # the ROS setup file sourcing ROS and this package
    user: str = DEFAULT_USER
    group: str = ''  # default: the user's own group
    groups: tuple[str, ...] = ()
    launch_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    watchdog_sec: float = 5.0
    name: str = 'autopilot_ros'


def _safe(what: str, value: str) -> str:
    if not _SAFE.match(value):
        raise ServiceError(f'{what} {value!r} has characters the unit cannot carry (spaces, '
                           'quotes, %, shell syntax); use a path or value without them')
    return value


def render_unit(template: str, config: ServiceConfig) -> str:
    """The unit file for this boat; ServiceError for a value the unit could not carry."""
    if not 1.0 <= config.watchdog_sec <= 600.0:
        raise ServiceError('--watchdog-sec must be between 1 and 600 s (the node pings at '
                           'its control rate, 10 Hz)')
    if not re.match(r'^[a-z_][a-z0-9_-]*$', config.user):
        raise ServiceError(f'{config.user!r} is not a user name')
    for arg in config.launch_args:
        if ':=' not in arg:
            raise ServiceError(f'launch argument {arg!r} must be name:=value')
        _safe('launch argument', arg)
    env_lines = []
    for key, value in sorted(config.env.items()):
        if not re.match(r'^[A-Z_][A-Z0-9_]*$', key):
            raise ServiceError(f'environment variable name {key!r} is not valid')
        env_lines.append(f'Environment={key}={_safe(key, value)}')
    fields = {
        'WATCHDOG_SEC': f'{config.watchdog_sec:g}',
        'USER': config.user,
        'GROUP': config.group or config.user,
        'GROUPS': ' '.join(config.groups),
        'ENVIRONMENT': '\n'.join(env_lines),
        'SETUP': _safe('setup file', config.setup),
        'LAUNCH_ARGS': ' '.join(config.launch_args),
    }
    text = template
    for key, value in fields.items():
        text = text.replace(f'@{key}@', value)
    left = re.findall(r'@[A-Z_]+@', text)
    if left:
        raise ServiceError(f'the unit template has fields nobody fills: {", ".join(left)}')
    return re.sub(r'\n{3,}', '\n\n', text)


def default_setup_file(environ: Mapping[str, str] | None = None,
                       prefix: str | None = None) -> str:
    """The setup file that gives ROS and this package: the workspace's, else the prefix's.

    colcon's isolated install has install/setup.bash above install/autopilot_ros; a merged
    install or a binary one (/opt/ros/<distro>) has setup.bash in the prefix itself.
    """
    environ = os.environ if environ is None else environ
    if prefix is None:
        try:
            from ament_index_python.packages import get_package_prefix

            prefix = get_package_prefix('autopilot_ros')
        except Exception:  # noqa: BLE001 - not found: say what to do
            raise ServiceError('autopilot_ros is not in the ament index: source the '
                               "workspace's install/setup.bash first, or pass --setup"
                               ) from None
    candidates = [Path(prefix).parent / 'setup.bash', Path(prefix) / 'setup.bash']
    candidates += [Path(p) / 'setup.bash' for p in
                   environ.get('COLCON_PREFIX_PATH', '').split(os.pathsep) if p]
    for path in candidates:
        if path.is_file():
            return str(path.resolve())
    raise ServiceError(f'no setup.bash beside {prefix}: pass --setup with the file you '
                       'source for ROS and this package')


def carried_env(environ: Mapping[str, str], extra: Sequence[str]) -> dict[str, str]:
    env = {k: environ[k] for k in CARRIED_ENV if environ.get(k)}
    env.setdefault('ROS_DOMAIN_ID', '0')
    env['PYTHONUNBUFFERED'] = '1'  # the journal gets log lines as they happen
    for item in extra:
        key, sep, value = item.partition('=')
        if not sep:
            raise ServiceError(f'--env {item!r} must be KEY=VALUE')
        env[key] = value
    return env


def template_path() -> Path:
    """The installed template (share/autopilot_ros/systemd), else the source checkout's."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory('autopilot_ros')) / 'systemd')
    except Exception:  # noqa: BLE001
        pass
    candidates.append(Path(__file__).resolve().parents[1] / 'systemd')
    for folder in candidates:
        if (folder / UNIT_TEMPLATE).is_file():
            return folder / UNIT_TEMPLATE
    raise ServiceError(f'{UNIT_TEMPLATE} not found in {", ".join(map(str, candidates))}: '
                       'rebuild and install the package')


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def primary_group(user: str) -> str:
    """An existing user's own group; a user still to be created gets one of its name."""
    try:
        return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    except KeyError:
        return user


def _groups_present(names: Sequence[str]) -> tuple[str, ...]:
    present = []
    for name in names:
        try:
            grp.getgrnam(name)
            present.append(name)
        except KeyError:
            pass
    return tuple(present)


Runner = Callable[[list[str]], None]


def _run(cmd: list[str]) -> None:
    print('+ ' + ' '.join(cmd), flush=True)
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise ServiceError(f'`{" ".join(cmd)}` failed (exit {result.returncode})')


def install(config: ServiceConfig, unit_text: str, *, unit_dir: str = '/etc/systemd/system',
            run: Runner = _run, as_root: bool | None = None) -> Path:
    """Create the user if needed, write the unit, reload systemd, enable and start it."""
    as_root = os.geteuid() == 0 if as_root is None else as_root
    sudo = [] if as_root else ['sudo']
    if not _user_exists(config.user):
        run(sudo + ['useradd', '--system', '--user-group', '--create-home', '--home-dir',
                    DEFAULT_HOME, '--shell', '/usr/sbin/nologin', config.user])
    if config.groups:
        run(sudo + ['usermod', '--append', '--groups', ','.join(config.groups), config.user])
    # The service user must read the workspace (a home folder of mode 0700 stops it).
    as_user = ['sudo', '-u', config.user] if sudo else ['runuser', '-u', config.user, '--']
    try:
        run(as_user + ['test', '-r', config.setup])
    except ServiceError:
        raise ServiceError(
            f'{config.user} cannot read {config.setup}: move the workspace out of your home '
            f'folder (e.g. /opt/autopilot_ws) or let others in (chmod o+x on the folders '
            'above it)') from None
    target = Path(unit_dir) / f'{config.name}.service'
    with tempfile.NamedTemporaryFile('w', suffix='.service', delete=False) as tmp:
        tmp.write(unit_text)
    try:
        run(sudo + ['install', '-D', '-m', '0644', tmp.name, str(target)])
    finally:
        os.unlink(tmp.name)
    run(sudo + ['systemctl', 'daemon-reload'])
    run(sudo + ['systemctl', 'enable', '--now', f'{config.name}.service'])
    return target


def uninstall(name: str, *, unit_dir: str = '/etc/systemd/system', run: Runner = _run,
              as_root: bool | None = None) -> None:
    as_root = os.geteuid() == 0 if as_root is None else as_root
    sudo = [] if as_root else ['sudo']
    run(sudo + ['systemctl', 'disable', '--now', f'{name}.service'])
    run(sudo + ['rm', '-f', str(Path(unit_dir) / f'{name}.service')])
    run(sudo + ['systemctl', 'daemon-reload'])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='install-service',
        description='Start the autopilot at boot: a systemd service running `ros2 launch '
                    'autopilot_ros autopilot.launch.py` as a dedicated user, restarted on '
                    'failure and when its control tick stops (the systemd watchdog).')
    p.add_argument('launch_args', nargs='*', metavar='NAME:=VALUE',
                   help='launch arguments, e.g. model_path:=shipped namespace:=boat')
    p.add_argument('--print', action='store_true', help='print the unit and change nothing')
    p.add_argument('--setup', help='the ROS setup file to source (default: the workspace '
                                   'that holds this autopilot_ros)')
    p.add_argument('--user', default=DEFAULT_USER,
                   help=f'the user the service runs as, created if missing (default '
                        f'{DEFAULT_USER}; it joins {", ".join(INSTRUMENT_GROUPS)} for serial '
                        'instruments)')
    p.add_argument('--env', action='append', default=[], metavar='KEY=VALUE',
                   help='environment for the service (ROS_DOMAIN_ID and the ROS_* of this '
                        'shell are carried over)')
    p.add_argument('--watchdog-sec', type=float, default=5.0,
                   help='restart when the control tick has not run for this long (default 5)')
    p.add_argument('--name', default='autopilot_ros', help='the unit name')
    p.add_argument('--unit-dir', default='/etc/systemd/system', help=argparse.SUPPRESS)
    p.add_argument('--uninstall', action='store_true',
                   help='stop and disable the service and remove its unit')
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if not re.match(r'^[A-Za-z0-9_.@-]+$', args.name):
            raise ServiceError(f'{args.name!r} is not a unit name')
        if args.uninstall:
            uninstall(args.name, unit_dir=args.unit_dir)
            print(f'{args.name}.service stopped, disabled and removed.')
            return 0
        setup = args.setup or default_setup_file()
        if not Path(setup).is_file():
            raise ServiceError(f'{setup}: no such setup file')
        config = ServiceConfig(
            setup=str(Path(setup).resolve()), user=args.user, group=primary_group(args.user),
            groups=_groups_present(INSTRUMENT_GROUPS), launch_args=tuple(args.launch_args),
            env=carried_env(os.environ, args.env), watchdog_sec=args.watchdog_sec,
            name=args.name)
        unit = render_unit(template_path().read_text(encoding='utf-8'), config)
        if args.print:
            sys.stdout.write(unit)
            return 0
        target = install(config, unit, unit_dir=args.unit_dir)
    except ServiceError as exc:
        print(f'install-service: {exc}', file=sys.stderr)
        return 2
    print(f'\n{target} installed; the autopilot starts now and at every boot.\n'
          f'  journalctl -u {args.name} -f        # its log\n'
          f'  systemctl status {args.name}        # running? restarted?\n'
          f'  sudo systemctl stop {args.name}     # stop it (until the next boot)\n'
          f'  sudo systemctl disable {args.name}  # do not start it at boot\n'
          f'  install-service --uninstall        # remove it')
    return 0


if __name__ == '__main__':
    sys.exit(main())
