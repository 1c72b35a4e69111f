"""A real signalk-server on this machine, for the bridge's tests, its bench and bench demos.

`make signalk-server` installs the server from npm, pinned by
tools/signalk-server/package-lock.json, into ~/.cache/autopilot_ros/signalk-server. This
module starts it with a fresh configuration folder of its own: on loopback only (the
listening socket is bound here to 127.0.0.1 on a free port and handed over as systemd
socket activation, `LISTEN_FDS`, which the server supports; so no port race, and the socket
outlives a restart of the server), with its TCP, NMEA 0183 TCP, mDNS, app store and MFD
announcements off, optionally replaying one of the recordings from real boats the server
ships (`samples/aava-n2k.data`, NMEA 2000 from the Arcona 34 Aava; `samples/plaka.log`,
NMEA 0183), optionally with security on and a token for a read-only user.

Not for the boat: there, the server OpenPlotter (or `npm install -g signalk-server`)
installed is configured in its own admin page.

    python -m autopilot_ros.instruments.signalk_server --port 3010

runs one (no recording, no security) until SIGINT or SIGTERM: the server the launch file
starts for `sim:=true instruments:=signalk`, which the simulator writes to and the bridge
reads, with a configuration folder that is removed when it stops.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ENV_SERVER_DIR = 'AUTOPILOT_SIGNALK_SERVER'
DEFAULT_SERVER_DIR = (pathlib.Path.home() / '.cache' / 'autopilot_ros' / 'signalk-server'
                      / 'node_modules' / 'signalk-server')
SAMPLES = {'n2k': ('NMEA2000JS', 'samples/aava-n2k.data'),
           'nmea0183': ('NMEA0183', 'samples/plaka.log')}
READ_USER = 'autopilot'
MIN_NODE = 20  # signalk-server 2.23's engines


class SignalKServerUnavailable(RuntimeError):
    """Node.js or the server is not installed; the message says what to do."""


def node_executable() -> str | None:
    return shutil.which('node')


def find_server_dir() -> pathlib.Path:
    """The installed signalk-server package: $AUTOPILOT_SIGNALK_SERVER, else the cache, else
    the one on PATH (`npm install -g signalk-server`, as OpenPlotter installs it)."""
    candidates = [os.environ.get(ENV_SERVER_DIR), str(DEFAULT_SERVER_DIR)]
    on_path = shutil.which('signalk-server')
    if on_path:  # .../node_modules/signalk-server/bin/signalk-server, through a link
        candidates.append(str(pathlib.Path(on_path).resolve().parents[1]))
    for candidate in candidates:
        if candidate and (pathlib.Path(candidate) / 'bin' / 'signalk-server').is_file():
            return pathlib.Path(candidate)
    raise SignalKServerUnavailable(
        f'signalk-server is not installed (looked in ${ENV_SERVER_DIR}, '
        f'{DEFAULT_SERVER_DIR} and PATH): run `make signalk-server`')


def check_node() -> str:
    """The node executable, if it is there and new enough; else why not."""
    node = node_executable()
    if node is None:
        raise SignalKServerUnavailable('Node.js is not installed (apt-get install nodejs)')
    version = subprocess.run([node, '--version'], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    try:
        major = int(version.lstrip('v').split('.')[0])
    except ValueError:
        major = 0
    if major < MIN_NODE:
        raise SignalKServerUnavailable(f'signalk-server needs Node.js >= {MIN_NODE}, found '
                                       f'{version or "an unknown version"}')
    return node


class LocalSignalKServer:
    """One signalk-server process on a loopback port of its own; `start`, `kill`, `close`."""

    def __init__(self, config_dir: pathlib.Path, *, sample: str | None = 'n2k',
                 security: bool = False, tls: str = '',
                 server_dir: pathlib.Path | None = None, port: int = 0,
                 die_with_parent: bool = False) -> None:
        if sample is not None and sample not in SAMPLES:
            raise ValueError(f"sample '{sample}' is not one of {', '.join(SAMPLES)}")
        self.node = check_node()
        self.server_dir = server_dir or find_server_dir()
        self.config_dir = pathlib.Path(config_dir)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.sample = sample
        self.security = security
        # '': plain HTTP and ws. 'server': HTTPS and wss with the certificate the server
        # makes itself (a 1024-bit RSA key, which OpenSSL 3 refuses). 'rsa2048': with one
        # made here by openssl, as a boat should have.
        if tls not in ('', 'server', 'rsa2048'):
            raise ValueError(f"tls '{tls}' is not one of '', 'server', 'rsa2048'")
        self.tls = tls
        self.token = ''
        self.log_path = self.config_dir / 'server.log'
        self.process: subprocess.Popen | None = None
        # The server gets SIGKILL when the thread that started it dies (PR_SET_PDEATHSIG):
        # for a process that only holds the server (the CLI below), so that no orphan keeps
        # the port when it is killed.
        self.die_with_parent = die_with_parent
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind(('127.0.0.1', port))
        except OSError as exc:
            self._listener.close()
            raise SignalKServerUnavailable(
                f'cannot listen on 127.0.0.1:{port} ({exc.strerror}): another server there?'
            ) from None
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._write_settings()
        if security:
            self._write_security()
        if tls == 'rsa2048':
            self._write_certificate()

    @property
    def url(self) -> str:
        return f'{"wss" if self.tls else "ws"}://127.0.0.1:{self.port}'

    @property
    def http_url(self) -> str:
        return f'{"https" if self.tls else "http"}://127.0.0.1:{self.port}'

    @property
    def certificate(self) -> pathlib.Path:
        """The self-signed certificate the server writes on its first start with TLS."""
        return self.config_dir / 'ssl-cert.pem'

    def sample_file(self) -> pathlib.Path:
        if self.sample is None:
            raise ValueError('this server replays no sample')
        return self.server_dir / SAMPLES[self.sample][1]

    def _write_settings(self) -> None:
        providers = []
        if self.sample is not None:
            data_type, _ = SAMPLES[self.sample]
            providers.append({
                'id': f'{self.sample}-sample', 'enabled': True,
                'pipeElements': [{'type': 'providers/simple', 'options': {
                    'logging': False, 'type': 'FileStream',
                    'subOptions': {'dataType': data_type,
                                   'filename': str(self.sample_file())}}}]})
        settings = {
            'mdns': False, 'ssl': bool(self.tls), 'pipedProviders': providers,
            'interfaces': {'tcp': False, 'nmea-tcp': False, 'appstore': False,
                           'mfd_webapp': False},
        }
        if self.security:
            settings['security'] = {'strategy': './tokensecurity'}
        (self.config_dir / 'settings.json').write_text(json.dumps(settings, indent=2))

    def _write_certificate(self) -> None:
        """A self-signed RSA-2048 certificate for localhost, where the server looks first."""
        done = subprocess.run(
            ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30',
             '-subj', '/CN=localhost', '-keyout', str(self.config_dir / 'ssl-key.pem'),
             '-out', str(self.certificate)], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise SignalKServerUnavailable(f'openssl failed: {done.stderr.strip()[:200]}')
        for name in ('ssl-key.pem', 'ssl-cert.pem'):  # the server insists on 0600
            (self.config_dir / name).chmod(0o600)

    def _write_security(self) -> None:
        """Security on, no read-only access without a token, one read-only user."""
        security = {'allow_readonly': False, 'expiration': 'NEVER',
                    'secretKey': secrets.token_hex(64), 'immutableConfig': True,
                    'allowNewUserRegistration': False, 'allowDeviceAccessRequests': False,
                    'users': [{'username': READ_USER, 'type': 'read'}], 'devices': [],
                    'acls': []}
        path = self.config_dir / 'security.json'
        path.write_text(json.dumps(security, indent=2))
        path.chmod(0o600)
        done = subprocess.run(
            [self.node, str(self.server_dir / 'bin' / 'signalk-generate-token'), '-u',
             READ_USER, '-e', '1y', '-s', str(path)],
            capture_output=True, text=True, timeout=60)
        self.token = done.stdout.strip()
        if done.returncode != 0 or self.token.count('.') != 2:
            raise SignalKServerUnavailable(
                f'signalk-generate-token failed: {done.stderr.strip()[:200]}')

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it answers HTTP on its port."""
        if self.process is not None and self.process.poll() is None:
            return
        listen_fd = self._listener.fileno()
        prctl = ctypes.CDLL(None).prctl if self.die_with_parent else None  # before the fork
        env = dict(os.environ, LISTEN_FDS='1', SIGNALK_DISABLE_SERVER_UPDATES='1',
                   SKIP_ADMINUI_VERSION_CHECK='1', NODE_ENV='production')
        env.pop('PORT', None)
        log = open(self.log_path, 'ab')  # noqa: SIM115 - the child keeps writing to it

        def _socket_as_fd3() -> None:  # systemd socket activation: the socket is fd 3
            if listen_fd != 3:
                os.dup2(listen_fd, 3)
            os.set_inheritable(3, True)
            if prctl is not None:
                prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

        try:
            self.process = subprocess.Popen(
                [self.node, str(self.server_dir / 'bin' / 'signalk-server'),
                 '-c', str(self.config_dir)],
                cwd=self.config_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, close_fds=False,  # fds are O_CLOEXEC (PEP 446)
                preexec_fn=_socket_as_fd3, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f'signalk-server exited with {self.process.returncode}: '
                                   f'{self.log_tail()}')
            if self.answers():
                return
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f'signalk-server did not answer within {timeout:g} s: '
                           f'{self.log_tail()}')

    def answers(self) -> bool:
        handlers: list = [urllib.request.ProxyHandler({})]
        if self.tls:  # up or not is all this asks; the tests check the certificate
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(f'{self.http_url}/signalk', timeout=1.0) as response:
                return response.status == 200
        except (OSError, ValueError):
            return False

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors='replace')[-n:]
        except OSError:
            return ''

    def kill(self) -> None:
        """SIGKILL the server (a crash, as far as its clients can tell); the port stays."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.stop()
        self._listener.close()

    def __enter__(self) -> LocalSignalKServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """Run a throwaway server on a loopback port until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog='python -m autopilot_ros.instruments.signalk_server',
        description='A throwaway signalk-server on 127.0.0.1 (no recording, no security), '
                    'for the simulator and the bridge; stops on SIGINT or SIGTERM.')
    parser.add_argument('--port', type=int, default=3010, help='loopback port (0: any)')
    args = parser.parse_args(argv)
    stop: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop.append(signum)
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    config = pathlib.Path(tempfile.mkdtemp(prefix='signalk-'))
    server = None
    try:
        server = LocalSignalKServer(config, sample=None, port=args.port, die_with_parent=True)
        server.start()
        print(f'signalk-server at {server.url} (config {config}); stop with Ctrl-C', flush=True)
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        print(f'signalk-server exited ({server.process.returncode}): {server.log_tail(500)}',
              file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    except (SignalKServerUnavailable, RuntimeError) as exc:
        print(f'signalk_server: {exc}', file=sys.stderr, flush=True)
        return 2
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # closing must not be cut short
        if server is not None:
            server.close()
        shutil.rmtree(config, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
