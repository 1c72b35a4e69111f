"""How well `autopilot-train identify` recovers a known boat: identified vs true, per boat.

    python bench/bench_identify.py --boat small_lively --minutes 30
    python bench/bench_identify.py --boat held_out --minutes 30      # all eight
    python bench/bench_identify.py --boat reference --minutes 10 --bags /tmp/bags

Records the simulator's expert steering by hand (imperfection 0.3, as `autopilot-train
simulate` does) in mixed scenarios, cycling through them until the minutes are full, plus
one held-out recording per scenario; identifies the boat from the first, and prints every
parameter against the truth, then the prediction errors on each held-out recording (the
model against the two naive predictors). With --bags the recordings go through real
rosbag2 bags (BagWriter, then the reader), as on a boat; without, they stay in memory
(the same samples). A summary row per boat ends the run.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
import sys
import time

from autopilot_ros.sim.boats import boats_by_names, design_heel_of
from autopilot_ros.training import identify as idm
from autopilot_ros.training.demos import mixed_recordings

BIG_SEAS = ('downwind_quartering', 'heavy_weather')
FIT_SEED = 7000  # demonstration seeds (1000..) far from evaluation (0..99)
HOLDOUT_SEED = 8000


def bench(boat, minutes: float, bags: Path | None) -> dict:
    t0 = time.perf_counter()
    fit = mixed_recordings(boat, minutes, FIT_SEED, bags=bags, tag='fit')
    checks = mixed_recordings(boat, minutes, HOLDOUT_SEED, every=True, bags=bags, tag='check')
    t1 = time.perf_counter()
    ident = idm.identify(fit, holdout=checks[0], name=boat.name)
    t2 = time.perf_counter()
    print(f'\n=== {boat.name}: {sum(r.duration for r in fit) / 60:.1f} min in {len(fit)} '
          f'recordings (recorded in {t1 - t0:.0f} s, identified in {t2 - t1:.1f} s)')
    print(idm.params_table(ident, boat.params))
    for w in ident.warnings:
        print(f'  not identified: {w}')
    p = ident.extras['yaw_model']
    print(f'\n{"held-out scenario":<22} {"rate 1 s deg/s":>22} {"heading 10 s deg":>24} '
          f'{"heading 30 s deg":>24}')
    print(f'{"":<22} {"model/const/keep":>22} {"model/const/keep":>24} {"model/const/keep":>24}')
    groups = ('all', 'big seas', 'other')
    sums = {(g, h): {k: 0.0 for k in idm.PREDICTORS} for g in groups for h in idm.HORIZONS_S}
    counts = dict.fromkeys(groups, 0)
    for rec in checks:
        ev = idm.evaluate(idm.track_of(rec), p, ident.extras['imu_roll_offset'])
        cells = ['/'.join(f'{math.degrees(ev.rate_rms[k]):.2f}' for k in idm.PREDICTORS)]
        for h in idm.HORIZONS_S:
            cells.append('/'.join(f'{math.degrees(ev.heading_rms[h][k]):.1f}'
                                  for k in idm.PREDICTORS))
            name = str(rec.path).split('/')[-1]
            group = 'big seas' if name.startswith(BIG_SEAS) else 'other'
            for g in ('all', group):
                for k in idm.PREDICTORS:
                    sums[g, h][k] += ev.heading_rms[h][k] ** 2
        for g in ('all', group):
            counts[g] += 1
        print(f'{name[:22]:<22} {cells[0]:>22} {cells[1]:>24} {cells[2]:>24}')
    tp = boat.params
    u = 3.0
    damp = p['yaw_damping_base'] + p['yaw_damping_per_speed'] * u
    true_damp = tp.yaw_damping_base + tp.yaw_damping_per_speed * u
    row = {
        'boat': boat.name,
        'gain': p['rudder_gain'] / tp.rudder_gain - 1.0,
        'damp3': damp / true_damp - 1.0,
        'helm': ident.params['weather_helm'].value - tp.weather_helm,
        'slew': ident.params['rudder_slew'].value / tp.rudder_slew - 1.0,
        'length': ident.params['length'].value / tp.length - 1.0,
        'heel': design_heel_of(ident.spec.params) - design_heel_of(tp),
        'lag': f'{ident.instruments["compass_lag_s"]:.2f}/{boat.sensors.compass_lag_s:.2f}',
        **{f'{g}:{k}@{h:g}': math.sqrt(sums[g, h][k] / max(1, counts[g]))
           for g in groups for h in idm.HORIZONS_S for k in idm.PREDICTORS},
    }
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--boat', nargs='+', default=['reference'],
                    help='boat names: reference, held_out (all eight), a held-out name, '
                         'family_<seed>, a boat file')
    ap.add_argument('--minutes', type=float, default=30.0, help='minutes of recording to fit')
    ap.add_argument('--bags', type=Path, help='write real bags into this (new) folder')
    args = ap.parse_args(argv)
    if args.bags is not None:
        args.bags.mkdir(parents=True, exist_ok=False)
    rows = [bench(boat, args.minutes, args.bags) for boat in boats_by_names(args.boat)]
    print('\nsummary: identified vs true (gain, damping at 3 m/s, slew, length: relative; '
          'weather helm, design heel in deg: difference; compass lag s: identified/true); '
          'heading RMS over all held-out scenarios, deg')
    print(f'{"boat":<20} {"gain":>6} {"damp3":>6} {"helm":>6} {"heel":>6} {"slew":>6} '
          f'{"length":>7} {"lag":>9} '
          f'{"10s model/const/keep":>22} {"30s model/const/keep":>22}')
    for r in rows:
        c10 = '/'.join(f'{math.degrees(r[f"all:{k}@10"]):.1f}' for k in idm.PREDICTORS)
        c30 = '/'.join(f'{math.degrees(r[f"all:{k}@30"]):.1f}' for k in idm.PREDICTORS)
        print(f'{r["boat"]:<20} {r["gain"]:>+6.0%} {r["damp3"]:>+6.0%} {r["helm"]:>+6.2f} '
              f'{r["heel"]:>+6.1f} '
              f'{r["slew"]:>+6.0%} {r["length"]:>+7.0%} {r["lag"]:>9} {c10:>22} {c30:>22}')
    print('\nheading RMS by sea, deg, model/constant turn rate/keeps heading: big seas '
          f'({", ".join(BIG_SEAS)}: the helmsman cancels waves the model cannot see) and the '
          'other scenarios')
    print(f'{"boat":<20} {"big seas 10 s":>16} {"big seas 30 s":>16} {"other 10 s":>16} '
          f'{"other 30 s":>16}')
    for r in rows:
        cells = ['/'.join(f'{math.degrees(r[f"{g}:{k}@{h:g}"]):.1f}' for k in idm.PREDICTORS)
                 for g in ('big seas', 'other') for h in idm.HORIZONS_S]
        print(f'{r["boat"]:<20} ' + ' '.join(f'{c:>16}' for c in cells))
    return 0


if __name__ == '__main__':
    sys.exit(main())
