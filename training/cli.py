"""autopilot-train: rosbag2 recordings of someone steering -> a new ONNX model, judged.

    autopilot-train --bags ~/bags/2026-06-* --out models/summer
    autopilot-train simulate --out data/demos            # no boat? record the expert
    autopilot-train --bags data/demos --out models/sim --dagger 3
    autopilot-train identify --bags ~/bags/2026-06-* --out boats/mine.yaml   # your boat's twin
    autopilot-train tune-pid --boat boat.yaml --out pid.yaml   # the PID's gains for a boat

Every problem with the input (a missing topic, a bag cut short, a bad option) is one
message on stderr and exit status 2; nothing is written over on failure.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
import shlex
import sys
from typing import TYPE_CHECKING

from autopilot_ros.conventions import STEERING_MODES
from autopilot_ros.sim.boats import BOAT_SETS, DEMO_BOAT_SEEDS, SELECTION_BOAT_SEEDS
from autopilot_ros.sim.scenarios import SCENARIOS
from autopilot_ros.training.bags import STORAGE_IDS, BagError, TopicMap
from autopilot_ros.training.dataset import DatasetConfig, DatasetError
from autopilot_ros.training.model import ARCHITECTURES
from autopilot_ros.training.train import Progress, TrainConfig

if TYPE_CHECKING:  # the pipeline imports torch: load it only when training runs
    from autopilot_ros.training.pipeline import PipelineConfig

# Demonstrations start at this seed, so they never replay an evaluation run (seeds 0..99).
DEMO_SEED_BASE = 1000


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='autopilot-train', description=__doc__.split('\n')[0],
        epilog="'autopilot-train simulate --help' records demonstration bags in the simulator; "
               "'autopilot-train identify --help' fits the simulator to your boat; "
               "'autopilot-train tune-pid --help' tunes the PID pilot on a boat.")
    p.add_argument('--bags', nargs='+', required=True, metavar='PATH',
                   help='bag folders, .db3/.mcap files, or folders holding bags')
    p.add_argument('--out', required=True, metavar='models/NAME',
                   help='writes NAME.onnx, NAME.pt, NAME.md, NAME.json and PNG plots')
    g = p.add_argument_group('recordings')
    g.add_argument('--topic', action='append', default=[], metavar='INPUT=TOPIC',
                   help='map an input to your topic name, e.g. heading=/boat/compass '
                        '(inputs: imu heading wind speed rudder_angle status)')
    g.add_argument('--skip-bad', action='store_true', help='leave out unreadable bags')
    g.add_argument('--mode', choices=STEERING_MODES,
                   help='for bags without autopilot/status: the mode steered to ...')
    g.add_argument('--target-deg', type=float,
                   help='... and its target in degrees (compass 0..360, wind angle -180..180)')
    g.add_argument('--label-lead', type=float, default=DatasetConfig.label_lead_s,
                   metavar='S', help='label = rudder angle this many seconds after the tick')
    g = p.add_argument_group('training')
    g.add_argument('--arch', choices=sorted(ARCHITECTURES), default='seed')
    g.add_argument('--no-residual', action='store_true',
                   help='learn the rudder outright instead of a correction to the PD suggestion')
    g.add_argument('--epochs', type=int, default=TrainConfig.epochs)
    g.add_argument('--patience', type=int, default=TrainConfig.patience)
    g.add_argument('--batch-size', type=int, default=TrainConfig.batch_size)
    g.add_argument('--lr', type=float, default=TrainConfig.lr)
    g.add_argument('--seed', type=int, default=0)
    g.add_argument('--dagger', type=int, default=0, metavar='ROUNDS',
                   help='DAgger rounds in the simulator (for simulator demonstrations)')
    g.add_argument('--dagger-seeds', type=int, default=3, metavar='N',
                   help='rollouts per scenario and DAgger round')
    g.add_argument('--dagger-epochs', type=int, default=0, metavar='N',
                   help='epochs of fine-tuning per DAgger round (default: --epochs)')
    g.add_argument('--dagger-window-cap', type=int, default=0, metavar='N',
                   help="windows a DAgger round trains on at most: the round's new ones plus a "
                        'sample of the older (default 0: all of them)')
    g.add_argument('--sim-boats', choices=(*BOAT_SETS, 'twin'), default='reference',
                   help="where DAgger rolls out and models are selected: the simulator's "
                        "yacht, or also boats drawn from the family (never the held-out ones); "
                        "'twin': DAgger also rolls out on your boat (--boat)")
    g.add_argument('--boat', default='', metavar='BOAT.yaml',
                   help="your boat's twin (autopilot-train identify writes it): the verdict "
                        'is given on it as well as on the reference yacht')
    g.add_argument('--no-mirror', action='store_true',
                   help='do not mirror half of every batch port <-> starboard')
    g.add_argument('--smooth-weight', type=float, default=TrainConfig.smooth_weight,
                   metavar='W', help='weight of the rudder travel and reversal penalty')
    p.add_argument('--card-note', default='', metavar='TEXT',
                   help='a paragraph for the model card (e.g. where the bags came from)')
    g = p.add_argument_group('closed-loop evaluation')
    g.add_argument('--eval-seeds', type=int, default=5, metavar='N',
                   help='simulator seeds per scenario (0: skip the closed-loop verdict)')
    g.add_argument('--scenarios', nargs='+', choices=list(SCENARIOS), default=list(SCENARIOS),
                   help='simulator scenarios for the verdict and for DAgger rollouts')
    g.add_argument('--verdict-boats', nargs='+', default=['reference'], metavar='BOAT',
                   help="boats of the verdict: 'reference', 'held_out' (then the ship rule "
                        'decides), a held-out name or family_<seed>')
    g.add_argument('--workers', type=int, default=None, metavar='N',
                   help='processes for the closed-loop runs (default: the cores, at most 4)')
    return p


def _simulate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='autopilot-train simulate',
        description="Record the simulator's expert helmsman steering by hand into rosbag2 "
                    'bags (sensors + autopilot/status with the mode and target), one per '
                    'scenario and seed.')
    p.add_argument('--out', required=True, metavar='DIR', help='folder for the bags (new)')
    p.add_argument('--scenarios', nargs='+', choices=list(SCENARIOS), default=list(SCENARIOS))
    p.add_argument('--seeds', type=int, default=6, help='bags per scenario')
    p.add_argument('--first-seed', type=int, default=DEMO_SEED_BASE)
    p.add_argument('--storage', choices=(*STORAGE_IDS, 'both'), default='mcap',
                   help="'both' alternates sqlite3 and mcap")
    p.add_argument('--imperfection', type=float, default=0.3,
                   help='how human the helmsman is, 0 (exact) .. 1 (delays, lapses, noise)')
    p.add_argument('--duration', type=float, default=None, metavar='S',
                   help='cut every scenario to this many seconds')
    p.add_argument('--boats', choices=BOAT_SETS, default='reference',
                   help="'reference': the simulator's yacht; 'family': every bag on a boat of "
                        'its own, drawn from the family (sim/boats.py), never a held-out one')
    p.add_argument('--workers', type=int, default=None, metavar='N',
                   help='processes recording bags (default: the cores, at most 4); every bag '
                        'is seeded, so the bags are the same whatever the number')
    return p


def simulate(argv: list[str]) -> int:
    args = _simulate_parser().parse_args(argv)
    if not 0.0 <= args.imperfection <= 1.0:
        return _fail(f'--imperfection {args.imperfection} not in [0, 1]')
    if args.seeds < 1 or args.first_seed < 0:
        return _fail('--seeds must be >= 1 and --first-seed >= 0')
    limit = (SELECTION_BOAT_SEEDS - DEMO_BOAT_SEEDS) // len(SCENARIOS)
    if args.boats == 'family' and args.first_seed + args.seeds > limit:
        return _fail(f'with --boats family the seeds must stay below {limit:,}: beyond, the '
                     'boats drawn would be the ones models are selected on')
    if args.duration is not None and not args.duration >= 10.0:
        return _fail('--duration must be at least 10 s')
    if args.workers is not None and args.workers < 1:
        return _fail('--workers must be >= 1')
    out = Path(args.out)
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            return _fail(f'{out} exists and is not an empty folder; choose a new folder')
        out.mkdir(parents=True, exist_ok=True)
        return _record(args, out)
    except (BagError, OSError) as exc:
        return _fail(str(exc))


def _record(args: argparse.Namespace, out: Path) -> int:
    from dataclasses import replace

    from autopilot_ros.sim.boats import REFERENCE, draw_boat
    from autopilot_ros.sim.parallel import default_workers, process_map
    from autopilot_ros.training.demos import write_demo_job

    progress = Progress()
    jobs = []
    for s in args.scenarios:
        scenario = SCENARIOS[s]
        if args.duration is not None:
            scenario = replace(scenario, duration_s=min(scenario.duration_s, args.duration))
        for k in range(args.seeds):
            seed = args.first_seed + k
            storage = args.storage if args.storage != 'both' else STORAGE_IDS[len(jobs) % 2]
            # Boat seeds follow the demonstration seeds, so another --first-seed draws
            # other boats, and a scenario's bags are each on a boat of their own.
            boat = (draw_boat(DEMO_BOAT_SEEDS + seed * len(SCENARIOS)
                              + list(SCENARIOS).index(s))
                    if args.boats == 'family' else REFERENCE)
            path = out / (f'{s}_{seed}' if boat is REFERENCE else f'{s}_{seed}_{boat.name}')
            jobs.append((path, scenario, seed, storage, args.imperfection, boat))
    counts = process_map(write_demo_job, jobs, args.workers or default_workers())
    for n, (job, count) in enumerate(zip(jobs, counts, strict=True), 1):
        path, scenario, _, storage, _, boat = job
        progress.line(f'[{n}/{len(jobs)}] {path} ({storage}): {count:,} messages, '
                      f'{scenario.duration_s:.0f} s of {scenario.name} on {boat.name}')
    progress.line(f'recorded {len(jobs)} bag(s) in {out}; train with: autopilot-train --bags '
                  f'{out} --out models/NAME')
    return 0


def _identify_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='autopilot-train identify',
        description="Identify your boat from its recordings: fit the simulator's boat model "
                    '(rudder, yaw damping, weather helm, heel, speed, rudder slew) and write '
                    'a boat file every tool sails (--boat FILE), with a fit report beside it.')
    p.add_argument('--bags', nargs='+', required=True, metavar='PATH',
                   help='bag folders, .db3/.mcap files, or folders holding bags')
    p.add_argument('--out', required=True, metavar='boat.yaml',
                   help='the boat file; NAME_fit.md and NAME_fit.png are written beside it')
    p.add_argument('--holdout', metavar='BAG',
                   help='check the fit on this recording (default: the last bag when there '
                        'are two or more, else the last 25 %% of the one)')
    p.add_argument('--length', type=float, metavar='M',
                   help='waterline length in metres (default: from the identified hull speed)')
    p.add_argument('--topic', action='append', default=[], metavar='INPUT=TOPIC',
                   help='map an input to your topic name, e.g. rudder_angle=/boat/rudder')
    p.add_argument('--skip-bad', action='store_true', help='leave out unreadable bags')
    return p


def identify(argv: list[str]) -> int:
    """autopilot-train identify: bags in, a boat file and its fit report out."""
    args = _identify_parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() not in ('.yaml', '.yml'):
        return _fail(f'--out {out}: a boat file ends in .yaml')
    if args.length is not None and not 1.0 <= args.length <= 60.0:
        return _fail(f'--length {args.length:g} m is not a waterline length (1-60 m)')
    from autopilot_ros.training.identify import IdentifyError, run_identify

    progress = Progress()
    try:
        topic_map = TopicMap.from_strings(args.topic)
        return run_identify(args.bags, out, holdout=args.holdout, length=args.length,
                            topic_map=topic_map, skip_bad=args.skip_bad, say=progress.line)
    except (BagError, IdentifyError, OSError) as exc:
        return _fail(str(exc))
    except ValueError as exc:  # e.g. BoatFileError: a fit no boat file may hold
        return _fail(f'the identified boat cannot be written: {exc}')


# -- tune-pid: the PID's gains for a boat (training/tune_pid.py) ---------------------------
def _tune_pid_parser() -> argparse.ArgumentParser:
    from autopilot_ros.sim.parallel import default_workers
    from autopilot_ros.training import tune_pid as tp

    p = argparse.ArgumentParser(
        prog='autopilot-train tune-pid',
        description='Tune the PID pilot (kp, ki, kd, integral_limit) on a boat in closed loop '
                    'in the simulator, across the standard scenarios; prints the gains as a '
                    'params file the node accepts and the closed loop before and after.')
    p.add_argument('--boat', required=True, metavar='BOAT',
                   help="a boat file (boat.yaml, e.g. from 'autopilot-train identify'), "
                        "'reference', a held-out boat's name or family_<seed>")
    p.add_argument('--trials', type=int, default=tp.DEFAULT_TRIALS, metavar='N',
                   help='candidate gain sets to sail, at most (each: every scenario x seed)')
    p.add_argument('--seeds', type=int, default=tp.DEFAULT_SEEDS, metavar='N',
                   help=f'simulator seeds per scenario and candidate (from {tp.TUNE_SEED_BASE})')
    p.add_argument('--seed', type=int, default=0, help='seed of the optimiser')
    p.add_argument('--check-seeds', type=int, default=3, metavar='N',
                   help='evaluation seeds 0..N-1, never tuned on, for the before/after table '
                        '(0: the tuning seeds)')
    p.add_argument('--workers', type=int, default=default_workers(), metavar='N',
                   help='processes running the closed loop (default: the cores, at most 4)')
    p.add_argument('--scenarios', nargs='+', choices=list(SCENARIOS), default=list(SCENARIOS))
    p.add_argument('--duration', type=float, default=None, metavar='S',
                   help='cut every scenario to this many seconds (quick looks; at least 30)')
    p.add_argument('--start', metavar='PARAMS',
                   help="start from the pid.* gains of this params file (the boat's own "
                        "autopilot.yaml, an earlier tune-pid output); default: the node's")
    p.add_argument('--out', metavar='pid.yaml', help='write the params file here')
    p.add_argument('--plot', default='out/tune_pid.png', metavar='PNG',
                   help='search and before/after per scenario')
    p.add_argument('--no-margin', action='store_true',
                   help='tune on the boat alone; by default every candidate also sails it '
                        '0.15 s later and twice as noisy, with the rudder 20 %% weaker and 25 %% '
                        'stronger, what an identified twin may hide (tune_pid.margin_boats)')
    return p


def tune_pid(argv: list[str]) -> int:
    from dataclasses import replace
    import os

    from autopilot_ros.sim.boats import boat_by_name
    from autopilot_ros.training import tune_pid as tp

    args = _tune_pid_parser().parse_args(argv)
    if args.trials < 1 or args.seeds < 1 or args.workers < 1 or args.check_seeds < 0:
        return _fail('--trials, --seeds and --workers must be >= 1, --check-seeds >= 0')
    if args.duration is not None and not args.duration >= 30.0:
        return _fail('--duration must be at least 30 s (the first 20 s are not scored)')
    if args.out and os.path.isdir(args.out):
        return _fail(f'--out {args.out} is a folder; give the file to write (pid.yaml)')
    if args.out:  # before minutes of sailing, not after
        folder = os.path.dirname(os.path.abspath(args.out))
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            return _fail(f'cannot write --out {args.out}: {folder} is not a writable folder')
    try:
        boat = boat_by_name(args.boat)  # an unknown name, or a boat file missing or wrong
        start = tp.load_start(args.start) if args.start else None
    except ValueError as exc:
        return _fail(str(exc))
    scenarios = [SCENARIOS[s] if args.duration is None else
                 replace(SCENARIOS[s], duration_s=min(SCENARIOS[s].duration_s, args.duration))
                 for s in args.scenarios]
    progress = Progress()

    def report(done: int, total: int, note: str) -> None:
        if note:
            progress.line(note)
        progress.bar('tune-pid', done, total)
    try:
        result = tp.tune_pid(
            boat, args.trials, list(range(tp.TUNE_SEED_BASE, tp.TUNE_SEED_BASE + args.seeds)),
            args.workers, report, start=start, scenarios=scenarios,
            check_seeds=list(range(args.check_seeds)), optimiser_seed=args.seed,
            margin=not args.no_margin)
    except KeyboardInterrupt:
        progress.line('')
        return _fail('interrupted: nothing written')
    command = 'autopilot-train tune-pid ' + shlex.join(argv)
    print(tp.comparison_table(result))
    print(f'\n{result.evaluations} candidates, {result.runs} closed-loop runs in '
          f'{result.seconds / 60.0:.1f} min\n')
    print(tp.params_yaml(result, command), end='')
    print('\n# on a running pilot:\n' + '\n'.join(tp.param_set_commands(result.gains)))
    try:
        if args.out:
            print(f'\nwritten: {tp.write_params(result, args.out, command)}')
        print(f'plot: {tp.plot_result(result, args.plot)}')
    except OSError as exc:
        return _fail(str(exc))
    return 0


def train(argv: list[str]) -> int:
    from autopilot_ros.policy import ModelError
    from autopilot_ros.training.export import ExportError
    from autopilot_ros.training.pipeline import run

    parser = _train_parser()
    args = parser.parse_args(argv)
    if (args.mode is None) != (args.target_deg is None):
        return _fail('--mode and --target-deg go together')
    target = None
    if args.target_deg is not None:
        target = math.radians(args.target_deg % 360.0 if args.mode == 'compass'
                              else args.target_deg)
    try:  # the options: a bad value is the user's, one message
        cfg = _pipeline_config(args, target, argv)
    except ValueError as exc:
        return _fail(str(exc))
    try:  # the data and the model: what the recordings or the files do wrong is one message
        run(cfg)
    except (BagError, DatasetError, ModelError, ExportError, OSError) as exc:
        return _fail(str(exc))
    return 0


def _pipeline_config(args: argparse.Namespace, target: float | None,
                     argv: list[str]) -> PipelineConfig:
    """The pipeline's configuration from the options; ValueError names a bad one."""
    from autopilot_ros.training.pipeline import PipelineConfig

    topic_map = TopicMap.from_strings(args.topic)
    data = DatasetConfig(label_lead_s=args.label_lead, fixed_mode=args.mode,
                         fixed_target=target)
    data.validate()
    tcfg = TrainConfig(arch=args.arch, residual=not args.no_residual, epochs=args.epochs,
                       patience=args.patience, batch_size=args.batch_size, lr=args.lr,
                       seed=args.seed, mirror=not args.no_mirror,
                       smooth_weight=args.smooth_weight)
    tcfg.validate()
    if args.dagger < 0 or args.dagger_seeds < 1 or args.eval_seeds < 0 or \
            args.dagger_epochs < 0 or args.dagger_window_cap < 0:
        raise ValueError('--dagger, --dagger-epochs, --dagger-window-cap and --eval-seeds '
                         'must be >= 0, --dagger-seeds >= 1')
    if args.workers is not None and args.workers < 1:
        raise ValueError('--workers must be >= 1')
    from autopilot_ros.sim.boats import boats_by_names
    boats_by_names(args.verdict_boats)  # ValueError names an unknown boat
    if args.boat:
        boats_by_names([args.boat])  # BoatFileError (a ValueError) says what is wrong
    elif args.sim_boats == 'twin':
        raise ValueError("--sim-boats twin needs your boat's file: --boat BOAT.yaml")
    return PipelineConfig(
        bags=args.bags, out=args.out, topic_map=topic_map, skip_bad=args.skip_bad,
        data=data, train=tcfg, dagger_iterations=args.dagger,
        dagger_seeds=args.dagger_seeds, dagger_epochs=args.dagger_epochs,
        dagger_window_cap=args.dagger_window_cap,
        eval_seeds=args.eval_seeds, scenarios=tuple(args.scenarios), sim_boats=args.sim_boats,
        verdict_boats=tuple(args.verdict_boats), boat=args.boat,
        **({'workers': args.workers} if args.workers else {}),
        command='autopilot-train ' + shlex.join(_without(argv, '--card-note')),
        card_note=args.card_note)


def _without(argv: list[str], option: str) -> list[str]:
    """argv minus one option and its value (either spelling), for the model card."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + '='):
            out.append(arg)
    return out


def _fail(message: str) -> int:
    print(f'autopilot-train: {message}', file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'simulate':
        return simulate(argv[1:])
    if argv and argv[0] == 'identify':
        return identify(argv[1:])
    if argv and argv[0] == 'tune-pid':
        return tune_pid(argv[1:])
    if argv and argv[0] == 'train':
        argv = argv[1:]
    return train(argv)


if __name__ == '__main__':
    sys.exit(main())
