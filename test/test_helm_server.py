"""The helm page's server over real sockets: files, headers, the WebSocket and its token.

The server runs as helm_node runs it (its own thread and event loop, a real TCP port);
the boat behind it is a small recording backend, since these tests are about who gets
through the server. test_helm_page.py drives the whole chain in a browser.
"""

import asyncio
import json
import socket

import pytest

aiohttp = pytest.importorskip('aiohttp')
helm_server = pytest.importorskip('autopilot_ros.helm_server')

from autopilot_ros.helm import MAX_TOKEN_MISSES, HelmState, Reading, TokenGate, status_fields  # noqa: E402

TOKEN = 'harbour-0142'


class RecordingBackend:
    """Answers like the autopilot would and remembers every command that reached it."""

    def __init__(self) -> None:
        self.state = HelmState(history_s=60.0)
        self.state.status = Reading(status_fields('compass', True, 1.0, 1.0, 0.01, 0.1, 0.1,
                                                  'pid', '', '', []), 0.0)
        self.commands: list[tuple[str, float]] = []
        self.samples: list[bool] = []  # keep (a regular update) or not (poked)

    def sample(self, keep: bool = True) -> dict:
        import time
        self.state.status.at = time.monotonic()
        self.samples.append(keep)
        if keep:
            return self.state.sample(time.monotonic(), time.time())
        return self.state.snapshot(time.monotonic(), time.time())

    def history(self) -> dict:
        return self.state.history_message()

    async def execute(self, action: str, degrees: float) -> tuple[bool, str]:
        self.commands.append((action, degrees))
        return True, f'{action} done'


@pytest.fixture
def serve():
    servers = []

    def start(token: str = TOKEN, **kwargs):
        backend = RecordingBackend()
        server = helm_server.HelmServer(backend, TokenGate(token), '127.0.0.1', 0,
                                        log=lambda line: None, **kwargs)
        server.start()
        servers.append(server)
        return server, backend
    yield start
    for server in servers:
        server.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20.0))


async def _ws_session(url: str, **kwargs):
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url + 'ws', **kwargs)
    hello = await ws.receive_json()
    history = await ws.receive_json()
    return session, ws, hello, history


async def _reply(ws) -> dict:
    """The next message that is not a state broadcast."""
    while True:
        msg = await ws.receive_json()
        if msg['type'] != 'state':
            return msg


def test_the_page_and_its_files_are_served_with_the_security_headers(serve):
    server, _ = serve()

    async def fetch():
        async with aiohttp.ClientSession() as s:
            pages = {}
            for path in ('', 'index.html', 'helm.js', 'helm.css', 'favicon.svg',
                         '../setup.py', 'web/helm.js', 'node.py', '%2e%2e/helm.py'):
                async with s.get(server.url + path) as r:
                    pages[path] = (r.status, r.headers.get('Content-Type', ''),
                                   dict(r.headers), await r.text())
            return pages
    pages = run(fetch())
    status, ctype, headers, body = pages['']
    assert status == 200 and ctype.startswith('text/html')
    assert 'id="btn-p10"' in body and 'helm.js' in body
    assert "default-src 'self'" in headers['Content-Security-Policy']
    assert "frame-ancestors 'none'" in headers['Content-Security-Policy']
    assert headers['X-Frame-Options'] == 'DENY'
    assert pages['helm.js'][0] == 200 and pages['helm.js'][1].startswith('text/javascript')
    assert pages['helm.css'][0] == 200 and pages['favicon.svg'][0] == 200
    for path in ('../setup.py', 'web/helm.js', 'node.py', '%2e%2e/helm.py'):
        assert pages[path][0] == 404, path
    # Nothing in the page's files reaches off this server: no CDN, no internet at sea.
    for path in ('', 'helm.js', 'helm.css'):
        assert 'http://' not in pages[path][3] and 'https://' not in pages[path][3], path
        assert '//cdn' not in pages[path][3]


def test_without_a_configured_token_the_page_is_view_only(serve):
    server, backend = serve(token='')

    async def talk():
        session, ws, hello, history = await _ws_session(server.url)
        await ws.send_json({'type': 'auth', 'token': ''})
        auth = await _reply(ws)
        await ws.send_json({'type': 'command', 'action': 'engage', 'token': ''})
        result = await _reply(ws)
        state = await ws.receive_json()
        await session.close()
        return hello, history, auth, result, state
    hello, history, auth, result, state = run(talk())
    assert hello['commands_enabled'] is False and 'view only' in hello['why_disabled']
    assert history['type'] == 'history'
    assert not auth['ok'] and not result['ok'] and 'view only' in result['message']
    assert state['type'] == 'state' and state['mode'] == 'compass'
    assert state['commands_enabled'] is False
    assert backend.commands == []


def test_every_command_is_checked_against_the_token(serve):
    server, backend = serve()

    async def talk():
        session, ws, hello, _ = await _ws_session(server.url)
        replies = []
        await ws.send_json({'type': 'auth', 'token': TOKEN, 'id': 1})
        replies.append(await _reply(ws))
        # Unlocked, yet a command without the token (or with another) is refused.
        for token in (None, 'harbour-0143'):
            await ws.send_json({'type': 'command', 'action': 'nudge', 'degrees': 10,
                                'token': token, 'id': 2})
            replies.append(await _reply(ws))
        await ws.send_json({'type': 'command', 'action': 'nudge', 'degrees': 10,
                            'token': TOKEN, 'id': 3})
        replies.append(await _reply(ws))
        await ws.send_json({'type': 'command', 'action': 'tack', 'token': TOKEN, 'id': 4})
        replies.append(await _reply(ws))
        await session.close()
        return hello, replies
    hello, replies = run(talk())
    assert hello['commands_enabled'] is True
    assert replies[0] == {'type': 'auth', 'id': 1, 'ok': True, 'message': 'helm unlocked'}
    assert [r['ok'] for r in replies[1:]] == [False, False, True, True]
    assert replies[1]['message'] == 'wrong token' and replies[1]['locked']
    assert replies[3] == {'type': 'result', 'id': 3, 'ok': True, 'message': 'nudge done'}
    assert backend.commands == [('nudge', 10.0), ('tack', 0.0)]


def test_guessing_locks_the_guesser_out(serve):
    server, backend = serve()

    async def talk():
        session, ws, _, _ = await _ws_session(server.url)
        replies = []
        for k in range(MAX_TOKEN_MISSES):
            await ws.send_json({'type': 'auth', 'token': f'guess-{k:04d}'})
            replies.append(await _reply(ws))
        await ws.send_json({'type': 'command', 'action': 'standby', 'token': TOKEN})
        replies.append(await _reply(ws))
        await session.close()
        return replies
    replies = run(talk())
    assert all(not r['ok'] for r in replies)
    assert 'locked for 60 s' in replies[MAX_TOKEN_MISSES - 1]['message']
    assert 'too many wrong tokens' in replies[-1]['message']  # even with the right token
    assert backend.commands == []


def test_bad_messages_get_one_line_and_the_connection_stays(serve):
    server, backend = serve()

    async def talk():
        session, ws, _, _ = await _ws_session(server.url)
        replies = []
        for raw in ('nudge +10', '[]', '{"type": "command", "action": "rm -rf"}',
                    json.dumps({'type': 'command', 'action': 'nudge', 'degrees': 90,
                                'token': TOKEN})):
            await ws.send_str(raw)
            replies.append(await _reply(ws))
        await ws.send_bytes(b'\x00\x01')
        replies.append(await _reply(ws))
        await ws.send_json({'type': 'command', 'action': 'engage', 'token': TOKEN})
        replies.append(await _reply(ws))
        # A message far over the limit closes this connection (aiohttp's max_msg_size).
        await ws.send_str(json.dumps({'type': 'auth', 'token': 'x' * 100_000}))
        closed = await ws.receive()
        await session.close()
        return replies, closed
    replies, closed = run(talk())
    assert [r['message'] for r in replies[:5]] == [
        'not JSON', 'not a JSON object', 'action must be one of engage, standby, nudge, tack',
        'a nudge is one of -10, -1, +1, +10 degrees', 'text messages only']
    assert replies[5]['ok'] and backend.commands == [('engage', 0.0)]
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                           aiohttp.WSMsgType.ERROR)


def test_another_site_may_not_open_the_helm(serve):
    """A page from elsewhere in the phone's browser (cross-site WebSocket hijacking)."""
    server, _ = serve()

    async def talk():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(server.url + 'ws', origin='http://evil.example')
            ws = await s.ws_connect(server.url + 'ws', origin=server.url.rstrip('/'))
            hello = await ws.receive_json()
            await ws.close()
            return refused.value.status, hello
    status, hello = run(talk())
    assert status == 403 and hello['type'] == 'hello'


def test_state_is_broadcast_to_every_open_page(serve):
    server, _ = serve(rate_hz=10.0)

    async def talk():
        first = await _ws_session(server.url)
        second = await _ws_session(server.url)
        states = []
        for session, ws, _, _ in (first, second):
            for _ in range(3):
                states.append(await ws.receive_json())
            await session.close()
        return states
    states = run(talk())
    assert [s['type'] for s in states] == ['state'] * 6
    assert states[2]['t'] > states[0]['t']
    assert states[0]['target_deg'] == pytest.approx(57.3, abs=0.01)


def test_a_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = helm_server.HelmServer(RecordingBackend(), TokenGate(TOKEN), '127.0.0.1',
                                        port, log=lambda line: None)
        with pytest.raises(OSError, match='address already in use|in use'):
            server.start()
    server = helm_server.HelmServer(RecordingBackend(), TokenGate(TOKEN), '192.0.2.1', 0,
                                    log=lambda line: None)
    with pytest.raises(OSError):  # an address this machine does not have
        server.start()


def test_a_poke_sends_the_state_at_once_and_keeps_it_out_of_the_plot(serve):
    """helm_node pokes on a new course: the pages see it before the next regular update."""
    server, backend = serve(rate_hz=0.001)  # no regular update within the test's time

    async def talk():
        session, ws, _, _ = await _ws_session(server.url)
        while True:  # (the server lists a page just after its history has gone out)
            server.poke()
            try:
                state = await asyncio.wait_for(ws.receive_json(), 0.5)
                break
            except TimeoutError:
                pass
        await session.close()
        return state
    state = run(talk())
    assert state['type'] == 'state'
    assert backend.samples and not any(backend.samples) and not backend.state.history
