"""Benchmark the training pipeline's stages: bag reading, dataset building, training.

Writes demonstration bags from the simulator's expert in both storages, then times:
reading them back (messages per second), replaying them through the Pilot into windows
(windows per second), and one epoch of the seed model (windows per second). Run with
`make bench`. Figures from one run are comparable with each other; absolute speeds
depend on the machine.
"""

import argparse
from dataclasses import replace
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.training.bags import read_bags
from autopilot_ros.training.dataset import DatasetConfig, build_dataset, split
from autopilot_ros.training.demos import write_demo_bag

# (threads, OMP_WAIT_POLICY, a busy process beside it, objective): the training default is
# the first. 'plain' is imitation alone (no mirroring, no smoothness term): what the
# default objective costs on top. 'quarter' charges smoothness on a quarter of the batch
# (the share before): 256 + 2 x 64 windows per forward pass, past oneDNN's LSTM cliff.
TRAINING_RUNS = ((1, 'PASSIVE', False, 'default'), (1, 'PASSIVE', True, 'default'),
                 (1, 'PASSIVE', True, 'plain'), (1, 'PASSIVE', True, 'quarter'),
                 (2, 'PASSIVE', True, 'default'), (2, 'ACTIVE', True, 'default'))
_TRAIN_ONE_EPOCH = """
import sys, numpy as np
from autopilot_ros.training.dataset import Dataset
from autopilot_ros.training.train import Progress, TrainConfig, train_model
d = np.load(sys.argv[1])
parts = [Dataset(*(d[f'{n}_{k}'] for k in ('rows', 'ends', 'labels', 'groups', 'stamps')))
         for n in ('train', 'val')]
objective = {'plain': {'mirror': False, 'smooth_weight': 0.0},
             'quarter': {'smooth_share': 0.25}}.get(sys.argv[3], {})
_, h = train_model(*parts, TrainConfig(epochs=1, threads=int(sys.argv[2]), **objective),
                   Progress(open('/dev/null', 'w')))
print(len(parts[0]) / h.epochs[0].seconds)
"""


def _training_rate(data: pathlib.Path, threads: int, wait_policy: str, load: bool,
                   objective: str) -> float:
    """Windows/s of one epoch in a fresh process (OpenMP reads its wait policy at start),
    optionally beside a process that keeps one core busy, as CI and a laptop's browser do."""
    env = {**os.environ, 'OMP_WAIT_POLICY': wait_policy}
    busy = subprocess.Popen([sys.executable, '-c', 'while True: pass']) if load else None
    try:
        out = subprocess.run([sys.executable, '-P', '-c', _TRAIN_ONE_EPOCH, str(data),
                              str(threads), objective],
                             env=env, check=True, capture_output=True, text=True)
    finally:
        if busy:
            busy.kill()
            busy.wait()
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--bags', type=int, default=6, help='bags per storage')
    parser.add_argument('--duration', type=float, default=180.0, help='seconds per bag')
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ('sqlite3', 'mcap'):
            folder = pathlib.Path(tmp) / storage
            names = list(SCENARIOS)
            start = time.perf_counter()
            written = 0
            for k in range(args.bags):
                scenario = replace(SCENARIOS[names[k % len(names)]],
                                   duration_s=args.duration)
                written += write_demo_bag(folder / f'bag{k}', scenario, 1000 + k, storage)
            write_s = time.perf_counter() - start
            start = time.perf_counter()
            recordings = read_bags(folder)
            read_s = time.perf_counter() - start
            messages = sum(sum(len(v) for v in r.samples.values()) for r in recordings)
            assert messages == written, (messages, written)
            rows.append((f'write {storage} bags (incl. simulation)', written / write_s,
                         'msg/s'))
            rows.append((f'read {storage} bags', messages / read_s, 'msg/s'))
        start = time.perf_counter()
        data = build_dataset(recordings, DatasetConfig())
        build_s = time.perf_counter() - start
        rows.append(('replay through Pilot -> windows', len(data) / build_s, 'windows/s'))
        train, val, _ = split(data)
        saved = pathlib.Path(tmp) / 'data.npz'
        np.savez(saved, **{f'{name}_{k}': getattr(part, k) for name, part in
                           (('train', train), ('val', val))
                           for k in ('rows', 'ends', 'labels', 'groups', 'stamps')})
        for threads, policy, load, objective in TRAINING_RUNS:
            rate = _training_rate(saved, threads, policy, load, objective)
            rows.append((f'train 1 epoch, {threads} thread(s), {policy.lower()} wait'
                         f'{", cores busy" if load else ""}'
                         f'{", imitation alone" if objective == "plain" else ""}'
                         f'{", smoothness on a quarter" if objective == "quarter" else ""}', rate,
                         'windows/s'))
    print(f'{args.bags} bags per storage, {args.duration:g} s each, '
          f'{messages:,} messages per storage, {len(data):,} windows')
    print(f'{"stage":66s} {"rate":>12s}')
    print('-' * 86)
    for name, rate, unit in rows:
        print(f'{name:66s} {rate:12,.0f} {unit}')


if __name__ == '__main__':
    main()
