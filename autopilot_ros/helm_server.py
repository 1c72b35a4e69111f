"""The helm page's web server: the page's files, and one WebSocket per open page.

aiohttp on an asyncio loop in a thread of its own, so the ROS executor (helm_node.py) and
the server never wait for each other. No rclpy here: the server talks to a backend with
three calls (`sample`, `history`, the coroutine `execute`), which the node provides and
the tests can provide too. Everything the page needs ships in autopilot_ros/web/: no CDN,
no internet at sea.

Security (docs/design.md, "The helm page"): every command carries the token and is checked
here, in constant time, with a lockout per address after repeated misses; a page from
another site may not open the WebSocket (Origin check), nor frame the page
(Content-Security-Policy frame-ancestors, X-Frame-Options); the page may load nothing
from elsewhere (CSP default-src 'self'). Plain HTTP sends the token in clear over the
wifi: give `tls_cert` and `tls_key` for HTTPS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import pathlib
import ssl
import threading
import time
from typing import Protocol
import urllib.parse

from aiohttp import WSMsgType, web

from autopilot_ros.helm import (
    MAX_MESSAGE_BYTES,
    NUDGES,
    TACK_MAX_TWA_DEG,
    Refused,
    TokenGate,
    parse_message,
    to_json,
)

WEB_DIR = pathlib.Path(__file__).resolve().parent / 'web'
# The page's files: only these are served, whatever the path asks for.
FILES = {
    '/': ('index.html', 'text/html; charset=utf-8'),
    '/index.html': ('index.html', 'text/html; charset=utf-8'),
    '/helm.js': ('helm.js', 'text/javascript; charset=utf-8'),
    '/helm.css': ('helm.css', 'text/css; charset=utf-8'),
    '/favicon.svg': ('favicon.svg', 'image/svg+xml'),
}
HEADERS = {
    'Content-Security-Policy': ("default-src 'self'; connect-src 'self'; img-src 'self'; "
                                "style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
                                "base-uri 'none'; form-action 'none'"),
    'X-Frame-Options': 'DENY',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
}
MAX_CLIENTS = 16  # open pages at once; a phone per crew member is plenty
SEND_TIMEOUT = 2.0  # s: a page that cannot take a state message in this long is dropped
COMMAND_TIMEOUT = 5.0  # s: a command the autopilot has not answered by then failed


class Backend(Protocol):
    """What the server needs from the boat (helm_node.HelmNode provides it)."""

    def sample(self, keep: bool = True) -> dict: ...

    def history(self) -> dict: ...

    def execute(self, action: str, degrees: float) -> Awaitable[tuple[bool, str]]: ...


class HelmServer:
    """Serves the page and its WebSocket on `host`:`port` until `stop()`.

    `start()` returns once the socket is bound, or raises OSError with the reason (a port
    in use, an address this machine does not have), so the node can say it in one line.
    """

    def __init__(self, backend: Backend, gate: TokenGate, host: str = '127.0.0.1',
                 port: int = 8080, *, ssl_context: ssl.SSLContext | None = None,
                 rate_hz: float = 5.0, log: Callable[[str], None] = print,
                 web_dir: pathlib.Path = WEB_DIR) -> None:
        self._backend = backend
        self._gate = gate
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._period = 1.0 / rate_hz
        self._log = log
        self._files = {path: ((web_dir / name).read_bytes(), ctype)
                       for path, (name, ctype) in FILES.items()}
        self._clients: set[web.WebSocketResponse] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._command_lock: asyncio.Lock | None = None
        self.port = port  # the bound port (port 0 asks for a free one)

    @property
    def url(self) -> str:
        scheme = 'https' if self._ssl else 'http'
        host = f'[{self._host}]' if ':' in self._host else self._host
        return f'{scheme}://{host}:{self.port}/'

    # -- life -----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name='helm-server', daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise OSError(f'the helm server did not start within {timeout:g} s')
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def poke(self) -> None:
        """Send the state now, between the regular updates (from any thread): a new course
        or mode shows on every page at once, not up to a period later."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and loop.is_running():
            loop.call_soon_threadsafe(wake.set)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._command_lock = asyncio.Lock()
        app = web.Application(middlewares=[self._headers])
        app.router.add_get('/ws', self._websocket)
        for path in FILES:
            app.router.add_get(path, self._file)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        try:
            await self._runner.setup()
            site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl)
            await site.start()
            addresses = self._runner.addresses
            if addresses:
                self.port = addresses[0][1]
        except BaseException as exc:  # noqa: BLE001 - handed to start() and said there
            self._error = exc if isinstance(exc, OSError) else OSError(str(exc))
            self._ready.set()
            await self._runner.cleanup()
            return
        self._ready.set()
        broadcast = asyncio.ensure_future(self._broadcast())
        await self._stop.wait()
        broadcast.cancel()
        await asyncio.gather(broadcast, return_exceptions=True)
        for ws in list(self._clients):
            await ws.close(message=b'helm stopping')
        await self._runner.cleanup()

    # -- HTTP -----------------------------------------------------------------------------
    @web.middleware
    async def _headers(self, request: web.Request, handler):
        response = await handler(request)
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    async def _file(self, request: web.Request) -> web.Response:
        body, ctype = self._files[request.path]
        return web.Response(body=body, headers={'Content-Type': ctype})

    # -- WebSocket ------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get('Origin')
        if origin is not None and urllib.parse.urlsplit(origin).netloc != request.host:
            self._log(f'helm: refused a WebSocket from page {origin!r} (not this server)')
            return web.Response(status=403, text='another site may not open the helm')
        if len(self._clients) >= MAX_CLIENTS:
            return web.Response(status=503, text=f'{MAX_CLIENTS} helm pages are open already')
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        peer = request.remote or '?'
        await ws.send_str(to_json({
            'type': 'hello', 'commands_enabled': self._gate.enabled,
            'why_disabled': self._gate.problem or '', 'nudges': list(NUDGES),
            'tack_max_twa_deg': TACK_MAX_TWA_DEG, 'secure': self._ssl is not None}))
        await ws.send_str(to_json(self._backend.history()))
        self._clients.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(to_json(await self._handle(peer, msg.data)))
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_str(to_json({'type': 'result', 'id': None, 'ok': False,
                                               'message': 'text messages only'}))
        finally:
            self._clients.discard(ws)
        return ws

    async def _handle(self, peer: str, raw: str) -> dict:
        """One message from a page: an unlock attempt or a command, each token-checked."""
        try:
            message = parse_message(raw)
        except Refused as exc:
            return {'type': 'result', 'id': None, 'ok': False, 'message': str(exc)}
        ok, why = self._gate.check(peer, message.token, time.monotonic())
        if message.kind == 'auth':
            if not ok:
                self._log(f'helm: {peer}: unlock refused: {why}')
            return {'type': 'auth', 'id': message.id, 'ok': ok,
                    'message': 'helm unlocked' if ok else why}
        what = message.action + (f' {message.degrees:+.0f}' if message.action == 'nudge'
                                 else '')
        if not ok:
            self._log(f'helm: {peer}: {what} refused: {why}')
            return {'type': 'result', 'id': message.id, 'ok': False, 'message': why,
                    'locked': True}
        async with self._command_lock:  # one command at a time, each on the last's result
            try:
                done, text = await asyncio.wait_for(
                    self._backend.execute(message.action, message.degrees), COMMAND_TIMEOUT)
            except TimeoutError:
                done, text = False, f'the autopilot did not answer within {COMMAND_TIMEOUT:g} s'
            except Exception as exc:  # noqa: BLE001 - a button must never kill the server
                done, text = False, f'{type(exc).__name__}: {exc}'
        self._log(f'helm: {peer}: {what}: ' + (text if done else f'failed: {text}'))
        return {'type': 'result', 'id': message.id, 'ok': done, 'message': text}

    async def _broadcast(self) -> None:
        """Every page gets the state at `rate_hz`, and at once when poked; one that cannot
        keep up is dropped. Only the regular updates go into the plot's history."""
        due = time.monotonic() + self._period
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, due - time.monotonic()))
                regular = False
            except TimeoutError:
                regular = True
            self._wake.clear()
            if regular:
                due += self._period
                if time.monotonic() - due > self._period:
                    due = time.monotonic() + self._period
            try:
                text = to_json(self._backend.sample(keep=regular))
            except Exception as exc:  # noqa: BLE001 - a bad sample must not stop the page
                self._log(f'helm: state not sent: {type(exc).__name__}: {exc}')
                continue
            if self._clients:
                await asyncio.gather(*(self._send(ws, text) for ws in list(self._clients)))

    async def _send(self, ws: web.WebSocketResponse, text: str) -> None:
        try:
            await asyncio.wait_for(ws.send_str(text), SEND_TIMEOUT)
        except (TimeoutError, ConnectionError, RuntimeError):
            self._clients.discard(ws)
            try:
                await asyncio.wait_for(ws.close(), SEND_TIMEOUT)
            except (TimeoutError, ConnectionError, RuntimeError):
                pass


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """An HTTPS context from a certificate and key file (OSError or SSLError if unusable)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
