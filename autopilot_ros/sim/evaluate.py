"""Closed-loop evaluation: pilots steer the simulated boat; tables and a trace plot come out.

Every pilot except the expert runs through the very Pilot object the node runs (features,
window, ONNX policy, PID fallback, safety layer). The errors are measured on the true state,
not on the noisy sensors the pilot sees. This is the verdict on a model; validation loss
is not.

    autopilot-eval --pilots pid pd expert models/new.onnx --seeds 5 --plot out/traces.png
    autopilot-eval --pilots pid models/new.onnx --boats reference held_out --seeds 5

A pilot that is better only on the boat it was trained on is not better: `--boats` runs
every pilot on other boats too (sim/boats.py: the held-out set, or family_<seed>).
"""

import argparse
from dataclasses import dataclass, field, replace
import json
import math
import os
import sys

import numpy as np

from autopilot_ros.pid_pilot import PD_REFERENCE
from autopilot_ros.pilot import Pilot, PilotConfig
from autopilot_ros.sim.boats import HELD_OUT, REFERENCE, BoatSpec, boats_by_names
from autopilot_ros.sim.helmsman import ExpertHelmsman
from autopilot_ros.sim.loop import ClosedLoop, PilotSteer
from autopilot_ros.sim.parallel import default_workers, process_map
from autopilot_ros.sim.scenarios import SCENARIOS, Scenario

CONTROL_RATE_HZ = 10.0
SETTLE_BAND = math.radians(5.0)  # |error| below this ...
SETTLE_HOLD = 10.0  # ... for this long counts as settled
TRANSIENT = 20.0  # seconds after start / a target change left out of the steady RMS


@dataclass
class RunResult:
    pilot: str
    scenario: str
    seed: int
    rms_deg: float
    max_deg: float
    settle_s: float  # mean time to settle after start and each target change (nan: never)
    rudder_travel_per_min: float
    fallback_frac: float  # ticks a model did not steer (window filling, inputs, guards...)
    trace: dict = field(repr=False, default_factory=dict)
    boat: str = REFERENCE.name
    guard_frac: float = math.nan  # ... of which a guard held the helm from it


def make_pilot(name: str, config: PilotConfig | None = None):
    """'pid', 'pd', 'expert', 'zero', or a path to an .onnx model -> a per-tick controller.

    'pid' is the node's fallback with its default gains; 'pd' the same pilot as this package
    first had it (no integral, no speed schedule), kept as a reference column.
    """
    if name == 'expert':
        return 'expert'
    if name == 'zero':
        return 'zero'
    config = config or PilotConfig()
    if name == 'pid':
        return Pilot(config)
    if name == 'pd':
        return Pilot(replace(config, pid=PD_REFERENCE))
    from autopilot_ros.policy import OnnxPolicy
    return Pilot(config, OnnxPolicy(name, rate_hz=CONTROL_RATE_HZ))


def settle_times(t: np.ndarray, err: np.ndarray, starts: list[float]) -> list[float]:
    """Per start time: seconds until |err| stays inside the band for SETTLE_HOLD seconds."""
    out = []
    inside = np.abs(err) < SETTLE_BAND
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else t[-1] + 1e-9
        idx = np.nonzero((t >= start) & (t < end))[0]
        settled = math.nan
        run_start = None
        for k in idx:
            if inside[k]:
                run_start = t[k] if run_start is None else run_start
                if t[k] - run_start >= SETTLE_HOLD:
                    settled = run_start - start
                    break
            else:
                run_start = None
        out.append(settled)
    return out


def run_episode(pilot_name: str, scenario: Scenario, seed: int, keep_trace: bool = False,
                expert_imperfection: float = 0.0, boat: BoatSpec = REFERENCE,
                config: PilotConfig | None = None) -> RunResult:
    """One pilot steering one scenario and seed, on one boat, in the shared closed loop.

    `config`: the pilot's settings (default: the node's defaults, guards on).
    """
    pilot = make_pilot(pilot_name, config)
    if isinstance(pilot, Pilot):
        steer = PilotSteer(pilot, scenario.mode, scenario.target_at(0.0))
    elif pilot == 'expert':
        expert = ExpertHelmsman(seed, imperfection=expert_imperfection)

        def steer(sim, target, samples, now):
            return expert.command(sim, scenario.mode, target)
    else:
        def steer(sim, target, samples, now):
            return 0.0
    loop = ClosedLoop(scenario, seed, rate_hz=CONTROL_RATE_HZ, steer=steer,
                      params=boat.params, sensors=boat.sensors).run()
    trace = loop.trace()
    with_model = isinstance(pilot, Pilot) and pilot.policy
    model_ticks = steer.model_ticks if with_model else None
    guard_ticks = steer.guard_ticks if with_model else None
    return summarize(pilot=os.path.basename(pilot_name), scenario=scenario.name, seed=seed,
                     t=trace['t'], err=trace['err'], rudder=trace['rudder'],
                     changes=loop.changes, model_ticks=model_ticks, guard_ticks=guard_ticks,
                     trace=trace if keep_trace else None, boat=boat.name)


def summarize(*, pilot: str, scenario: str, seed: int, t: np.ndarray, err: np.ndarray,
              rudder: np.ndarray, changes: list[float], model_ticks: int | None,
              trace: dict | None = None, boat: str = REFERENCE.name,
              guard_ticks: int | None = None) -> RunResult:
    """Metrics of one run from its true-error and rudder traces (also used by sim_node)."""
    n = len(t)
    steady = np.ones(n, dtype=bool)
    for c in changes:
        steady &= ~((t >= c) & (t < c + TRANSIENT))
    e = np.degrees(err[steady]) if steady.any() else np.degrees(err)
    settles = settle_times(t, err, changes)
    finite = [s for s in settles if math.isfinite(s)]
    minutes = (t[-1] - t[0]) / 60.0 if n > 1 else 1.0
    return RunResult(
        pilot=pilot, scenario=scenario, seed=seed,
        rms_deg=float(np.sqrt(np.mean(e ** 2))), max_deg=float(np.max(np.abs(e))),
        settle_s=float(np.mean(finite)) if len(finite) == len(settles) else math.nan,
        rudder_travel_per_min=float(np.sum(np.abs(np.diff(rudder))) / minutes),
        fallback_frac=(1.0 - model_ticks / n) if model_ticks is not None else math.nan,
        trace=trace or {}, boat=boat,
        guard_frac=(guard_ticks / n) if guard_ticks is not None and n else math.nan)


def evaluate(pilots: list[str], scenarios: list[str], seeds: list[int],
             progress=None, boats: list[BoatSpec] | None = None,
             workers: int = 1) -> list[RunResult]:
    """Every pilot x boat x scenario x seed (boats: the reference yacht alone by default).

    Traces are kept for the first seed on the first boat only (the plot's). `workers` > 1
    runs the episodes in that many processes (each episode is independent and seeded, so
    the results are the same, in the same order); the machine's cores are the limit.
    """
    boats = boats or [REFERENCE]
    jobs = [(p, boat, s, seed, b == 0 and seed == seeds[0])
            for p in pilots for b, boat in enumerate(boats) for s in scenarios for seed in seeds]
    results: list[RunResult] = []
    for r in process_map(_run_job, jobs, workers):
        results.append(r)
        if progress:
            progress(len(results), len(jobs), r)
    return results


def _run_job(job: tuple) -> RunResult:
    pilot, boat, scenario, seed, keep_trace = job
    return run_episode(pilot, SCENARIOS[scenario], seed, boat=boat, keep_trace=keep_trace)


def summary_table(results: list[RunResult]) -> str:
    """Mean over seeds per (boat,) scenario and pilot (max error: the worst seed)."""
    boats = list(dict.fromkeys(r.boat for r in results))
    if boats and boats != [REFERENCE.name]:
        return '\n\n'.join(f'boat: {b}\n' + _scenario_table([r for r in results if r.boat == b])
                           for b in boats)
    return _scenario_table(results)


def _percent(values: list[float]) -> str:
    return '-' if all(math.isnan(v) for v in values) else f'{100 * np.nanmean(values):.1f}%'


def _scenario_table(results: list[RunResult]) -> str:
    """`fallback`: ticks a model did not steer, for any reason; `guards`: of those, the ticks
    a guard (training envelope, watchdog) held the helm from it."""
    header = (f"{'scenario':22s} {'pilot':18s} {'RMS err deg':>11s} {'max err deg':>11s} "
              f"{'settle s':>9s} {'rudder/min':>10s} {'fallback':>9s} {'guards':>7s}")
    lines = [header, '-' * len(header)]
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    pilots = list(dict.fromkeys(r.pilot for r in results))
    for s in scenarios:
        for p in pilots:
            rs = [r for r in results if r.scenario == s and r.pilot == p]
            if not rs:
                continue
            settle = [r.settle_s for r in rs]
            settle_txt = 'never' if any(math.isnan(v) for v in settle) else \
                f'{np.mean(settle):.1f}'
            lines.append(
                f'{s:22s} {p:18s} {np.mean([r.rms_deg for r in rs]):11.2f} '
                f'{np.max([r.max_deg for r in rs]):11.1f} {settle_txt:>9s} '
                f'{np.mean([r.rudder_travel_per_min for r in rs]):10.2f} '
                f'{_percent([r.fallback_frac for r in rs]):>9s} '
                f'{_percent([r.guard_frac for r in rs]):>7s}')
        lines.append('')
    return '\n'.join(lines).rstrip()


def write_json(results: list[RunResult], path: str) -> None:
    """Every run's metrics (no traces) as a JSON list, for scripts and reports."""
    rows = [{k: v for k, v in vars(r).items() if k != 'trace'} for r in results]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(rows, f, indent=1, default=float)
        f.write('\n')


def read_json(path: str) -> list[RunResult]:
    """The runs `write_json` wrote."""
    with open(path) as f:
        return [RunResult(**row) for row in json.load(f)]


def plot_traces(results: list[RunResult], path: str) -> str:
    """One panel pair (heading+target, rudder) per scenario, every pilot overlaid."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    traced = [r for r in results if r.trace]
    scenarios = list(dict.fromkeys(r.scenario for r in traced))
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(13, 2.6 * len(scenarios)),
                             squeeze=False)
    for row, s in enumerate(scenarios):
        ax_h, ax_r = axes[row]
        for i, r in enumerate(r for r in traced if r.scenario == s):
            tr = r.trace
            if i == 0:
                ax_h.plot(tr['t'], np.degrees(np.unwrap(tr['target'])), 'k--', lw=1,
                          label='target')
            ax_h.plot(tr['t'], np.degrees(np.unwrap(tr['heading'])), lw=1, label=r.pilot)
            ax_r.plot(tr['t'], tr['rudder'], lw=1, label=r.pilot)
        ax_h.set_ylabel(f'{s}\nheading deg')
        ax_r.set_ylabel('rudder (+ = stbd)')
        ax_h.legend(loc='upper right', fontsize=7)
    axes[-1][0].set_xlabel('time s')
    axes[-1][1].set_xlabel('time s')
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='autopilot-eval', description=__doc__.split('\n')[0])
    parser.add_argument('--pilots', nargs='+', default=['pid', 'pd', 'expert'],
                        help="'pid' (the node's fallback), 'pd' (the former fallback, for "
                             "reference), 'expert', 'zero' or paths to .onnx models")
    parser.add_argument('--scenarios', nargs='+', default=list(SCENARIOS),
                        choices=list(SCENARIOS))
    parser.add_argument('--seeds', type=int, default=5, help='seeds 0..N-1')
    parser.add_argument('--boats', nargs='+', default=[REFERENCE.name],
                        help="'reference' (the simulator's yacht), 'held_out' (every boat "
                             f"no training may use: {', '.join(HELD_OUT)}), one of those, "
                             "family_<seed> (a boat drawn from the family) or a boat file "
                             "(.yaml: autopilot-train identify writes one)")
    parser.add_argument('--boat', action='append', default=[], metavar='FILE',
                        help="a boat file to sail as well (repeatable): your boat's twin")
    parser.add_argument('--plot', default='out/eval_traces.png', help='PNG of the traces')
    parser.add_argument('--json', metavar='PATH',
                        help='also write every run (pilot, boat, scenario, seed, metrics) as JSON')
    parser.add_argument('--workers', type=int, default=default_workers(),
                        help='processes running episodes (default: the cores, at most 4)')
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error('--workers must be >= 1')
    for p in args.pilots:
        if p not in ('pid', 'pd', 'expert', 'zero') and not os.path.isfile(p):
            parser.error(f"pilot '{p}' is neither pid/pd/expert/zero nor an existing .onnx file")
    try:
        boats = boats_by_names(args.boats + args.boat)
    except ValueError as exc:
        parser.error(str(exc))

    def progress(done, total, r):
        line = f'\r[{done}/{total}] {r.boat} {r.scenario} {r.pilot} seed {r.seed}'
        print(line.ljust(79), end='', file=sys.stderr, flush=True)
    from autopilot_ros.policy import ModelError
    try:
        results = evaluate(args.pilots, args.scenarios, list(range(args.seeds)), progress,
                           boats=boats, workers=args.workers)
    except ModelError as exc:  # a bad model: one message, no traceback
        print(f'\nautopilot-eval: {exc}', file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(summary_table(results))
    if args.json:
        write_json(results, args.json)
        print(f'runs: {args.json}')
    print(f'\ntraces: {plot_traces(results, args.plot)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
