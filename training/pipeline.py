"""Bags in, a judged model out: dataset, training, DAgger, export, closed-loop verdict.

`run` is what `autopilot-train --bags ... --out models/NAME` does. It writes, next to
each other: NAME.onnx (the model the node loads), NAME.pt (checkpoint, weights only),
NAME_curves.png, NAME_traces.png, NAME.json (every number) and NAME.md (the model card
with the closed-loop table and the verdict against the PID pilot, the node's fallback).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import json
import math
import os
from pathlib import Path
import tempfile
import time

import numpy as np

from autopilot_ros.features import FEATURE_SPEC_HASH
from autopilot_ros.policy import OnnxPolicy
from autopilot_ros.sim.evaluate import RunResult, evaluate, plot_traces, summary_table
from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.training.bags import TopicMap, read_bags
from autopilot_ros.training.dataset import (
    Dataset,
    DatasetConfig,
    build_dataset,
    build_recording,
    split,
)
from autopilot_ros.training.demos import dagger_rollout
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

# Seeds are kept apart: evaluation 0..99, model selection 500.., DAgger 2000.., and the
# demonstrations `autopilot-train simulate` records start at 1000.
SELECTION_SEEDS = (500, 501)
DAGGER_SEED_BASE = 2000

# Verdict against the PID pilot (the node's fallback: what steers if the model does not),
# per scenario (closed loop, mean over seeds). The former PD pilot is a reference column.
BASELINE = 'pid'
BETTER_RMS = 1.0  # model RMS below the PID's ...
BETTER_RUDDER = 1.0  # ... with no more rudder travel than the PID
DANGER_RMS = 1.25  # RMS above 1.25x the PID's, or ...
DANGER_MAX_DEG = 10.0  # ... worst error more than 10 deg beyond the PID's worst: dangerous


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
    eval_seeds: int = 5
    # Closed-loop verdict, DAgger rollouts and DAgger model selection all use these
    # scenarios, on seeds of their own (see above).
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
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


def _runs(results: list[RunResult], scenario: str, pilot: str | None = None) -> list[RunResult]:
    """The runs of one scenario (and one pilot, if given)."""
    return [r for r in results if r.scenario == scenario and pilot in (None, r.pilot)]


def _mean_rms(results: list[RunResult], scenario: str) -> float:
    return float(np.mean([r.rms_deg for r in _runs(results, scenario)]))


def verdict(results: list[RunResult], model: str) -> dict:
    """Per scenario: better / not better / dangerous vs the PID, and whether to ship."""
    rows = {}
    for s in dict.fromkeys(r.scenario for r in results):
        mine, base = _runs(results, s, model), _runs(results, s, BASELINE)
        rms = float(np.mean([r.rms_deg for r in mine]))
        base_rms = float(np.mean([r.rms_deg for r in base]))
        rud = float(np.mean([r.rudder_travel_per_min for r in mine]))
        base_rud = float(np.mean([r.rudder_travel_per_min for r in base]))
        worst = max(r.max_deg for r in mine)
        if rms > DANGER_RMS * base_rms or worst > max(r.max_deg for r in base) + DANGER_MAX_DEG:
            call = 'dangerous'
        elif rms < BETTER_RMS * base_rms and rud <= BETTER_RUDDER * base_rud:
            call = 'better'
        else:
            call = 'not better'
        rows[s] = {'model_rms': rms, 'pid_rms': base_rms, 'model_rudder': rud,
                   'pid_rudder': base_rud, 'call': call}
    better = sum(v['call'] == 'better' for v in rows.values())
    dangerous = [s for s, v in rows.items() if v['call'] == 'dangerous']
    ship = better > len(rows) / 2 and not dangerous
    return {'scenarios': rows, 'better': better, 'of': len(rows), 'dangerous': dangerous,
            'ship': ship}


def selection_score(policy_path: str, base_rms: dict[str, float],
                    scenarios: tuple[str, ...]) -> float:
    """Mean over scenarios of model RMS / PID RMS on the selection seeds (lower is better)."""
    res = evaluate([policy_path], list(scenarios), list(SELECTION_SEEDS))
    return float(np.mean([_mean_rms(res, s) / base_rms[s] for s in scenarios]))


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
        progress.line(f'closed loop: pid, pd, expert and {name} in {len(cfg.scenarios)} '
                      f'scenarios x {cfg.eval_seeds} seeds')
        results = evaluate([BASELINE, 'pd', 'expert', str(paths['onnx'])], list(cfg.scenarios),
                           list(range(cfg.eval_seeds)),
                           lambda d, n, r: progress.bar('closed loop', d, n))
        table = summary_table(results)
        plot_traces(results, str(paths['traces']))
        report['closed_loop'] = {'table': table, 'seeds': cfg.eval_seeds,
                                 'verdict': verdict(results, name)}
        progress.line(table)
        v = report['closed_loop']['verdict']
        progress.line(f'verdict: better than the PID in {v["better"]} of {v["of"]} scenarios; '
                      f'dangerous in: {", ".join(v["dangerous"]) or "none"}; '
                      f'{"fit to ship" if v["ship"] else "not fit to ship: keep the PID"}')
    report['total_seconds'] = round(time.perf_counter() - t_start, 1)
    paths['json'].write_text(json.dumps(report, indent=1, default=float) + '\n')
    paths['card'].write_text(model_card(report, paths, cfg))
    progress.line(f'wrote {paths["card"]}, {paths["json"]}, {paths["curves"]}'
                  + (f', {paths["traces"]}' if cfg.eval_seeds > 0 else ''))
    return report


def _dagger(cfg: PipelineConfig, model, train: Dataset, val: Dataset, progress: Progress,
            histories: list[History], group_base: int):
    """Rounds of: the model steers the simulator, the expert labels, retrain on it all.

    The validation set stays the demonstrations' (a fixed yardstick); the model kept is
    the round that steers best on the selection seeds, in closed loop.
    """
    # Every round is judged with its guards, on the demonstrations' envelope, as it would ship.
    envelope_rows = np.concatenate([train.rows[train.ends], val.rows[val.ends]])
    base_results = evaluate([BASELINE], list(cfg.scenarios), list(SELECTION_SEEDS))
    base_rms = {s: _mean_rms(base_results, s) for s in cfg.scenarios}
    rounds = []
    aggregate = train
    best = (math.inf, None, 0)
    group = group_base + 1000
    with tempfile.TemporaryDirectory() as tmp:
        for it in range(cfg.dagger_iterations + 1):
            onnx_path = os.path.join(tmp, f'round{it}.onnx')
            export_onnx(model, onnx_path, rate_hz=cfg.data.rate_hz,
                        check_windows=val.windows(np.arange(min(len(val), 256))),
                        envelope_rows=envelope_rows)
            score = selection_score(onnx_path, base_rms, cfg.scenarios)
            rounds.append({'round': it, 'train_windows': len(aggregate),
                           'selection_rms_vs_pid': round(score, 4)})
            progress.line(f'DAgger round {it}: closed-loop RMS / PID RMS on selection seeds '
                          f'{score:.3f} ({len(aggregate):,} training windows)')
            if score < best[0]:
                best = (score, {k: v.clone() for k, v in model.state_dict().items()}, it)
            if it == cfg.dagger_iterations:
                break
            parts = []
            policy = OnnxPolicy(onnx_path, rate_hz=cfg.data.rate_hz)
            for s in cfg.scenarios:
                for j in range(cfg.dagger_seeds):
                    seed = DAGGER_SEED_BASE + 100 * it + j
                    rec, labels = dagger_rollout(policy, SCENARIOS[s], seed,
                                                 cfg.data.label_lead_s, cfg.data.rate_hz)
                    parts.append(build_recording(
                        rec, cfg.data, group=group, name=str(rec.path),
                        labels=lambda t, lb=labels: lb.get(round(t * cfg.data.rate_hz))))
                    group += 1
            added = Dataset.concat(parts)
            aggregate = Dataset.concat([aggregate, added])
            progress.line(f'DAgger round {it + 1}: {len(added):,} windows labelled by the '
                          f'expert where the model steered')
            model, history = train_model(aggregate, val, cfg.train, progress,
                                         init_state=model.state_dict())
            histories.append(history)
    score, state, it = best
    model.load_state_dict(state)
    progress.line(f'DAgger: keeping round {it} (selection RMS / PID {score:.3f})')
    return model, histories, {'rounds': rounds, 'kept_round': it,
                              'seeds_per_scenario': cfg.dagger_seeds}


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
        lines.append(f'- DAgger: {len(dg["rounds"]) - 1} round(s) x {dg["seeds_per_scenario"]} '
                     f'seed(s) per scenario; kept round {dg["kept_round"]} (selection '
                     'RMS / PID by round: '
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
    if cfg.command:
        lines += ['## Reproduce', '', '```', cfg.command, '```', '']
    if cfg.card_note:
        lines += [cfg.card_note, '']
    return '\n'.join(lines)
