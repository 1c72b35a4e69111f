"""Bags in, a judged model out: dataset, training, DAgger, export, closed-loop verdict.

`run` is what `autopilot-train --bags ... --out models/NAME` does. It writes, next to
each other: NAME.onnx (the model the node loads), NAME.pt (checkpoint, weights only),
NAME_curves.png, NAME_traces.png, NAME.json (every number) and NAME.md (the model card
with the closed-loop table and the verdict against the PID pilot, the node's fallback).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import json
import math
import os
from pathlib import Path
import shlex
import tempfile
import time

import numpy as np

from autopilot_ros.features import FEATURE_SPEC_HASH
from autopilot_ros.sim.boats import (
    BOAT_SETS,
    DAGGER_BOAT_SEEDS,
    HELD_OUT,
    REFERENCE,
    BoatSpec,
    boats_by_names,
    draw_boat,
    selection_boats,
)
from autopilot_ros.sim.evaluate import RunResult, evaluate, plot_traces, summary_table
from autopilot_ros.sim.parallel import default_workers, process_map
from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.training.bags import TopicMap, read_bags
from autopilot_ros.training.dataset import (
    Dataset,
    DatasetConfig,
    build_dataset,
    split,
)
from autopilot_ros.training.demos import dagger_windows
from autopilot_ros.training.export import export_onnx
from autopilot_ros.training.train import (
    History,
    Progress,
    TrainConfig,
    evaluate_open_loop,
    plot_curves,
    save_checkpoint,
    train_model,
)
from autopilot_ros.training.verdict import (
    BASELINE,
    DANGER_MAX_DEG,
    DANGER_RMS,
    SHIP_MEAN_RMS_RATIO,
    SHIP_REFERENCE_PD_RATIO,
    SHIP_RMS_TOLERANCE,
    SHIP_TRAVEL_TOLERANCE,
    ship_rule,
    verdict,
)

# Seeds are kept apart: evaluation 0..99, model selection 500.., DAgger 2000.., and the
# demonstrations `autopilot-train simulate` records start at 1000.
SELECTION_SEEDS = (500, 501)
DAGGER_SEED_BASE = 2000

# Where DAgger rollouts and model selection sail (boats.BOAT_SETS): the reference yacht
# alone, or the boat family (rollouts on boats drawn from DAGGER_BOAT_SEEDS, selection on the
# reference yacht and SELECTION_BOAT_COUNT family boats that no data comes from).
SELECTION_BOAT_COUNT = 4
# Where DAgger rolls out: the boat sets above, or 'twin': the reference yacht for a
# scenario's first seed and the sailor's identified boat (--boat) for the others.
SIM_BOAT_SETS = (*BOAT_SETS, 'twin')


@dataclass
class PipelineConfig:
    bags: list[str]
    out: str  # models/NAME (suffixes are added)
    topic_map: TopicMap = field(default_factory=TopicMap)
    skip_bad: bool = False
    data: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dagger_iterations: int = 0
    dagger_seeds: int = 3  # per scenario and iteration
    dagger_epochs: int = 0  # epochs per DAgger round (fine-tuning; 0: as many as training)
    dagger_window_cap: int = 0  # windows a round trains on at most (0: the whole aggregate)
    eval_seeds: int = 5
    # Closed-loop verdict, DAgger rollouts and DAgger model selection all use these
    # scenarios, on seeds of their own (see above).
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    sim_boats: str = 'reference'  # where DAgger and selection sail: boats.BOAT_SETS
    # Boats of the closed-loop verdict (boats.boats_by_names); with the held-out boats the
    # ship rule above decides.
    verdict_boats: tuple[str, ...] = (REFERENCE.name,)
    # The sailor's boat as a boat file (autopilot-train identify): the verdict is given on
    # it, beside the verdict boats, and with sim_boats 'twin' DAgger rolls out on it.
    boat: str = ''
    workers: int = field(default_factory=default_workers)  # closed-loop processes
    version: str = '1'
    command: str = ''  # how this run was started, for the model card
    card_note: str = ''  # e.g. how the bags were made


def _paths(out: str) -> dict[str, Path]:
    base = Path(out)
    if base.suffix in ('.onnx', '.pt'):
        base = base.with_suffix('')
    return {k: base.with_name(base.name + suffix) for k, suffix in (
        ('onnx', '.onnx'), ('pt', '.pt'), ('curves', '_curves.png'),
        ('traces', '_traces.png'), ('json', '.json'), ('card', '.md'))}


def sim_boats(kind: str) -> list[BoatSpec]:
    """The boats model selection sails on (see SELECTION_BOAT_COUNT). Never the twin: it
    judges the model (the verdict), and a judge that also selected would flatter it."""
    if kind not in SIM_BOAT_SETS:
        raise ValueError(f"sim boats '{kind}' is not one of {', '.join(SIM_BOAT_SETS)}")
    return [REFERENCE] + (selection_boats(SELECTION_BOAT_COUNT) if kind == 'family' else [])


def verdict_boats(cfg: PipelineConfig) -> list[BoatSpec]:
    """The verdict's boats: cfg.verdict_boats, then the sailor's boat file if given, renamed
    if it carries a built-in boat's name, so its runs never mix with another boat's and a
    twin is never judged as the held-out boat it is named after."""
    boats = boats_by_names(list(cfg.verdict_boats))
    if cfg.boat:
        twin = boats_by_names([cfg.boat])[0]
        taken = {b.name for b in boats} | set(HELD_OUT) | {REFERENCE.name}
        if twin.name in taken or twin.name.startswith('family_'):
            twin = replace(twin, name=f'{twin.name}_twin')
        boats.append(twin)
    return boats


def selection_score(policy_path: str, base_rms: dict[tuple[str, str], float],
                    scenarios: tuple[str, ...], boats: list[BoatSpec] | None = None,
                    workers: int = 1) -> float:
    """Mean over boats and scenarios of model RMS / PID RMS on the selection seeds (lower is
    better); `base_rms` holds the PID's, keyed by (boat name, scenario)."""
    boats = boats or [REFERENCE]
    res = evaluate([policy_path], list(scenarios), list(SELECTION_SEEDS), boats=boats,
                   workers=workers)
    return float(np.mean([
        np.mean([r.rms_deg for r in res if r.boat == b.name and r.scenario == s])
        / base_rms[(b.name, s)] for b in boats for s in scenarios]))


def run(cfg: PipelineConfig, progress: Progress | None = None) -> dict:
    """The whole pipeline; returns the report it also writes to NAME.json."""
    progress = progress or Progress()
    paths = _paths(cfg.out)
    t_start = time.perf_counter()
    report: dict = {'feature_spec_hash': FEATURE_SPEC_HASH, 'version': cfg.version,
                    'data_config': asdict(cfg.data), 'train_config': asdict(cfg.train)}

    # 1. Read the bags.
    t0 = time.perf_counter()
    recordings = read_bags(cfg.bags, cfg.topic_map, skip_bad=cfg.skip_bad)
    messages = sum(sum(len(v) for v in r.samples.values()) for r in recordings)
    read_s = time.perf_counter() - t0
    for r in recordings:
        progress.line(f'read {r.summary()}')
        for w in r.warnings:
            progress.line(f'  warning: {w}')
    report['bags'] = {'count': len(recordings), 'messages': messages,
                      'seconds': round(read_s, 2),
                      'messages_per_s': round(messages / max(read_s, 1e-9))}
    progress.line(f'read {messages:,} messages from {len(recordings)} bag(s) in {read_s:.1f} s '
                  f'({messages / max(read_s, 1e-9):,.0f} msg/s)')

    if not cfg.boat:
        _suggest_identify(recordings, cfg, progress)

    # 2. The dataset.
    data = build_dataset(recordings, cfg.data, lambda i, n, rep: progress.line(rep.line()))
    train, val, how = split(data, cfg.data)
    report['data'] = {**data.summary(), 'train_windows': len(train),
                      'val_windows': len(val), 'split': how}
    progress.line(f'dataset: {len(data):,} windows kept; split {how}')

    # 3. Train (and DAgger in the simulator).
    model, history = train_model(train, val, cfg.train, progress)
    histories = [history]
    if cfg.dagger_iterations > 0:
        model, histories, dagger_report = _dagger(cfg, model, train, val, progress,
                                                  histories, len(recordings))
        report['dagger'] = dagger_report
    report['history'] = [h.as_dict() for h in histories]
    train_s = time.perf_counter() - t_start
    report['training_seconds'] = round(train_s, 1)

    # 4. Export, checked against PyTorch on held-out windows.
    check = val.windows(np.linspace(0, len(val) - 1, min(len(val), 2048)).astype(np.int64))
    summary = {**report['data'], 'dagger_iterations': cfg.dagger_iterations}
    summary.pop('dropped', None)
    paths['onnx'].parent.mkdir(parents=True, exist_ok=True)
    max_diff = export_onnx(model, str(paths['onnx']), rate_hz=cfg.data.rate_hz,
                           check_windows=check, data_summary=summary, version=cfg.version,
                           envelope_rows=data.rows[data.ends])
    save_checkpoint(str(paths['pt']), model, cfg.train,
                    {'data_config': asdict(cfg.data), 'feature_spec_hash': FEATURE_SPEC_HASH})
    report['onnx_max_abs_diff'] = max_diff
    report['onnx_check_windows'] = int(len(check))
    progress.line(f'wrote {paths["onnx"]} (ONNX Runtime vs PyTorch on {len(check)} held-out '
                  f'windows: max |diff| {max_diff:.2e}) and {paths["pt"]}')
    _, rmse, sign = evaluate_open_loop(model, val)
    report['open_loop'] = {'val_rmse': rmse, 'val_same_sign': sign,
                           'pd_suggestion_rmse': histories[0].pd_rmse}
    plot_curves(_joined(histories), str(paths['curves']),
                f'{paths["onnx"].name}: open loop (the closed-loop table is the verdict)')

    # 5. Closed loop: the verdict.
    if cfg.eval_seeds > 0:
        name = paths['onnx'].name
        boats = verdict_boats(cfg)
        twin = boats[-1] if cfg.boat else None
        # The PID and the model sail every verdict boat; the PD pilot and the expert, the
        # columns for context, the reference yacht only (autopilot-eval gives them on any).
        context = [b for b in boats if b.name == REFERENCE.name]
        total = len(cfg.scenarios) * cfg.eval_seeds * (2 * len(boats) + 2 * len(context))
        progress.line(f'closed loop: pid and {name} on {len(boats)} boat(s), pd and expert on '
                      f'{len(context)}, {len(cfg.scenarios)} scenarios x {cfg.eval_seeds} seeds '
                      f'({cfg.workers} process(es))')
        done = 0

        def bar(d: int, n: int, r: RunResult) -> None:
            progress.bar('closed loop', done + d, total)
        seeds = list(range(cfg.eval_seeds))
        results = evaluate([BASELINE, str(paths['onnx'])], list(cfg.scenarios), seeds, bar,
                           boats=boats, workers=cfg.workers)
        done = len(results)
        if context:
            results += evaluate(['pd', 'expert'], list(cfg.scenarios), seeds, bar,
                                boats=context, workers=cfg.workers)
        table = summary_table(results)
        plot_traces(results, str(paths['traces']))
        # The verdict is about the sailor's boat when there is one, else the reference yacht.
        on_twin = [r for r in results if twin is not None and r.boat == twin.name]
        on_reference = [r for r in results if r.boat == REFERENCE.name]
        judged_on = (twin.name if on_twin else REFERENCE.name if on_reference
                     else f'{len(boats)} boats')
        report['closed_loop'] = {'table': table, 'seeds': cfg.eval_seeds,
                                 'boats': [b.name for b in boats],
                                 'verdict': verdict(on_twin or on_reference or results, name),
                                 'verdict_on': judged_on}
        if twin is not None:
            report['closed_loop']['twin'] = {'name': twin.name, 'file': cfg.boat,
                                             'dagger_on_it': cfg.sim_boats == 'twin'}
        progress.line(table)
        v = report['closed_loop']['verdict']
        progress.line(f'verdict on {judged_on}: better than the PID in '
                      f'{v["better"]} of {v["of"]} scenarios; dangerous in: '
                      f'{", ".join(v["dangerous"]) or "none"}; '
                      f'{"fit to ship" if v["ship"] else "not fit to ship: keep the PID"}')
        if any(b.name in HELD_OUT for b in boats):
            rule = ship_rule(results, name)
            report['closed_loop']['ship_rule'] = rule
            progress.line('ship rule on the held-out boats: ' + (
                'met: fit to be the default' if rule['ship']
                else 'not met (' + '; '.join(rule['why_not']) + '): the PID stays the default'))
    report['total_seconds'] = round(time.perf_counter() - t_start, 1)
    paths['json'].write_text(json.dumps(report, indent=1, default=float) + '\n')
    paths['card'].write_text(model_card(report, paths, cfg))
    progress.line(f'wrote {paths["card"]}, {paths["json"]}, {paths["curves"]}'
                  + (f', {paths["traces"]}' if cfg.eval_seeds > 0 else ''))
    return report


def _suggest_identify(recordings: list, cfg: PipelineConfig, progress: Progress) -> None:
    """When the bags could identify the boat and no --boat was given, say so: a verdict on
    the sailor's own boat is worth more than one on the reference yacht."""
    from autopilot_ros.training.identify import identifiable

    why_not = identifiable(recordings)
    if why_not:
        progress.line(f'these recordings cannot identify a boat ({why_not}); the verdict is '
                      "on the simulator's boats only")
    else:
        bags = ' '.join(shlex.quote(str(b)) for b in cfg.bags)
        progress.line('these recordings can identify your boat: `autopilot-train identify '
                      f'--bags {bags} --out my_boat.yaml`, then train with --boat my_boat.yaml '
                      "to have the verdict on your boat's twin (if the bags are all from one "
                      'boat)')


def _dagger(cfg: PipelineConfig, model, train: Dataset, val: Dataset, progress: Progress,
            histories: list[History], group_base: int):
    """Rounds of: the model steers the simulator, the expert labels, retrain on it all.

    The validation set stays the demonstrations' (a fixed yardstick); the model kept is
    the round that steers best on the selection seeds, in closed loop.
    """
    # Every round is judged with its guards, on the demonstrations' envelope, as it would ship.
    envelope_rows = np.concatenate([train.rows[train.ends], val.rows[val.ends]])
    boats = sim_boats(cfg.sim_boats)
    twin = boats_by_names([cfg.boat])[0] if cfg.sim_boats == 'twin' else None
    base_results = evaluate([BASELINE], list(cfg.scenarios), list(SELECTION_SEEDS),
                            boats=boats, workers=cfg.workers)
    base_rms = {(b.name, s): float(np.mean([r.rms_deg for r in base_results
                                            if r.boat == b.name and r.scenario == s]))
                for b in boats for s in cfg.scenarios}
    round_cfg = (replace(cfg.train, epochs=cfg.dagger_epochs,
                         patience=min(cfg.train.patience, cfg.dagger_epochs))
                 if cfg.dagger_epochs > 0 else cfg.train)
    rounds = []
    aggregate = train
    best = (math.inf, None, 0)
    group = group_base + 1000
    rollout = 0
    with tempfile.TemporaryDirectory() as tmp:
        for it in range(cfg.dagger_iterations + 1):
            onnx_path = os.path.join(tmp, f'round{it}.onnx')
            export_onnx(model, onnx_path, rate_hz=cfg.data.rate_hz,
                        check_windows=val.windows(np.arange(min(len(val), 256))),
                        envelope_rows=envelope_rows)
            score = selection_score(onnx_path, base_rms, cfg.scenarios, boats, cfg.workers)
            rounds.append({'round': it, 'train_windows': len(aggregate),
                           'selection_rms_vs_pid': round(score, 4)})
            progress.line(f'DAgger round {it}: closed-loop RMS / PID RMS on selection seeds '
                          f'and {len(boats)} boat(s) {score:.3f} ({len(aggregate):,} training '
                          'windows)')
            if score < best[0]:
                best = (score, {k: v.clone() for k, v in model.state_dict().items()}, it)
            if it == cfg.dagger_iterations:
                break
            jobs = []
            for s in cfg.scenarios:
                for j in range(cfg.dagger_seeds):
                    jobs.append((onnx_path, s, DAGGER_SEED_BASE + 100 * it + j,
                                 dagger_boat(cfg.sim_boats, j, rollout, twin), cfg.data,
                                 group))
                    rollout += 1
                    group += 1
            parts = list(process_map(dagger_windows, jobs, cfg.workers))
            added = Dataset.concat(parts)
            aggregate = Dataset.concat([aggregate, added])
            progress.line(f'DAgger round {it + 1}: {len(added):,} windows labelled by the '
                          f'expert where the model steered')
            model, history = train_model(_round_sample(aggregate, added, cfg), val, round_cfg,
                                         progress, init_state=model.state_dict())
            histories.append(history)
    score, state, it = best
    model.load_state_dict(state)
    progress.line(f'DAgger: keeping round {it} (selection RMS / PID {score:.3f})')
    return model, histories, {'rounds': rounds, 'kept_round': it,
                              'seeds_per_scenario': cfg.dagger_seeds, 'boats': cfg.sim_boats,
                              'selection_boats': [b.name for b in boats]}


def _round_sample(aggregate: Dataset, added: Dataset, cfg: PipelineConfig) -> Dataset:
    """What a DAgger round trains on: everything, or with `dagger_window_cap` every window
    of the round's new rollouts plus a random sample of the older windows up to the cap, so
    a round costs the same however many came before it (the older ones were learned)."""
    cap = cfg.dagger_window_cap
    if cap <= 0 or len(aggregate) <= cap:
        return aggregate
    old = len(aggregate) - len(added)  # concat appends the new windows at the end
    rng = np.random.default_rng([cfg.train.seed, old])
    keep = rng.choice(old, size=max(0, cap - len(added)), replace=False)
    return aggregate.subset(np.sort(np.concatenate([keep, np.arange(old, len(aggregate))])))


def dagger_boat(kind: str, seed_index: int, rollout: int,
                twin: BoatSpec | None = None) -> BoatSpec:
    """The boat of one DAgger rollout: the reference yacht for a scenario's first seed (its
    margin must hold); for the others on 'family' a boat never drawn before, on 'twin' the
    sailor's identified boat."""
    if kind == 'family' and seed_index > 0:
        return draw_boat(DAGGER_BOAT_SEEDS + rollout)
    if kind == 'twin' and seed_index > 0:
        if twin is None:
            raise ValueError("sim boats 'twin' needs the sailor's boat file (--boat)")
        return twin
    return REFERENCE


def _twin_lines(cl: dict) -> list[str]:
    """What the card says about the verdict's boat when the sailor gave theirs."""
    twin = cl.get('twin')
    if not twin:
        return []
    return [f"The verdict below is on your boat's twin, `{twin['name']}` (`{twin['file']}`, "
            'identified from your recordings by `autopilot-train identify`): a simulation '
            'of your boat, as good as its fit report says, not your boat.'
            + (' DAgger rolled out on it too, so it is not an independent judge: confirm on '
               'the water.' if twin['dagger_on_it'] else ''), '']


def _ship_rule_section(rule: dict) -> list[str]:
    """The model card's account of the ship rule: a row per held-out boat and scenario."""
    lines = [
        '## On boats it was never trained on',
        '',
        'The held-out boats (sim/boats.py) take no part in training, DAgger or selection. '
        'The rule for shipping as the default: on every held-out boat and scenario, RMS no '
        f"more than {100 * (SHIP_RMS_TOLERANCE - 1):.0f} % above the PID's and rudder "
        f'travel no more than {100 * (SHIP_TRAVEL_TOLERANCE - 1):.0f} % above it; mean RMS '
        f'over the held-out boats at least {100 * (1 - SHIP_MEAN_RMS_RATIO):.0f} % below the '
        f"PID's; on the reference yacht within {SHIP_REFERENCE_PD_RATIO:g} x the PD pilot's "
        'RMS. The model runs with its guards, as the node runs it; `guards` is the share of '
        'ticks a guard held the helm from it.',
        '',
        '| boat | scenario | model RMS deg | PID RMS deg | model rudder/min | PID rudder/min '
        '| guards | within the rule |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for c in rule['cells']:
        guards = '-' if math.isnan(c['guards']) else f'{100 * c["guards"]:.0f}%'
        lines.append(f'| {c["boat"]} | {c["scenario"]} | {c["model_rms"]:.2f} | '
                     f'{c["pid_rms"]:.2f} | {c["model_rudder"]:.2f} | {c["pid_rudder"]:.2f} | '
                     f'{guards} | {"yes" if c["ok"] else "no"} |')
    lines += [
        '',
        f'Mean RMS over the held-out boats: model {rule["model_mean_rms"]:.2f} deg, PID '
        f'{rule["pid_mean_rms"]:.2f} deg. Reference yacht: model {rule["reference_rms"]:.2f} '
        f'deg, PD {rule["reference_pd_rms"]:.2f} deg. '
        + ('**Ship rule met: fit to be the default.**' if rule['ship'] else
           '**Ship rule not met** (' + '; '.join(rule['why_not']) + '): the PID pilot stays '
           'the default and this model is an option.'),
        '',
    ]
    return lines


def _joined(histories: list[History]) -> History:
    """Epochs of all rounds end to end, for one curve plot."""
    joined = History(pd_rmse=histories[0].pd_rmse)
    n = 0
    for h in histories:
        for e in h.epochs:
            joined.epochs.append(type(e)(**{**asdict(e), 'epoch': n + e.epoch}))
        joined.best_epoch = n + h.best_epoch
        n += len(h.epochs)
    return joined


def model_card(report: dict, paths: dict[str, Path], cfg: PipelineConfig) -> str:
    """A markdown model card: data, training, open loop, closed-loop table, verdict."""
    d = report['data']
    lines = [
        f'# Model card: {paths["onnx"].name}',
        '',
        f'- Feature spec hash `{report["feature_spec_hash"]}`, window 20 x 25, '
        f'{cfg.data.rate_hz:g} Hz, architecture `{cfg.train.arch}`'
        f'{" (residual on the PD suggestion)" if cfg.train.residual else ""}, seed '
        f'{cfg.train.seed}.',
        f'- Data: {report["bags"]["count"]} bag(s), {report["bags"]["messages"]:,} messages, '
        f'{d["hours"]:.2f} h; {d["windows"]:,} windows kept of {d["ticks"]:,} ticks; '
        f'{d["train_windows"]:,} train / {d["val_windows"]:,} validation, split {d["split"]}.',
        f'- Dropped ticks: {", ".join(f"{k} {v}" for k, v in d["dropped"].items()) or "none"}.',
        f'- Label: measured rudder {cfg.data.label_lead_s:g} s after the tick.',
    ]
    if 'dagger' in report:
        dg = report['dagger']
        on = {'family': 'the reference yacht and boats drawn from the family',
              'twin': "the reference yacht and the sailor's boat (twin)"}.get(
                  dg.get('boats'), 'the reference yacht')
        lines.append(f'- DAgger: {len(dg["rounds"]) - 1} round(s) x {dg["seeds_per_scenario"]} '
                     f'seed(s) per scenario on {on}, guards off; kept round '
                     f'{dg["kept_round"]} by closed-loop RMS / PID on '
                     f'{", ".join(dg.get("selection_boats", ["reference"]))} (by round: '
                     + ', '.join(str(r['selection_rms_vs_pid']) for r in dg['rounds']) + ').')
    ol = report['open_loop']
    lines += [
        f'- Wall time: {report["training_seconds"]:.0f} s to read the bags, build the '
        f'dataset and train (with DAgger); {report["total_seconds"]:.0f} s with the closed-loop '
        f'evaluation. Bags read at {report["bags"]["messages_per_s"]:,} msg/s.',
        f'- Open loop on validation: RMSE {ol["val_rmse"]:.4f} rudder units (PD suggestion '
        f'alone {ol["pd_suggestion_rmse"]:.4f}), same sign {100 * ol["val_same_sign"]:.1f}%.',
        f'- ONNX Runtime vs PyTorch: max |diff| {report["onnx_max_abs_diff"]:.2e} on '
        f'{report["onnx_check_windows"]} held-out windows.',
        f'- Plots: `{paths["curves"].name}` (training curves)'
        + (f', `{paths["traces"].name}` (closed-loop traces, seed 0).'
           if 'closed_loop' in report else '.'),
        '',
    ]
    if 'closed_loop' in report:
        cl = report['closed_loop']
        v = cl['verdict']
        lines += [
            f'## Closed loop ({cl["seeds"]} seeds per scenario, seeds 0..{cl["seeds"] - 1})',
            '',
            *_twin_lines(cl),
            'RMS heading error after the first 20 s and 20 s after each target change, on '
            'the true state; max error is the worst seed; rudder travel in full-scale '
            'units per minute.',
            '',
            '```',
            cl['table'],
            '```',
            '',
            '| scenario | model RMS deg | PID RMS deg | model rudder/min | PID rudder/min '
            '| call |',
            '|---|---|---|---|---|---|',
        ]
        for s, row in v['scenarios'].items():
            lines.append(f'| {s} | {row["model_rms"]:.2f} | {row["pid_rms"]:.2f} | '
                         f'{row["model_rudder"]:.2f} | {row["pid_rudder"]:.2f} | {row["call"]} |')
        lines += [
            '',
            'Verdict: better than the PID pilot (lower RMS, no more rudder travel) in '
            f'{v["better"]} of {v["of"]} scenarios; dangerously worse (RMS > {DANGER_RMS}x '
            f"the PID's or worst error > the PID's + {DANGER_MAX_DEG:g} deg) in: "
            f'{", ".join(v["dangerous"]) or "none"}. '
            + ('Fit to ship as the default.' if v['ship'] else 'Not fit to ship: keep the PID.'),
            '',
        ]
        if 'ship_rule' in cl:
            lines += _ship_rule_section(cl['ship_rule'])
    if cfg.command:
        lines += ['## Reproduce', '', '```', cfg.command, '```', '']
    if cfg.card_note:
        lines += [cfg.card_note, '']
    return '\n'.join(lines)
