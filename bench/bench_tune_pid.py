"""Benchmark `autopilot-train tune-pid`: how fast the search sails, and what it finds.

Prints candidate evaluations per second (one evaluation: every scenario x tuning seed in
closed loop) with one and with two worker processes, the minutes the default budget takes,
and per boat (the reference yacht and two held-out boats) the objective and the closed loop
before (the node's default gains) and after, on evaluation seeds the search never sailed.
Run with `make bench` or alone; `--quick` for a short look (a small budget, not the default).
"""

import argparse
import math
import sys
import time

import numpy as np

from autopilot_ros.sim.boats import boat_by_name
from autopilot_ros.sim.parallel import default_workers
from autopilot_ros.training import tune_pid as tp

BOATS = ('reference', 'tender_weather_helm', 'heavy_long_keel')


def _rate(workers: int, trials: int) -> tuple[float, float]:
    """(candidate evaluations/s, closed-loop runs/s) of a search on the reference yacht."""
    began = time.monotonic()
    r = tp.tune_pid(boat_by_name('reference'), trials=trials, workers=workers)
    seconds = time.monotonic() - began
    return r.evaluations / seconds, r.runs / seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--boats', nargs='+', default=list(BOATS))
    p.add_argument('--trials', type=int, default=tp.DEFAULT_TRIALS)
    p.add_argument('--seeds', type=int, default=tp.DEFAULT_SEEDS)
    p.add_argument('--check-seeds', type=int, default=3)
    p.add_argument('--workers', type=int, default=default_workers())
    p.add_argument('--quick', action='store_true', help='16 trials, 1 seed: a look, not the '
                                                        'default budget')
    args = p.parse_args(argv)
    if args.quick:
        args.trials, args.seeds = 16, 1

    print('search speed (reference yacht, a 16-trial search, 2 seeds, 6 scenarios; '
          'wall time, the default gains and pool start included):')
    print(f"{'workers':>8s} {'evaluations/s':>14s} {'runs/s':>8s}")
    for workers in sorted({1, args.workers}):
        evals, runs = _rate(workers, 16)
        print(f'{workers:8d} {evals:14.2f} {runs:8.1f}', flush=True)

    rows = []
    for name in args.boats:
        boat = boat_by_name(name)
        began = time.monotonic()
        r = tp.tune_pid(boat, args.trials, list(range(tp.TUNE_SEED_BASE,
                                                      tp.TUNE_SEED_BASE + args.seeds)),
                        args.workers, check_seeds=list(range(args.check_seeds)))
        minutes = (time.monotonic() - began) / 60.0
        print(f'\n{tp.comparison_table(r)}\n{r.evaluations} candidates, {r.runs} runs, '
              f'{minutes:.1f} min with {args.workers} workers', flush=True)
        rows.append((name, r, minutes))

    print(f'\ntune-pid, {args.trials} trials x {args.seeds} tuning seeds, table on check seeds '
          f'0..{args.check_seeds - 1}, {args.workers} workers:')
    head = (f"{'boat':22s} {'J tune':>13s} {'J check':>13s} {'RMS deg':>13s} "
            f"{'travel/min':>13s} {'min':>5s}  gains after")
    print(head)
    print('-' * (len(head) + 40))
    for name, r, minutes in rows:
        rms = [np.mean([x.rms_deg for x in runs]) for runs in (r.before, r.after)]
        travel = [np.mean([x.rudder_travel_per_min for x in runs]) for runs in (r.before,
                                                                                r.after)]
        check = (f'{r.check_before:5.3f}->{r.check_after:5.3f}'
                 if math.isfinite(r.check_after) else '-')
        print(f'{name:22s} {r.objective_before:5.3f}->{r.objective_after:5.3f} {check:>13s} '
              f'{rms[0]:5.2f}->{rms[1]:5.2f} {travel[0]:5.2f}->{travel[1]:5.2f} '
              f'{minutes:5.1f}  {tp.gains_text(r.gains)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
