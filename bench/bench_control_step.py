"""Benchmark the control step: features + window + ONNX inference + safety, per tick.

Prints one table: ONNX Runtime inference and the whole Pilot.step for the seed
architecture, the same model in PyTorch eager, the PID-only tick, and the resident memory
of the real autopilot_node process. Run with `make bench`. Figures from one run are
comparable with each other; absolute times depend on the machine.
"""

import argparse
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from autopilot_ros.conventions import GRAVITY
from autopilot_ros.features import NUM_FEATURES, WINDOW_LENGTH
from autopilot_ros.pilot import Pilot, PilotConfig
from autopilot_ros.policy import OnnxPolicy
from autopilot_ros.samples import HeadingSample, ImuSample, SpeedSample, WindSample


def percentiles(times: list[float]) -> tuple[float, float]:
    arr = np.array(times) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def time_calls(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def pilot_ticks(pilot: Pilot, n: int) -> list[float]:
    """Time n control ticks, with fresh samples fed between them (not timed)."""
    rng = np.random.default_rng(0)
    pilot.set_mode('compass', 1.0)
    times = []
    t = 0.0
    for _ in range(n + WINDOW_LENGTH):
        t += 0.1
        pilot.update(ImuSample(t, *rng.normal(0, 0.05, 5), 0.1, 0.0, GRAVITY))
        pilot.update(HeadingSample(t, 1.0 + rng.normal(0, 0.1)))
        pilot.update(WindSample(t, 0.8 + rng.normal(0, 0.05), 7.0))
        pilot.update(SpeedSample(t, 3.0))
        start = time.perf_counter()
        pilot.step(t)
        times.append(time.perf_counter() - start)
    return times[WINDOW_LENGTH:]


def node_rss_mb(model: str) -> float:
    """VmRSS of the installed autopilot_node after it loaded the model and ran a while."""
    from ament_index_python.packages import get_package_prefix
    exe = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib/autopilot_ros/autopilot_node'
    proc = subprocess.Popen([str(exe), '--ros-args', '-p', f'model_path:={model}',
                             '-p', 'mode:=compass', '--log-level', 'warn'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(4.0)
        # The wheels' bootstrapper re-executes Python: measure the process tree's leaf.
        pids = [proc.pid] + [int(p) for p in subprocess.run(
            ['pgrep', '-P', str(proc.pid)], capture_output=True, text=True).stdout.split()]
        rss = 0.0
        for pid in pids:
            try:
                status = pathlib.Path(f'/proc/{pid}/status').read_text()
            except FileNotFoundError:
                continue
            kb = next(int(line.split()[1]) for line in status.splitlines()
                      if line.startswith('VmRSS'))
            rss = max(rss, kb / 1024)
        return rss
    finally:
        proc.terminate()
        proc.wait(timeout=10)


BARE_ORT = """
import os, sys, numpy as np
from autopilot_ros.policy import OnnxPolicy
p = OnnxPolicy(sys.argv[1], 10.0)
w = np.zeros((1, 20, 25), np.float32)
for _ in range(200):
    p.infer(w)
print(open(f'/proc/{os.getpid()}/status').read().split('VmRSS:')[1].split()[0])
"""


def bare_ort_rss_mb(model: str) -> float:
    """VmRSS of a Python process that only loads the model and infers: what a Pi needs
    beside ROS (numpy + onnxruntime + the pure policy module)."""
    out = subprocess.run([sys.executable, '-P', '-c', BARE_ORT, model], capture_output=True,
                         text=True, timeout=120, check=True)
    return int(out.stdout.strip()) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-n', type=int, default=3000, help='timed runs per row')
    parser.add_argument('--no-node', action='store_true', help='skip the node memory row')
    args = parser.parse_args()
    import torch

    from autopilot_ros.training.export import export_onnx
    from autopilot_ros.training.model import SeedLSTM, count_parameters

    torch.manual_seed(0)
    model = SeedLSTM().eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'seed.onnx')
        windows = np.random.default_rng(0).normal(
            0, 1, (64, WINDOW_LENGTH, NUM_FEATURES)).astype(np.float32)
        diff = export_onnx(model, path, rate_hz=10.0, check_windows=windows)
        policy = OnnxPolicy(path, rate_hz=10.0)
        window = windows[:1].copy()
        rows.append(('ONNX Runtime inference (1 thread)',
                     *percentiles(time_calls(lambda i: policy.infer(window), args.n))))
        x = torch.from_numpy(window)
        for threads in (1, torch.get_num_threads()):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                for _ in range(50):
                    model(x)
                times = time_calls(lambda i: model(x), args.n)
            rows.append((f'PyTorch eager inference ({threads} thread)', *percentiles(times)))
        rows.append(('Pilot.step with model (features+window+ORT+safety)',
                     *percentiles(pilot_ticks(Pilot(PilotConfig(), policy), args.n))))
        rows.append(('Pilot.step PID only (features+window+safety)',
                     *percentiles(pilot_ticks(Pilot(PilotConfig()), args.n))))
        rss = math.nan if args.no_node else node_rss_mb(path)
        print(f'seed architecture: {count_parameters(model)} parameters; '
              f'ONNX vs PyTorch max diff {diff:.1e}; {args.n} runs per row; '
              f'{os.cpu_count()} CPUs')
        print(f"{'what':54s} {'p50 ms':>9s} {'p99 ms':>9s}")
        for name, p50, p99 in rows:
            print(f'{name:54s} {p50:9.4f} {p99:9.4f}')
        print(f"{'autopilot_node resident memory (model loaded)':54s} {rss:9.1f} MB")
        print(f"{'bare Python + ONNX Runtime process (model loaded)':54s} "
              f'{bare_ort_rss_mb(path):9.1f} MB')
        ort_p50 = rows[0][1]
        torch_p50 = rows[1][1]
        print(f'PyTorch eager / ONNX Runtime (p50, 1 thread): {torch_p50 / ort_p50:.1f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
