"""docs/held_out_boats.md from an `autopilot-eval --json` run: a model against the PID, the
former PD pilot and the expert on the reference yacht and the held-out boats, judged by the
ship rule (training/verdict.py).

    autopilot-eval --pilots pid pd resource/autopilot.onnx expert \\
        --boats reference held_out --seeds 5 --json out/held_out.json
    python tools/held_out_report.py out/held_out.json --model autopilot.onnx \\
        --out docs/held_out_boats.md
"""

import argparse
import datetime
import math
import sys

import numpy as np

from autopilot_ros.sim.boats import HELD_OUT, REFERENCE
from autopilot_ros.sim.evaluate import RunResult, read_json
from autopilot_ros.training.verdict import (
    SHIP_MEAN_RMS_RATIO,
    SHIP_REFERENCE_PD_RATIO,
    SHIP_RMS_TOLERANCE,
    SHIP_TRAVEL_TOLERANCE,
    ship_rule,
)

PILOTS = ('pid', 'pd', 'expert')


def _mean(rs: list[RunResult], key: str) -> float:
    values = [getattr(r, key) for r in rs]
    return float(np.nanmean(values)) if values and not all(map(math.isnan, values)) \
        else math.nan


def report(results: list[RunResult], model: str, command: str, note: str = '') -> str:
    boats = [b for b in dict.fromkeys(r.boat for r in results)]
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    seeds = len({r.seed for r in results})
    rule = ship_rule(results, model)
    cells = {(c['boat'], c['scenario']): c for c in rule['cells']}

    def runs(boat: str, pilot: str, scenario: str | None = None) -> list[RunResult]:
        return [r for r in results if r.boat == boat and r.pilot == pilot
                and scenario in (None, r.scenario)]

    lines = [
        f'# {model} on the held-out boats',
        '',
        f'Measured {datetime.date.today()} with the PID pilot (defaults), the former PD pilot, '
        f'the model (with its guards, as the node runs it) and the expert, on the reference '
        f'yacht and the held-out boats (`autopilot_ros/sim/boats.py`: no training data, DAgger '
        f'round or model selection used them), {len(scenarios)} scenarios, {seeds} seeds '
        'each; mean over seeds, worst error the worst seed, rudder travel in full-scale units '
        'per minute. Reproduce:',
        '',
        '```bash',
        command,
        '```',
        '',
        '| boat | model mean RMS | PID mean RMS | PD mean RMS | expert mean RMS | cells model '
        'RMS > PID +5% | cells model travel > PID +10% | guards held the helm |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for b in boats:
        rms_bad = trav_bad = 0
        for s in scenarios:
            m, p = runs(b, model, s), runs(b, 'pid', s)
            if m and p:
                rms_bad += _mean(m, 'rms_deg') > SHIP_RMS_TOLERANCE * _mean(p, 'rms_deg')
                trav_bad += _mean(m, 'rudder_travel_per_min') > \
                    SHIP_TRAVEL_TOLERANCE * _mean(p, 'rudder_travel_per_min')
        guards = _mean(runs(b, model), 'guard_frac')
        lines.append(
            f'| {b} | ' + ' | '.join(f'{_mean(runs(b, p), "rms_deg"):.2f}'
                                     for p in (model, *PILOTS))
            + f' | {rms_bad}/{len(scenarios)} | {trav_bad}/{len(scenarios)} | '
            + ('-' if math.isnan(guards) else f'{100 * guards:.1f}%') + ' |')
    held = [b for b in boats if b in HELD_OUT]
    guard_share = _mean([r for r in results if r.boat in HELD_OUT and r.pilot == model],
                        'guard_frac')
    lines += [
        '',
        f'Over the {len(held)} held-out boats: mean RMS model {rule["model_mean_rms"]:.2f} deg, '
        f'PID {rule["pid_mean_rms"]:.2f} deg (model / PID '
        f'{rule["model_mean_rms"] / rule["pid_mean_rms"]:.3f}); a guard held the helm from the '
        f'model on {100 * guard_share:.1f} % of the ticks there. On the reference yacht: model '
        f'{rule["reference_rms"]:.2f} deg, PD {rule["reference_pd_rms"]:.2f} deg.',
        '',
        f'**The ship rule** (training/verdict.py): on every held-out boat and scenario, RMS no '
        f"more than {100 * (SHIP_RMS_TOLERANCE - 1):.0f} % above the PID's and rudder travel no "
        f'more than {100 * (SHIP_TRAVEL_TOLERANCE - 1):.0f} % above it; mean RMS over the '
        f"held-out boats at least {100 * (1 - SHIP_MEAN_RMS_RATIO):.0f} % below the PID's; on "
        f"the reference yacht within {SHIP_REFERENCE_PD_RATIO:g} x the PD pilot's RMS. "
        + ('**Met.**' if rule['ship'] else '**Not met**: ' + '; '.join(rule['why_not'])
           + '. The PID pilot stays the default.'),
        '',
        *([note, ''] if note else []),
        'Per boat and scenario (RMS deg / worst deg / rudder travel per min):',
        '',
        '| boat | scenario | ' + ' | '.join(f'{p} RMS / worst / travel'
                                              for p in ('pid', 'pd', model, 'expert'))
        + ' | model ticks a guard held | within the rule |',
        '|---|---|' + '---|' * 6,
    ]
    for b in boats:
        for s in scenarios:
            cols = []
            for p in ('pid', 'pd', model, 'expert'):
                rs = runs(b, p, s)
                cols.append('-' if not rs else
                            f'{_mean(rs, "rms_deg"):.2f} / {max(r.max_deg for r in rs):.1f} / '
                            f'{_mean(rs, "rudder_travel_per_min"):.1f}')
            g = _mean(runs(b, model, s), 'guard_frac')
            ok = cells.get((b, s))
            lines.append(f'| {b} | {s} | ' + ' | '.join(cols) + ' | '
                         + ('-' if math.isnan(g) else f'{100 * g:.0f}%') + ' | '
                         + ('-' if ok is None else 'yes' if ok['ok'] else 'no') + ' |')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', help='the JSON of autopilot-eval --json')
    parser.add_argument('--model', required=True, help="the model's pilot name (file name)")
    parser.add_argument('--out', required=True, help='the Markdown file to write')
    parser.add_argument('--command', default='', help='how the runs were made')
    parser.add_argument('--note', default='', help='a paragraph before the per-cell table')
    args = parser.parse_args(argv)
    results = read_json(args.runs)
    if not any(r.pilot == args.model for r in results):
        parser.error(f"no runs of '{args.model}' in {args.runs}")
    if REFERENCE.name not in {r.boat for r in results}:
        print('held_out_report: no reference-yacht runs: its margin over PD is not judged',
              file=sys.stderr)
    with open(args.out, 'w') as f:
        f.write(report(results, args.model, args.command, args.note))
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
