"""The boot service: the systemd unit, its installer, and the node's notify/watchdog.

The notify helper talks to a real unix datagram socket standing in for systemd's
NOTIFY_SOCKET, and so does the installed autopilot node. The unit is checked by
`systemd-analyze verify` where systemd is installed.
"""

import os
from pathlib import Path
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from autopilot_ros.service import (
    ServiceConfig,
    ServiceError,
    carried_env,
    default_setup_file,
    install,
    render_unit,
)
from autopilot_ros.systemd_notify import SystemdNotifier

REPO = Path(__file__).resolve().parents[1]


def _template() -> str:
    from autopilot_ros.service import template_path

    try:
        return template_path().read_text()
    except ServiceError:  # the pip route installs no share folder: the checkout's
        return (REPO / 'systemd' / 'autopilot_ros.service.in').read_text()


def _config(tmp_path: Path, **kwargs) -> ServiceConfig:
    setup = tmp_path / 'ws' / 'install' / 'setup.bash'
    setup.parent.mkdir(parents=True, exist_ok=True)
    setup.write_text('# a ROS setup file\n')
    values = dict(setup=str(setup), user='root', group='root', groups=('dialout',),
                  launch_args=('model_path:=shipped', 'namespace:=boat'),
                  env={'ROS_DOMAIN_ID': '42', 'PYTHONUNBUFFERED': '1'})
    values.update(kwargs)
    return ServiceConfig(**values)


# -- the unit --------------------------------------------------------------------------------
def test_the_unit_runs_the_launch_file_as_the_user_with_the_watchdog(tmp_path):
    config = _config(tmp_path, user='autopilot', group='autopilot', watchdog_sec=4)
    unit = render_unit(_template(), config)
    lines = unit.splitlines()
    assert not re.search(r'@[A-Z_]+@', unit)  # every field filled
    for line in ('Type=notify', 'NotifyAccess=all', 'WatchdogSec=4', 'User=autopilot',
                 'Group=autopilot', 'SupplementaryGroups=dialout', 'Restart=on-failure',
                 'KillSignal=SIGINT', 'Environment=ROS_DOMAIN_ID=42',
                 'WantedBy=multi-user.target'):
        assert line in lines, line
    (start,) = [x for x in lines if x.startswith('ExecStart=')]
    assert start == (f"ExecStart=/bin/bash -c 'source {config.setup} && exec ros2 launch "
                     "autopilot_ros autopilot.launch.py model_path:=shipped namespace:=boat'")


@pytest.mark.parametrize('change, message', [
    ({'setup': '/home/my boat/ws/setup.bash'}, 'setup file'),
    ({'launch_args': ('model_path:=/m/100%.onnx',)}, 'launch argument'),
    ({'launch_args': ('model_path=/m.onnx',)}, 'must be name:=value'),
    ({'env': {'ROS_DOMAIN_ID': '1; rm -rf /'}}, 'ROS_DOMAIN_ID'),
    ({'user': 'Bad User'}, 'not a user name'),
    ({'watchdog_sec': 0.1}, 'between 1 and 600'),
])
def test_a_value_the_unit_cannot_carry_is_refused_in_one_line(tmp_path, change, message):
    with pytest.raises(ServiceError, match=message) as err:
        render_unit(_template(), _config(tmp_path, **change))
    assert '\n' not in str(err.value)


def test_systemd_analyze_verifies_the_unit(tmp_path):
    exe = shutil.which('systemd-analyze')
    if exe is None:
        pytest.skip('systemd-analyze is not installed (apt-get install systemd): the unit '
                    'is checked where systemd is')
    unit = tmp_path / 'autopilot_ros.service'
    unit.write_text(render_unit(_template(), _config(tmp_path)))
    ok = subprocess.run([exe, 'verify', str(unit)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and not ok.stderr.strip(), ok.stderr
    # The check can fail: a misspelt directive is reported.
    unit.write_text(unit.read_text().replace('Type=notify', 'Type=notifyy'))
    bad = subprocess.run([exe, 'verify', str(unit)], capture_output=True, text=True, timeout=60)
    assert 'notifyy' in bad.stderr


def test_install_writes_the_unit_then_reloads_enables_and_starts(tmp_path):
    """No systemd runs in a container: systemctl and the user checks are recorded, the
    unit is really installed (into a folder of the test's)."""
    config = _config(tmp_path, user='root')
    unit = render_unit(_template(), config)
    done: list[list[str]] = []

    def run(cmd: list[str]) -> None:
        done.append(cmd)
        if cmd[0] == 'install':
            subprocess.run(cmd, check=True)

    target = install(config, unit, unit_dir=str(tmp_path / 'units'), run=run, as_root=True)
    assert target.read_text() == unit
    assert [c[0] for c in done] == ['usermod', 'runuser', 'install', 'systemctl', 'systemctl']
    assert done[0] == ['usermod', '--append', '--groups', 'dialout', 'root']
    assert done[1][-3:] == ['test', '-r', config.setup]
    assert done[-2:] == [['systemctl', 'daemon-reload'],
                         ['systemctl', 'enable', '--now', 'autopilot_ros.service']]
    done.clear()
    install(config, unit, unit_dir=str(tmp_path / 'units2'), run=run, as_root=False)
    assert all(c[0] == 'sudo' for c in done)  # not root: each privileged step via sudo


def test_a_user_that_cannot_read_the_workspace_is_told_what_to_do(tmp_path):
    config = _config(tmp_path, user='root')

    def run(cmd: list[str]) -> None:
        if 'test' in cmd:
            raise ServiceError('exit 1')

    with pytest.raises(ServiceError, match=r'cannot read .*chmod o\+x'):
        install(config, 'unit', unit_dir=str(tmp_path), run=run, as_root=True)


def test_the_setup_file_and_the_environment_come_from_this_install(tmp_path):
    prefix = tmp_path / 'ws' / 'install' / 'autopilot_ros'
    prefix.mkdir(parents=True)
    (prefix.parent / 'setup.bash').write_text('')
    assert default_setup_file({}, str(prefix)) == str((prefix.parent / 'setup.bash').resolve())
    with pytest.raises(ServiceError, match='pass --setup'):
        default_setup_file({}, str(tmp_path / 'nowhere'))
    env = carried_env({'ROS_DOMAIN_ID': '7', 'HOME': '/root', 'RMW_IMPLEMENTATION': 'x'},
                      ['ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET'])
    assert env == {'ROS_DOMAIN_ID': '7', 'RMW_IMPLEMENTATION': 'x', 'PYTHONUNBUFFERED': '1',
                   'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}
    assert carried_env({}, [])['ROS_DOMAIN_ID'] == '0'


@pytest.mark.dds  # the installed executable
def test_install_service_print_shows_the_unit_and_changes_nothing(tmp_path):
    from ament_index_python.packages import get_package_prefix

    exe = Path(get_package_prefix('autopilot_ros')) / 'lib' / 'autopilot_ros' / 'install-service'
    out = subprocess.run([str(exe), '--print', 'model_path:=shipped', '--user', 'root'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert 'Type=notify' in out.stdout and 'model_path:=shipped' in out.stdout
    assert 'User=root' in out.stdout and 'Group=root' in out.stdout
    setup = [x for x in out.stdout.splitlines() if x.startswith('ExecStart=')][0]
    assert Path(setup.split('source ')[1].split(' &&')[0]).is_file()
    bad = subprocess.run([str(exe), '--print', '--setup', str(tmp_path / 'none.bash')],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr == f'install-service: {tmp_path / "none.bash"}: no such setup file\n'


# -- READY=1 and WATCHDOG=1 ------------------------------------------------------------------
class FakeSystemd:
    """A unix datagram socket where systemd's would be: what the service would send."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path if not path.startswith('@') else '\0' + path[1:])
        self.sock.settimeout(0.05)

    def received(self, wait: float = 0.0) -> list[str]:
        out, deadline = [], time.monotonic() + wait
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except TimeoutError:
                if time.monotonic() >= deadline:
                    return out

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize('abstract', [False, True])
def test_ready_once_then_a_watchdog_ping_at_half_the_timeout(tmp_path, abstract):
    address = f'@autopilot-test-{os.getpid()}' if abstract else str(tmp_path / 'notify')
    systemd = FakeSystemd(address)
    now = [100.0]
    notifier = SystemdNotifier(environ={'NOTIFY_SOCKET': address, 'WATCHDOG_USEC': '2000000'},
                               clock=lambda: now[0])
    try:
        assert notifier.enabled and notifier.watchdog_interval == pytest.approx(1.0)
        notifier.tick('steering: pid')
        assert systemd.received() == ['READY=1\nSTATUS=steering: pid', 'WATCHDOG=1']
        now[0] += 0.5
        notifier.tick()  # a tick at 10 Hz: no ping until half the timeout has passed
        assert systemd.received() == []
        now[0] += 0.5
        notifier.tick()
        assert systemd.received() == ['WATCHDOG=1']
        notifier.stopping()
        assert systemd.received() == ['STOPPING=1']
        assert notifier.errors == 0
    finally:
        systemd.close()


def test_outside_systemd_nothing_is_sent_and_a_broken_socket_never_raises(tmp_path):
    quiet = SystemdNotifier(environ={})
    quiet.tick()
    assert not quiet.enabled and not quiet.ready_sent
    logged: list[str] = []
    broken = SystemdNotifier(logged.append,
                             environ={'NOTIFY_SOCKET': str(tmp_path / 'gone'),
                                      'WATCHDOG_USEC': '1000000'})
    for _ in range(3):
        broken.tick()
    assert broken.errors == 1 and len(logged) == 1 and 'NOTIFY_SOCKET' in logged[0]
    # systemd gone after the start: counted, logged once, the tick goes on.
    path = str(tmp_path / 'notify')
    systemd = FakeSystemd(path)
    notifier = SystemdNotifier(logged.append, environ={'NOTIFY_SOCKET': path,
                                                       'WATCHDOG_USEC': '1'})
    notifier.tick()
    systemd.close()
    os.unlink(path)
    notifier.tick()
    notifier.tick()
    assert notifier.errors == 2 and len(logged) == 2


@pytest.mark.dds  # the installed node
def test_the_node_says_ready_and_pings_the_watchdog_from_its_tick(tmp_path):
    from ament_index_python.packages import get_package_prefix

    exe = Path(get_package_prefix('autopilot_ros')) / 'lib' / 'autopilot_ros' / 'autopilot_node'
    path = str(tmp_path / 'notify')
    systemd = FakeSystemd(path)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC='1000000')  # a ping each 0.5 s
    node = subprocess.Popen([str(exe)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        got: list[str] = []
        deadline = time.monotonic() + 60
        while sum(m == 'WATCHDOG=1' for m in got) < 5 and time.monotonic() < deadline:
            got += systemd.received(0.1)
        assert got and got[0].startswith('READY=1\nSTATUS=steering: '), got
        assert sum(m.startswith('READY=1') for m in got) == 1
        assert sum(m == 'WATCHDOG=1' for m in got) >= 5, got
        # A node that stops ticking stops pinging: systemd would restart it.
        node.send_signal(signal.SIGSTOP)
        systemd.received(0.3)
        assert systemd.received(1.5) == []
        node.send_signal(signal.SIGCONT)
        assert 'WATCHDOG=1' in systemd.received(2.0)
        node.send_signal(signal.SIGINT)
        out = node.communicate(timeout=30)[0]
        assert node.returncode == 0, out
        assert 'STOPPING=1' in systemd.received(0.5)
    finally:
        if node.poll() is None:
            node.kill()
        systemd.close()
