"""Tune the PID pilot on a boat, in closed loop: `autopilot-train tune-pid --boat boat.yaml`.

The PID's defaults were tuned on the reference yacht; a tender boat, a heavy long keel or a
racer wants other gains. This searches them on the boat given (an identified twin, a held-out
boat, any `BoatSpec`) with the package's own closed loop (`sim/evaluate.run_episode`: the
very Pilot the node runs, on noisy instruments, scored on the true heading), across the
standard scenarios, with scipy's differential evolution, seeded.

What is searched: kp, kd (log scale: a gain twice as large is as far as one half as large),
ki, and `integral_limit`, the most rudder the integral may hold: it is the weather helm the
boat needs, a property of the boat (a tender boat heeled 30 deg needs over half its rudder
to go straight; at the default 0.3 the PID leaves it a standing error of several degrees).
Not searched: `speed_ref` (inside the schedule's bounds only kp * speed_ref^2 matters, so it
is kp and kd again), `schedule_min`/`schedule_max` (safety bounds, not performance),
`leak_s` (300 s against runs of 2-4 minutes that reset the integral on every new course:
the scenarios cannot see it) and `track_s` (it acts only while a model steers).

The objective (lower is better; the default PID scores 1 on every boat it does not lose):

    J = mean over scenarios of  (R_s + w * T_s) / (1 + w)  +  P * L_s

R_s is the candidate's heading-error RMS over the default PID's on that scenario (each the
mean over the seeds), both plus 2 deg, about what a good compass and a helmsman in flat
water hold: without it halving a calm-water error of 0.6 deg (which nobody aboard can see)
outweighs a degree lost in a gale. T_s is the same ratio of rudder travel, w = 0.5:
halving the error by doubling the travel scores no better than the default (it wears the
drive out and drains the battery), and a pilot that steers as well with less travel is
better. Per scenario, so calm water counts as much as a gale. L_s is the mean over the
seeds of max_error / 60 deg for every run whose worst heading error (after the transient)
passes 60 deg, 0 for the others: the boat has broached, gybed or tacked and is no longer
steered; P = 10 puts any such run far above every run that keeps the boat, and the worst
error in it still tells a bad loss from a worse one. Every candidate sails the same
scenarios and seeds (common random numbers: the same gusts and waves), so J is
deterministic and differences between candidates are the gains', not the weather's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
import math
import os
import time

import numpy as np

from autopilot_ros.pid_pilot import GAIN_RANGES, PIDGains
from autopilot_ros.pilot import PilotConfig
from autopilot_ros.sim.boats import BoatSpec
from autopilot_ros.sim.evaluate import RunResult, run_episode
from autopilot_ros.sim.parallel import process_map, process_pool
from autopilot_ros.sim.scenarios import SCENARIOS, Scenario

# The gains searched: name -> (low, high, scale). Inside GAIN_RANGES (test_tune_pid.py),
# narrower where the edge of the range is no pilot (kp 10 slams the rudder on every wave).
SEARCH_SPACE: dict[str, tuple[float, float, str]] = {
    'kp': (0.3, 8.0, 'log'),
    'ki': (0.0, 1.5, 'linear'),
    'kd': (0.5, 16.0, 'log'),
    'integral_limit': (0.1, 0.8, 'linear'),
}

TRAVEL_WEIGHT = 0.5  # w: halving the error by doubling the travel is not better
LOST_DEG = 60.0  # a worst heading error past this (after the transient): the boat is lost
LOST_PENALTY = 10.0  # P, per lost run, times its worst error / LOST_DEG
# Simulator seeds the search sails by default: apart from evaluation (0..99: autopilot-eval
# and the closed-loop verdict), model selection (500..), demonstrations (1000..) and DAgger
# (2000..), so gains tuned on a boat are never judged on the weather they were tuned in.
TUNE_SEED_BASE = 300
DEFAULT_TRIALS = 128
DEFAULT_SEEDS = 2
# The margin boats (margin_boats): what a twin may hide.
MARGIN_LATENCY_S = 0.15
MARGIN_COMPASS_LAG_S = 0.4
MARGIN_NOISE = 2.0
MARGIN_RUDDER = 0.8  # the weaker margin boat's rudder; the stronger one's is 1 / 0.8
POPULATION = 16  # candidates per generation of differential evolution, at most
LOCAL_SPAN = 0.3  # the first generation's near half: this share of each gain's search range
MIN_POPULATION = 5  # scipy's differential evolution needs at least this many members
SIGNIFICANT = 4  # digits the tuned gains keep: what is printed is what was measured
RMS_OFFSET_DEG = 2.0  # added to both RMS of the ratio: a fraction of a degree counts little
_TRAVEL_FLOOR = 0.1  # per minute: the least default travel the travel ratio divides by

# progress(runs done, runs in all, note): note is '' between generations, a line at each end.
ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ScenarioScore:
    """One scenario's part of the objective, and what it was made of."""

    scenario: str
    rms_ratio: float  # R_s
    travel_ratio: float  # T_s
    lost: float  # L_s (0: no run lost the boat)
    lost_runs: int

    @property
    def score(self) -> float:
        return ((self.rms_ratio + TRAVEL_WEIGHT * self.travel_ratio) / (1.0 + TRAVEL_WEIGHT)
                + LOST_PENALTY * self.lost)


@dataclass
class TuneResult:
    """What `tune_pid` found, and the closed loop before and after, on one boat."""

    boat: str
    gains: PIDGains  # the tuned gains (rounded to SIGNIFICANT digits, as measured)
    start: PIDGains  # where the search started: "before"
    objective_before: float  # J of `start` on the tuning seeds
    objective_after: float  # J of `gains` on the tuning seeds
    seeds: list[int]  # the tuning seeds
    table_seeds: list[int]  # the seeds of `before` / `after` (check seeds, if given)
    before: list[RunResult]  # `start` steering, one run per scenario and table seed
    after: list[RunResult]  # `gains` steering, the same runs
    check_before: float = math.nan  # J on the check seeds (nan: none given)
    check_after: float = math.nan
    evaluations: int = 0  # candidate gain sets sailed by the search
    runs: int = 0  # closed-loop runs in all
    seconds: float = 0.0
    history: list[float] = field(default_factory=list)  # best J after each generation
    scores_after: list[ScenarioScore] = field(default_factory=list)  # per scenario, tuning

    @property
    def improved(self) -> bool:
        return self.objective_after < self.objective_before


def gains_to_vector(gains: PIDGains) -> np.ndarray:
    """The searched gains as the optimiser sees them (log of kp and kd), inside the space."""
    gains = clamp_to_space(gains)
    return np.array([math.log(getattr(gains, n)) if scale == 'log' else getattr(gains, n)
                     for n, (_, _, scale) in SEARCH_SPACE.items()])


def vector_to_gains(x: Sequence[float], base: PIDGains) -> PIDGains:
    """The optimiser's point as gains: `base` with the searched ones replaced, rounded."""
    values = {}
    for v, (name, (low, high, scale)) in zip(x, SEARCH_SPACE.items(), strict=True):
        value = math.exp(v) if scale == 'log' else float(v)
        values[name] = _round(min(high, max(low, value)))
    return replace(base, **values)


def search_bounds() -> list[tuple[float, float]]:
    return [(math.log(low), math.log(high)) if scale == 'log' else (low, high)
            for low, high, scale in SEARCH_SPACE.values()]


def _round(value: float) -> float:
    return float(f'{value:.{SIGNIFICANT}g}')


def clamp_to_space(gains: PIDGains) -> PIDGains:
    """A start point inside the search space (a sailor's kd 0 is the space's lowest kd)."""
    return replace(gains, **{n: min(high, max(low, getattr(gains, n)))
                             for n, (low, high, _) in SEARCH_SPACE.items()})


# -- the objective ------------------------------------------------------------------------
def is_lost(run: RunResult) -> bool:
    """The boat left the pilot's hands: worst steady error past LOST_DEG, or no number."""
    return not (math.isfinite(run.rms_deg) and math.isfinite(run.max_deg)) or \
        run.max_deg > LOST_DEG


def scenario_scores(runs: Sequence[RunResult],
                    reference: Sequence[RunResult]) -> list[ScenarioScore]:
    """Per scenario: the candidate's runs against the default PID's on the same seeds."""
    out = []
    for name in dict.fromkeys(r.scenario for r in reference):
        ref = [r for r in reference if r.scenario == name]
        mine = [r for r in runs if r.scenario == name]
        if sorted(r.seed for r in mine) != sorted(r.seed for r in ref):
            raise ValueError(f'scenario {name}: the runs and the reference sailed other seeds')
        ref_rms = _finite_mean([r.rms_deg for r in ref]) + RMS_OFFSET_DEG
        ref_travel = max(_TRAVEL_FLOOR, _finite_mean([r.rudder_travel_per_min for r in ref]))
        lost = [r for r in mine if is_lost(r)]
        worst = [r.max_deg if math.isfinite(r.max_deg) else 180.0 for r in lost]
        rms = [r.rms_deg if math.isfinite(r.rms_deg) else 180.0 for r in mine]
        travel = [r.rudder_travel_per_min if math.isfinite(r.rudder_travel_per_min)
                  else 0.0 for r in mine]
        out.append(ScenarioScore(
            scenario=name, rms_ratio=(float(np.mean(rms)) + RMS_OFFSET_DEG) / ref_rms,
            travel_ratio=float(np.mean(travel)) / ref_travel,
            lost=float(np.sum(np.asarray(worst) / LOST_DEG)) / len(mine),
            lost_runs=len(lost)))
    return out


def objective(runs: Sequence[RunResult], reference: Sequence[RunResult]) -> float:
    """J (module docstring): 1 for the default PID itself, unless it loses the boat."""
    return float(np.mean([s.score for s in scenario_scores(runs, reference)]))


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


# -- closed-loop runs -----------------------------------------------------------------------
def _run_job(job: tuple[BoatSpec, Scenario, int, PIDGains]) -> RunResult:
    """One closed-loop run of the PID with these gains (top-level: spawned workers)."""
    boat, scenario, seed, gains = job
    return run_episode('pid', scenario, seed, boat=boat, config=PilotConfig(pid=gains))


class _Runner:
    """Sails gain sets on the boat, all scenarios x seeds each, counting for the progress."""

    def __init__(self, boats: Sequence[BoatSpec], scenarios: Sequence[Scenario], workers: int,
                 total: int, progress: ProgressFn | None, pool=None) -> None:
        self.boats, self.scenarios, self.workers = list(boats), list(scenarios), workers
        self.pool, self.total, self.progress, self.done = pool, total, progress, 0

    def sail(self, candidates: Sequence[PIDGains], seeds: Sequence[int]) -> list[list[RunResult]]:
        """Per candidate, its runs (boat-major, then scenario, then seed), in one batch of
        processes."""
        jobs = [(b, s, seed, g) for g in candidates for b in self.boats for s in self.scenarios
                for seed in seeds]
        results = []
        for r in process_map(_run_job, jobs, self.workers, self.pool):
            results.append(r)
            self.done += 1
            if self.progress:
                self.progress(min(self.done, self.total), self.total, '')
        per = len(self.boats) * len(self.scenarios) * len(seeds)
        return [results[i * per:(i + 1) * per] for i in range(len(candidates))]

    def skip(self, candidates: int, seeds: int) -> None:
        """Count runs a cache answered, so the bar still ends at its total."""
        self.done += candidates * len(self.boats) * len(self.scenarios) * seeds

    def note(self, text: str) -> None:
        if self.progress:
            self.progress(min(self.done, self.total), self.total, text)


def evaluate_gains(boat: BoatSpec, gain_sets: Sequence[PIDGains], seeds: Sequence[int],
                   workers: int = 1, scenarios: Sequence[Scenario] | None = None,
                   progress: ProgressFn | None = None) -> list[list[RunResult]]:
    """Per gain set, its closed-loop runs on `boat` (scenario-major, then seed).

    For comparing gains found elsewhere on this boat (gains tuned on a twin, sailed on the
    true boat): `objective(runs[i], runs[j])` scores set i against set j as the yardstick.
    """
    scenarios = list(SCENARIOS.values()) if scenarios is None else list(scenarios)
    for g in gain_sets:
        g.validate()
    with process_pool(workers) as pool:
        runner = _Runner([boat], scenarios, workers,
                         len(gain_sets) * len(scenarios) * len(seeds), progress, pool)
        return runner.sail(list(gain_sets), list(seeds))


def margin_boats(boat: BoatSpec) -> list[BoatSpec]:
    """The boat as identification may have got it wrong: what a twin does not see.

    Measured (tools/twin_study.py, docs/boat_twin.md): gains tuned on the twin of
    laggy_instruments sailed its true boat at 11.95 deg RMS against 2.80 for gains tuned on
    the boat itself, losing it downwind: identification does not measure latency or sensor
    noise, so the twin was quicker and quieter than the boat, and the search took the D gain
    from 4.9 down to 0.8, which only a quick, quiet boat forgives. So both margin boats read
    every instrument 0.15 s later, with its noise doubled and the compass 0.4 s more damped.

    A margin with only the weaker rudder (20 %) favoured high gains: micro_cruiser's sailed
    its true boat at 1.57 times the truth-tuned RMS (most of it downwind and in heavy
    weather), on an edge that the twin's small errors together pushed it over. And
    identification errs on the rudder both ways (laggy_instruments': 25 % weak, from its
    sensors' noise). So one margin boat has the rudder 20 % weaker and the other 25 %
    stronger (1 / 0.8): gains that lose the boat either way are out, however well they steer
    the twin.
    """
    p, sn = boat.params, boat.sensors
    sensors = replace(sn, latency_s=min(2.0, sn.latency_s + MARGIN_LATENCY_S),
                      compass_lag_s=sn.compass_lag_s + MARGIN_COMPASS_LAG_S,
                      **{f.name: getattr(sn, f.name) * MARGIN_NOISE for f in fields(sn)
                         if f.name.endswith('_noise')})
    return [replace(boat, name=f'{boat.name} (margin, rudder x{scale:g})', sensors=sensors,
                    params=replace(p, rudder_gain=p.rudder_gain * scale))
            for scale in (MARGIN_RUDDER, 1.0 / MARGIN_RUDDER)]


def population_size(trials: int) -> int:
    """Candidates per generation: POPULATION, fewer for a small budget (at least 5)."""
    return max(MIN_POPULATION, min(POPULATION, trials // 4))


def initial_population(start: PIDGains, size: int, seed: int) -> np.ndarray:
    """`start`, then half the rest around it and half over the whole space (Latin hypercubes,
    seeded): near the start the boat is sailed already, so the first generations refine
    what works, while the far half keeps the search from settling on the start's hill."""
    from scipy.stats import qmc

    bounds = np.array(search_bounds())
    x0 = gains_to_vector(start)
    rng = np.random.default_rng(seed)
    near = (size - 1) // 2
    far = size - 1 - near
    rows = [x0[None, :]]
    if near:
        half = LOCAL_SPAN * (bounds[:, 1] - bounds[:, 0]) / 2.0
        lo, hi = np.maximum(bounds[:, 0], x0 - half), np.minimum(bounds[:, 1], x0 + half)
        rows.append(qmc.scale(qmc.LatinHypercube(d=len(bounds), rng=rng).random(near), lo, hi))
    if far:
        rows.append(qmc.scale(qmc.LatinHypercube(d=len(bounds), rng=rng).random(far),
                              bounds[:, 0], bounds[:, 1]))
    return np.vstack(rows)


def tune_pid(boat: BoatSpec, trials: int = DEFAULT_TRIALS, seeds: Sequence[int] | None = None,
             workers: int = 1, progress: ProgressFn | None = None, *,
             start: PIDGains | None = None, scenarios: Sequence[Scenario] | None = None,
             check_seeds: Sequence[int] | None = None, optimiser_seed: int = 0,
             margin: bool = True) -> TuneResult:
    """Search the PID gains on `boat`; at most `trials` candidate gain sets are sailed.

    `seeds`: the simulator seeds every candidate sails each scenario with (default: two
    from TUNE_SEED_BASE). `start`: the gains the search starts from and the "before" of the
    tables (default: the node's defaults); the objective's yardstick is always the default
    PID. `check_seeds`: seeds never tuned on for the before/after table (None: the table is
    the tuning seeds'). `optimiser_seed` seeds differential evolution: the same arguments
    give the same gains. The tuned gains are never worse than `start` on the tuning seeds:
    `start` is in the first generation and the search keeps its best. With `margin` every
    candidate also sails the two `margin_boats(boat)` and J is the mean over the three (three
    times the runs): gains that lose the boat when it is slower and noisier than its twin, its
    rudder weaker or stronger, are out. The
    before/after table is the boat's own.
    """
    from scipy.optimize import differential_evolution

    if trials < 1:
        raise ValueError(f'trials must be >= 1, got {trials}')
    if workers < 1:
        raise ValueError(f'workers must be >= 1, got {workers}')
    seeds = list(range(TUNE_SEED_BASE, TUNE_SEED_BASE + DEFAULT_SEEDS)) if seeds is None \
        else [int(s) for s in seeds]
    if not seeds:
        raise ValueError('at least one simulator seed is needed')
    scenarios = list(SCENARIOS.values()) if scenarios is None else list(scenarios)
    if not scenarios:
        raise ValueError('at least one scenario is needed')
    check = [int(s) for s in check_seeds] if check_seeds else []
    default = PIDGains()
    start = start or default
    start.validate()
    began = time.monotonic()

    with process_pool(workers) as pool:  # one pool for the whole search
        size = population_size(trials)
        evaluations = trials if trials < size else size * (trials // size)
        n_table = len({PIDGains(), start}) + 1 if check else 0  # default, start, tuned
        candidates_total = 1 + int(start != default) + evaluations
        sailed_on = [boat, *margin_boats(boat)] if margin else [boat]
        runner = _Runner(sailed_on, scenarios, workers,
                         total=len(scenarios) * (len(sailed_on) * len(seeds) * candidates_total
                                                 + len(check) * n_table),
                         progress=progress, pool=pool)
        reference = runner.sail([default], seeds)[0]
        cache: dict[PIDGains, list[RunResult]] = {default: reference}
        if start not in cache:
            cache[start] = runner.sail([start], seeds)[0]
        objective_before = objective(cache[start], reference)
        runner.note(f'{boat.name}: default PID J {objective(reference, reference):.3f}, start J '
                    f'{objective_before:.3f}; searching {", ".join(SEARCH_SPACE)} with '
                    f'{evaluations} candidates x {len(scenarios)} scenarios x {len(seeds)} seeds')

        history: list[float] = []
        sailed = 0

        def batch(gain_sets: list[PIDGains]) -> list[float]:
            nonlocal sailed
            new = [g for g in dict.fromkeys(gain_sets) if g not in cache]
            runner.skip(len(gain_sets) - len(new), len(seeds))  # met before: no need to sail
            for g, runs in zip(new, runner.sail(new, seeds), strict=True):
                cache[g] = runs
            sailed += len(gain_sets)
            return [objective(cache[g], reference) for g in gain_sets]

        init = initial_population(start, min(size, trials), optimiser_seed)
        if trials < MIN_POPULATION:  # too few for evolution: the start and a spread, best wins
            gain_sets = [vector_to_gains(x, start) for x in init]
            scores = batch(gain_sets)
            best = gain_sets[int(np.argmin(scores))]
            history.append(min(scores))
        else:
            def energies(x: np.ndarray) -> np.ndarray:  # vectorized: x is (dims, candidates)
                scores = batch([vector_to_gains(col, start) for col in x.T])
                best_now = min([*scores, *history])
                history.append(best_now)
                runner.note(f'generation {len(history)}/{trials // size}: best J {best_now:.3f}')
                return np.asarray(scores)

            found = differential_evolution(
                energies, search_bounds(), init=init, maxiter=trials // size - 1,
                popsize=1, seed=optimiser_seed, polish=False, vectorized=True,
                updating='deferred', tol=0.0, atol=0.0)
            best = vector_to_gains(found.x, start)
            if best not in cache:  # found.x is a member of the population: only if it rounds off
                batch([best])
        if objective(cache[best], reference) > objective_before:  # never worse than the start
            best = start
        objective_after = objective(cache[best], reference)

        if check:
            table_gains = list(dict.fromkeys([default, start, best]))
            table_runner = _Runner([boat], scenarios, workers, runner.total, progress, pool)
            table_runner.done = runner.done
            check_runs = dict(zip(table_gains, table_runner.sail(table_gains, check),
                                  strict=True))
            before, after = check_runs[start], check_runs[best]
            check_before = objective(before, check_runs[default])
            check_after = objective(after, check_runs[default])
        else:  # the tuning seeds' runs on the boat itself (not its margin boats)
            own = len(scenarios) * len(seeds)
            before, after = cache[start][:own], cache[best][:own]
            check_before = check_after = math.nan
        runner.done = runner.total
        runner.note(f'{boat.name}: J {objective_before:.3f} -> {objective_after:.3f} on the '
                    'tuning seeds' + (f', {check_before:.3f} -> {check_after:.3f} on the check '
                                      'seeds' if check else ''))
        return TuneResult(
            boat=boat.name, gains=best, start=start, objective_before=objective_before,
            objective_after=objective_after, seeds=seeds, table_seeds=check or seeds,
            before=before, after=after, check_before=check_before, check_after=check_after,
            evaluations=sailed, runs=runner.done, seconds=time.monotonic() - began,
            history=history, scores_after=scenario_scores(cache[best], reference))


def load_start(path: str) -> PIDGains:
    """The PID gains in a node params file (config/autopilot.yaml, the boat's own, a tune-pid
    output), to start the search from what the boat runs now; parameters it does not set keep
    their defaults. ValueError with one message naming what is wrong."""
    import yaml

    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise ValueError(f'cannot read params file {path}: {exc.strerror}') from None
    except yaml.YAMLError as exc:
        raise ValueError(f'{path} is not YAML: {" ".join(str(exc).split())}') from None
    found: dict = {}
    for body in (doc.values() if isinstance(doc, dict) else ()):
        params = body.get('ros__parameters') if isinstance(body, dict) else None
        if isinstance(params, dict):
            nested = params.get('pid')
            found = {**(nested if isinstance(nested, dict) else {}),
                     **{k[4:]: v for k, v in params.items() if k.startswith('pid.')}}
            if found:
                break
    if not found:
        raise ValueError(f'{path}: no pid.* parameters (a params file: <node>: '
                         'ros__parameters: pid: kp: ...)')
    unknown = sorted(set(found) - set(GAIN_RANGES))
    if unknown:
        raise ValueError(f'{path}: unknown PID parameter(s) {", ".join(unknown)}; the PID '
                         f'has {", ".join(GAIN_RANGES)}')
    for name, value in found.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f'{path}: pid.{name} {value!r} is not a number')
    gains = replace(PIDGains(), **{k: float(v) for k, v in found.items()})
    try:
        gains.validate()
    except ValueError as exc:
        raise ValueError(f'{path}: {exc}') from None
    return gains


# -- output ---------------------------------------------------------------------------------
def _yaml_float(value: float) -> str:
    """A float ROS reads back as a double: always with a point, never 1e-05 (a string to
    YAML 1.1 loaders)."""
    text = repr(float(value))
    if 'e' in text or 'E' in text:
        text = f'{value:.12f}'.rstrip('0')
    return text if '.' in text else text + '.0'


def params_yaml(result: TuneResult, command: str = '') -> str:
    """The tuned gains as a params file the node accepts as is (every `pid.*` parameter)."""
    seeds = ', '.join(str(s) for s in result.seeds)
    lines = ['# PID gains tuned in closed loop on boat '
             f"'{result.boat}' by autopilot-train tune-pid",
             f'# objective {result.objective_before:.3f} -> {result.objective_after:.3f} '
             f'(1 = the default PID; lower is better) on seeds {seeds}']
    if math.isfinite(result.check_after):
        lines.append(f'# and {result.check_before:.3f} -> {result.check_after:.3f} on check '
                     f"seeds {', '.join(str(s) for s in result.table_seeds)}")
    if command:
        lines.append(f'# {command}')
    lines += ['# Use: ros2 run autopilot_ros autopilot_node --ros-args --params-file '
              '<your autopilot.yaml> --params-file <this file>',
              '# or, on a running node, the `ros2 param set` lines tune-pid printed',
              '/**/autopilot:', '  ros__parameters:', '    pid:']
    for f in fields(PIDGains):
        lines.append(f'      {f.name}: {_yaml_float(getattr(result.gains, f.name))}')
    return '\n'.join(lines) + '\n'


def param_set_commands(gains: PIDGains, node: str = '/autopilot') -> list[str]:
    """The searched gains as `ros2 param set` lines, for a pilot already running."""
    return [f'ros2 param set {node} pid.{n} {_yaml_float(getattr(gains, n))}'
            for n in SEARCH_SPACE]


def write_params(result: TuneResult, path: str, command: str = '') -> str:
    """Write `params_yaml` to path whole or not at all (a temporary file, then a rename)."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        with open(tmp, 'w') as f:
            f.write(params_yaml(result, command))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def gains_text(g: PIDGains) -> str:
    return ' '.join(f'{n} {getattr(g, n):g}' for n in SEARCH_SPACE)


def comparison_table(result: TuneResult) -> str:
    """Per scenario, before and after: RMS (mean over seeds), worst error, rudder travel."""
    seeds = result.table_seeds
    which = 'check seeds' if math.isfinite(result.check_after) else 'tuning seeds'
    head = (f"{'scenario':22s} {'RMS deg':>15s} {'worst deg':>15s} {'travel/min':>15s} "
            f"{'lost':>7s}")
    sub = f"{'':22s} {'before':>7s} {'after':>7s} {'before':>7s} {'after':>7s} " \
          f"{'before':>7s} {'after':>7s} {'b/a':>7s}"
    lines = [f'boat {result.boat}, {which} {", ".join(str(s) for s in seeds)}:',
             head, sub, '-' * len(sub)]
    names = list(dict.fromkeys(r.scenario for r in result.before))
    rows = []
    for name in names + ['all']:
        b = [r for r in result.before if name in ('all', r.scenario)]
        a = [r for r in result.after if name in ('all', r.scenario)]
        row = (np.mean([r.rms_deg for r in b]), np.mean([r.rms_deg for r in a]),
               max(r.max_deg for r in b), max(r.max_deg for r in a),
               np.mean([r.rudder_travel_per_min for r in b]),
               np.mean([r.rudder_travel_per_min for r in a]))
        lost = f'{sum(map(is_lost, b))}/{sum(map(is_lost, a))}'
        if name == 'all':
            lines.append('-' * len(sub))
        lines.append(f'{name:22s} ' + ' '.join(f'{v:7.2f}' for v in row[:2]) + ' '
                     + ' '.join(f'{v:7.1f}' for v in row[2:4]) + ' '
                     + ' '.join(f'{v:7.2f}' for v in row[4:]) + f' {lost:>7s}')
        rows.append(row)
    lines.append('')
    lines.append(f'before: {gains_text(result.start)}')
    lines.append(f'after:  {gains_text(result.gains)}')
    lines.append(f'objective (1 = default PID, lower is better): tuning seeds '
                 f'{result.objective_before:.3f} -> {result.objective_after:.3f}'
                 + (f'; check seeds {result.check_before:.3f} -> {result.check_after:.3f}'
                    if math.isfinite(result.check_after) else ''))
    return '\n'.join(lines)


def plot_result(result: TuneResult, path: str) -> str:
    """PNG: best objective per generation, and RMS and travel per scenario before/after."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.scenario for r in result.before))

    def per(runs: list[RunResult], key: str) -> list[float]:
        return [float(np.mean([getattr(r, key) for r in runs if r.scenario == n]))
                for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.plot(range(1, len(result.history) + 1), result.history, 'o-')
    ax.axhline(1.0, color='k', ls='--', lw=1, label='default PID')
    ax.axhline(result.objective_before, color='tab:red', ls=':', lw=1, label='start')
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel('generation')
    ax.set_ylabel('best objective J (tuning seeds)')
    ax.set_title(f'{result.boat}: search')
    ax.legend()
    x = np.arange(len(names))
    for ax, key, label in ((axes[1], 'rms_deg', 'heading-error RMS deg'),
                           (axes[2], 'rudder_travel_per_min', 'rudder travel per min')):
        ax.bar(x - 0.2, per(result.before, key), 0.4, label='before')
        ax.bar(x + 0.2, per(result.after, key), 0.4, label='after')
        ax.set_xticks(x, names, rotation=30, ha='right', fontsize=8)
        ax.set_ylabel(label)
        ax.legend()
    which = 'check' if math.isfinite(result.check_after) else 'tuning'
    axes[1].set_title(f'{which} seeds ' + ', '.join(str(s) for s in result.table_seeds))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
