"""Benchmark the training pipeline's stages: bag reading, dataset building, training.

Writes demonstration bags from the simulator's expert in both storages, then times:
reading them back (messages per second), replaying them through the Pilot into windows
(windows per second), and one epoch of the seed model (windows per second). Run with
`make bench`. Figures from one run are comparable with each other; absolute speeds
depend on the machine.
"""

import argparse
from dataclasses import replace
import pathlib
import tempfile
import time

from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.training.bags import read_bags
from autopilot_ros.training.dataset import DatasetConfig, build_dataset, split
from autopilot_ros.training.demos import write_demo_bag
from autopilot_ros.training.train import Progress, TrainConfig, train_model


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
        quiet = Progress(open('/dev/null', 'w'))
        _, history = train_model(train, val, TrainConfig(epochs=1), quiet)
        rows.append(('train seed model, 1 epoch (2 threads)',
                     len(train) / history.epochs[0].seconds, 'windows/s'))
    print(f'{args.bags} bags per storage, {args.duration:g} s each, '
          f'{messages:,} messages per storage, {len(data):,} windows')
    print(f'{"stage":44s} {"rate":>12s}')
    print('-' * 64)
    for name, rate, unit in rows:
        print(f'{name:44s} {rate:12,.0f} {unit}')


if __name__ == '__main__':
    main()
