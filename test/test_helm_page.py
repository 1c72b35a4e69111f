"""The helm page in a real browser, against the real autopilot and the simulated boat.

autopilot_node, sim_node and helm_node run as the installed executables over DDS; the
test listens to `heading` and `autopilot/status` itself, drives Debian's headless Chromium
through chromedriver (selenium), and checks that the page shows what the topics say, that
the keypad is locked without the token, and that ENGAGE, +10 and TACK move the
autopilot's target as a sailor expects. A screenshot is kept under
build/test-artifacts/. `make test` installs chromium and chromium-driver.
"""

import math
import pathlib
import shutil
import socket
import subprocess
import threading
import time

import pytest

pytestmark = pytest.mark.dds

REPO = pathlib.Path(__file__).resolve().parents[1]

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMEDRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'
TOKEN = 'harbour-0142'
ARTIFACTS = REPO / 'build' / 'test-artifacts'
BUTTONS = ('btn-m10', 'btn-m1', 'btn-p1', 'btn-p10', 'btn-standby', 'btn-engage', 'btn-tack')
# Flags that keep Chromium from calling home on a closed network (where it stalls).
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                  '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
                  '--window-size=1000,1150')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Listener:
    """Keeps what the topics said, with receive times, to compare the page against."""

    def __init__(self, context) -> None:
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        from autopilot_ros.msg import AutopilotStatus, Heading
        self.lock = threading.Lock()
        self.headings: list[tuple[float, float]] = []  # (monotonic, deg)
        self.status = []  # (monotonic, msg)
        self.node = Node('helm_page_test', context=context)
        self.node.create_subscription(Heading, 'heading', self._heading,
                                      qos_profile_sensor_data)
        self.node.create_subscription(AutopilotStatus, 'autopilot/status', self._status,
                                      QoSProfile(depth=50,
                                                 reliability=ReliabilityPolicy.RELIABLE))

    def _heading(self, msg) -> None:
        with self.lock:
            self.headings.append((time.monotonic(), math.degrees(msg.heading) % 360.0))
            del self.headings[:-200]

    def _status(self, msg) -> None:
        with self.lock:
            self.status.append((time.monotonic(), msg))
            del self.status[:-200]

    def last_status(self):
        with self.lock:
            return self.status[-1][1] if self.status else None

    def recent_headings(self, seconds: float) -> list[float]:
        with self.lock:
            now = time.monotonic()
            return [h for t, h in self.headings if now - t <= seconds]


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


@pytest.fixture
def listener(rclpy_context, spinner):
    """Made before the nodes start, so discovery has found them by the time it matters."""
    listener = Listener(rclpy_context)
    spinner.add(listener.node)
    return listener


@pytest.fixture
def boat(tmp_path, wait):
    """autopilot_node, sim_node (close-hauled in a chop, sailing until stopped), helm_node."""
    from ament_index_python.packages import get_package_prefix
    lib = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros'
    token_file = tmp_path / 'helm_token'
    token_file.write_text(TOKEN + '\n')
    token_file.chmod(0o600)
    port = _free_port()
    commands = {
        'autopilot': [str(lib / 'autopilot_node'), '--ros-args', '-p', 'use_sim_time:=true',
                      '-p', 'stamp_future_tolerance:=0.1'],
        'sim': [str(lib / 'sim_node'), '--ros-args', '-p', 'scenario:=upwind_chop',
                '-p', 'real_time_factor:=1.0', '-p', 'lockstep:=true', '-p', 'repeat:=true',
                '-p', 'engage_autopilot:=false'],
        'helm': [str(lib / 'helm_node'), '--ros-args', '-p', f'port:={port}',
                 '-p', f'access_token_file:={token_file}'],
    }
    procs, logs = {}, {}
    try:
        for name, cmd in commands.items():
            logs[name] = tmp_path / f'{name}.log'
            procs[name] = subprocess.Popen(cmd, stdout=open(logs[name], 'w'),
                                           stderr=subprocess.STDOUT, cwd=tmp_path)
        assert wait(lambda: 'helm page: http' in logs['helm'].read_text(), 30.0), \
            logs['helm'].read_text()
        yield f'http://127.0.0.1:{port}/', logs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for name, log in logs.items():
            assert 'Traceback' not in log.read_text(), f'{name}:\n{log.read_text()}'


@pytest.fixture
def browser(tmp_path):
    if not (pathlib.Path(CHROMIUM).exists() and pathlib.Path(CHROMEDRIVER).exists()):
        pytest.fail(f'the helm page test needs {CHROMIUM} and {CHROMEDRIVER}: `make test` '
                    'installs them (apt-get install chromium chromium-driver)')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f'--user-data-dir={tmp_path / "chromium-profile"}')
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_the_helm_page_shows_the_boat_and_its_buttons_steer_the_autopilot(
        listener, boat, browser, wait):
    url, logs = boat
    wait_for = wait
    page = browser
    page.get(url)
    text = lambda element_id: page.find_element('id', element_id).text  # noqa: E731

    def shows(element_id: str, value: str, timeout: float = 20.0) -> bool:
        return wait_for(lambda: text(element_id) == value, timeout, 0.1)

    def number(element_id: str) -> float | None:
        try:
            return float(text(element_id))
        except ValueError:
            return None

    def shows_angle(element_id: str, deg: float, timeout: float = 5.0) -> bool:
        """The page prints one decimal of a value the server rounded to two."""
        return wait_for(lambda: (n := number(element_id)) is not None
                        and _angle_diff(n, deg) <= 0.06, timeout, 0.1)

    assert shows('link', 'connected'), page.page_source[:2000]
    assert shows('pilot', 'autopilot', 40.0), logs['autopilot'].read_text()[-3000:]
    assert wait_for(lambda: text('heading') not in ('', '\u2013'), 20.0, 0.1)
    assert text('mode') == 'STANDBY' and text('policy') == 'standby'

    # Locked: no token entered yet, every button disabled; a wrong token changes nothing.
    def disabled() -> dict:
        return {b: not page.find_element('id', b).is_enabled() for b in BUTTONS}
    assert all(disabled().values()), disabled()
    assert 'Enter the access token' in text('lock-note')
    page.find_element('id', 'token').send_keys('harbour-9999')
    page.find_element('id', 'unlock').click()
    assert shows('result', 'wrong token')
    assert all(disabled().values()), disabled()

    # The right token: engage and standby open; the nudges wait until the pilot steers.
    page.find_element('id', 'token').send_keys(TOKEN)
    page.find_element('id', 'unlock').click()
    assert shows('result', 'helm unlocked')
    assert wait_for(lambda: not disabled()['btn-engage'], 5.0, 0.1), disabled()
    assert disabled()['btn-p10'] and disabled()['btn-tack']

    page.find_element('id', 'btn-engage').click()
    assert wait_for(lambda: (s := listener.last_status()) is not None
                    and s.mode == 'compass' and s.engaged, 10.0), text('result')
    assert shows('mode', 'COMPASS')
    assert wait_for(lambda: not disabled()['btn-p10'], 5.0, 0.1), disabled()

    # What the page shows is what the topics say: heading (one of the last 3 s of
    # readings, to the 0.1 deg the page prints), target, and the policy by name.
    from autopilot_ros.pilot import POLICY_NAMES
    # (best-effort sensor data reaches a new subscriber once discovery has matched it)
    assert wait_for(lambda: len(listener.recent_headings(3.0)) >= 10, 20.0, 0.1), \
        listener.headings
    for _ in range(3):
        shown = float(text('heading'))
        recent = listener.recent_headings(3.0)
        assert recent and min(_angle_diff(shown, h) for h in recent) <= 0.06, (
            shown, recent, [(round(time.monotonic() - t, 2), round(h, 2))
                            for t, h in listener.headings[-30:]])
        time.sleep(0.4)
    status = listener.last_status()
    target = math.degrees(status.target) % 360.0
    assert shows_angle('target', target), (text('target'), target)
    assert shows('policy', POLICY_NAMES[status.policy], 5.0)
    assert text('policy') == 'pid'

    # +10: the autopilot's own target moves by exactly 10 degrees to starboard.
    page.find_element('id', 'btn-p10').click()
    wanted = (target + 10.0) % 360.0
    assert wait_for(lambda: _angle_diff(math.degrees(listener.last_status().target),
                                        wanted) < 1e-6, 10.0), (text('result'), wanted)
    assert shows_angle('target', wanted), (text('target'), wanted)
    assert text('result').startswith('compass ')
    assert wait_for(lambda: text('last').startswith('Last command: compass '), 5.0, 0.1)

    # The plot has drawn something by now, and this is what a sailor sees.
    time.sleep(2.0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / 'helm_page.png'
    page.save_screenshot(str(shot))
    print(f'\nhelm page screenshot: {shot}')
    assert shot.stat().st_size > 10_000

    # TACK: one tap arms it, the second sends it. Close-hauled on starboard tack, the
    # target turns through the wind to starboard by twice the true wind angle.
    before = math.degrees(listener.last_status().target)
    page.find_element('id', 'btn-tack').click()
    assert shows('btn-tack', 'TACK? again', 2.0)
    page.find_element('id', 'btn-tack').click()
    assert wait_for(lambda: _angle_diff(math.degrees(listener.last_status().target),
                                        before) > 20.0, 10.0), text('result')
    turn = (math.degrees(listener.last_status().target) - before) % 360.0
    assert 40.0 < turn < 160.0, (turn, text('result'))
    assert 'tack: turning' in text('result') and 'to starboard' in text('result')

    page.find_element('id', 'btn-standby').click()
    assert wait_for(lambda: listener.last_status().mode == 'standby', 10.0), text('result')
    assert shows('mode', 'STANDBY')
    helm_log = logs['helm'].read_text()
    assert 'engage: compass' in helm_log and 'nudge +10: compass' in helm_log, helm_log
