"""How long from a press on the helm page to the autopilot steering the new course, and
what the page costs the boat's computer.

The installed autopilot_node, sim_node (upwind_chop, real time, lockstep) and helm_node
run as processes over DDS, as on the boat; this script is the page: a WebSocket client
that presses +1 and -1 in turn, as a sailor would, and times
- reply: from the press to the server's answer (the token check and the autopilot's
  `autopilot/steer` service round trip),
- on the page: from the press to the first state message showing the new target (that
  plus the autopilot's next tick and its status, which helm_node passes on at once).
Then it opens more pages and reads helm_node's CPU time from /proc over a quiet spell.

    python -P bench/bench_helm.py [--presses 60]
"""

import argparse
import asyncio
import os
import pathlib
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from autopilot_ros.isolation import isolate_dds

isolate_dds()

import aiohttp  # noqa: E402
from ament_index_python.packages import get_package_prefix  # noqa: E402

TOKEN = 'bench-token-0001'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _next(ws, kind: str) -> dict:
    while True:
        msg = await ws.receive_json()
        if msg['type'] == kind:
            return msg


async def _presses(url: str, presses: int) -> tuple[list[float], list[float], int]:
    replies, visible = [], []
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url + 'ws')
        await ws.send_json({'type': 'auth', 'token': TOKEN})
        assert (await _next(ws, 'auth'))['ok']
        deadline = time.monotonic() + 60.0
        while True:  # the simulator engages the pilot (upwind_chop: wind_awa mode)
            state = await _next(ws, 'state')
            if state['engaged'] and state['pilot_alive']:
                break
            if time.monotonic() > deadline:
                raise SystemExit('the autopilot never engaged: is the simulator running?')
        size = len(await ws.receive_str())
        target, compass = state['target_deg'], state['mode'] == 'compass'
        for k in range(presses):
            step = 1 if k % 2 == 0 else -1
            # +1 is to starboard: a compass target grows, a wind angle target shrinks.
            target = (target + step) % 360.0 if compass else target - step
            # At a random moment, not just after a state message: a sailor's press is not
            # in step with the page's updates.
            await asyncio.sleep(random.uniform(0.0, 0.3))
            t0 = time.perf_counter()
            await ws.send_json({'type': 'command', 'action': 'nudge', 'degrees': step,
                                'token': TOKEN})
            replied = shown = False
            while not (replied and shown):
                msg = await ws.receive_json()
                now = time.perf_counter()
                if msg['type'] == 'result':
                    assert msg['ok'], msg
                    replied = True
                    replies.append(now - t0)
                elif msg['type'] == 'state' and not shown and msg['target_deg'] is not None \
                        and abs((msg['target_deg'] - target + 180) % 360 - 180) < 0.006:
                    shown = True
                    visible.append(now - t0)
        await ws.close()
    return replies, visible, size


async def _pages(url: str, count: int, seconds: float, pid: int) -> float:
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(url + 'ws') for _ in range(count)]

        async def drain(ws):
            end = time.monotonic() + seconds + 1.0
            while time.monotonic() < end:
                try:
                    await asyncio.wait_for(ws.receive(), 1.0)
                except TimeoutError:
                    pass
        tasks = [asyncio.ensure_future(drain(ws)) for ws in sockets]
        await asyncio.sleep(0.5)
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        await asyncio.gather(*tasks)
        for ws in sockets:
            await ws.close()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--presses', type=int, default=60)
    parser.add_argument('--seconds', type=float, default=5.0, help='per CPU measurement')
    args = parser.parse_args()
    lib = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros'
    work = pathlib.Path(tempfile.mkdtemp(prefix='bench_helm_'))
    (work / 'token').write_text(TOKEN)
    port = _free_port()
    url = f'http://127.0.0.1:{port}/'
    commands = {
        'autopilot': [lib / 'autopilot_node', '--ros-args', '-p', 'use_sim_time:=true',
                      '-p', 'stamp_future_tolerance:=0.1'],
        'sim': [lib / 'sim_node', '--ros-args', '-p', 'scenario:=upwind_chop',
                '-p', 'real_time_factor:=1.0', '-p', 'lockstep:=true', '-p', 'repeat:=true'],
        'helm': [lib / 'helm_node', '--ros-args', '-p', f'port:={port}',
                 '-p', f'access_token_file:={work / "token"}'],
    }
    procs = {name: subprocess.Popen([str(c) for c in cmd], cwd=work,
                                    stdout=open(work / f'{name}.log', 'w'),
                                    stderr=subprocess.STDOUT)
             for name, cmd in commands.items()}
    try:
        deadline = time.monotonic() + 30.0
        while 'helm page: http' not in (work / 'helm.log').read_text():
            if time.monotonic() > deadline or procs['helm'].poll() is not None:
                sys.exit('helm_node did not start:\n' + (work / 'helm.log').read_text())
            time.sleep(0.2)
        replies, visible, size = asyncio.run(_presses(url, args.presses))
        print(f'\nhelm page: {args.presses} presses of +1/-1 against autopilot_node and '
              'sim_node over DDS (ms)\n')
        print('| from the press to | p50 | p99 | max |')
        print('|---|---|---|---|')
        for label, values in (("the server's answer (token, autopilot/steer)", replies),
                              ('the page showing the new target', visible)):
            ms = [v * 1e3 for v in values]
            print(f'| {label} | {statistics.median(ms):.1f} | {_pct(ms, 0.99):.1f} | '
                  f'{max(ms):.1f} |')
        print(f'\nstate message: {size} bytes, 5 per second per page\n')
        print('| pages open | helm_node CPU (% of one core) |')
        print('|---|---|')
        for count in (0, 1, 4, 16):
            cpu = asyncio.run(_pages(url, count, args.seconds, procs['helm'].pid))
            print(f'| {count} | {100 * cpu:.1f} |')
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == '__main__':
    main()
