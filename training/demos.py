"""Demonstrations and DAgger rollouts from the simulator, as recordings the builder reads.

A demonstration is the expert helmsman steering one scenario by hand, recorded like a
sailor would record it: every sensor message, plus autopilot/status carrying the mode and
target with the pilot not engaged (hand steering). `write_demo_bag` writes it to a real
rosbag2 bag; `demo_recording` keeps it in memory. Both hold the same samples.

A DAgger rollout lets a trained model steer (through the node's Pilot, with its safety
layer) and asks the expert at every tick what it would have done there. Plain imitation
only ever sees the states the expert visits; the model's own mistakes lead elsewhere, and
these rollouts label exactly those states.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from autopilot_ros.guards import GuardConfig
from autopilot_ros.inputs import input_of
from autopilot_ros.pilot import Pilot, PilotConfig
from autopilot_ros.sim.boats import REFERENCE, BoatSpec
from autopilot_ros.sim.helmsman import ExpertHelmsman
from autopilot_ros.sim.loop import ClosedLoop, PilotSteer, Steer
from autopilot_ros.sim.scenarios import SCENARIOS, Scenario
from autopilot_ros.sim.simulator import Simulator
from autopilot_ros.status import StatusSample, hand_steering_status
from autopilot_ros.training.bags import LOGICAL_INPUTS, BagWriter, Recording
from autopilot_ros.training.dataset import Dataset, DatasetConfig, build_recording


def _drive(scenario: Scenario, seed: int, rate_hz: float, steer: Steer,
           sink: Callable[[object], None], boat: BoatSpec) -> Simulator:
    """Run one scenario on one boat in the shared closed loop; per tick the samples go to
    the sink, then the hand-steering status with the command steer chose (what a recording
    holds)."""
    def steer_and_report(sim: Simulator, target: float, samples: list, now: float) -> float:
        command = steer(sim, target, samples, now)
        sink(hand_steering_status(now, scenario.mode, target, sim.target_heading(), command))
        return command

    loop = ClosedLoop(scenario, seed, rate_hz=rate_hz, steer=steer_and_report, sink=sink,
                      params=boat.params, sensors=boat.sensors)
    return loop.run().sim


def _expert_steer(seed: int, imperfection: float, mode: str, rate_hz: float) -> Steer:
    expert = ExpertHelmsman(seed, imperfection=imperfection, rate_hz=rate_hz)
    return lambda sim, target, samples, now: expert.command(sim, mode, target)


def demo_recording(scenario: Scenario, seed: int, imperfection: float = 0.3,
                   rate_hz: float = 10.0, boat: BoatSpec = REFERENCE) -> Recording:
    """The expert steering `scenario` on `boat`, in memory (the samples write_demo_bag
    records)."""
    samples, sink = _collector()
    _drive(scenario, seed, rate_hz, _expert_steer(seed, imperfection, scenario.mode, rate_hz),
           sink, boat)
    return _recording(Path(f'sim/{scenario.name}_{seed}_{boat.name}'), 'memory', samples)


def write_demo_bag(path: str | Path, scenario: Scenario, seed: int, storage: str = 'mcap',
                   imperfection: float = 0.3, rate_hz: float = 10.0,
                   boat: BoatSpec = REFERENCE) -> int:
    """Record the expert steering `scenario` on `boat` into a new rosbag2 bag; returns the
    number of messages."""
    count = 0
    with BagWriter(path, storage) as bag:
        def sink(s: object) -> None:
            nonlocal count
            bag.write_sample(s)
            count += 1
        _drive(scenario, seed, rate_hz,
               _expert_steer(seed, imperfection, scenario.mode, rate_hz), sink, boat)
    return count


def mixed_recordings(boat: BoatSpec, minutes: float, first_seed: int, every: bool = False,
                     bags: Path | None = None, tag: str = 'fit') -> list[Recording]:
    """An afternoon of hand steering on `boat`: the expert (imperfection 0.3, as `autopilot-
    train simulate` records) in the scenarios in turn, seeds from `first_seed`, until
    `minutes` are recorded (the last one cut to fit), or one recording of each scenario with
    `every`. With `bags` every recording goes through a real rosbag2 bag written there and
    read back, as on a boat; without, the same samples stay in memory."""
    from dataclasses import replace

    from autopilot_ros.training.bags import read_bag

    names = list(SCENARIOS)
    out: list[Recording] = []
    total, i = 0.0, 0
    while (i < len(names)) if every else total < minutes * 60.0:
        scenario = SCENARIOS[names[i % len(names)]]
        if not every:
            scenario = replace(scenario, duration_s=min(scenario.duration_s,
                                                        minutes * 60.0 - total + 10.0))
        seed = first_seed + i
        if bags is not None:
            path = bags / f'{boat.name}_{tag}_{scenario.name}_{seed}'
            write_demo_bag(path, scenario, seed, boat=boat)
            out.append(read_bag(path))
        else:
            out.append(demo_recording(scenario, seed, boat=boat))
        total += scenario.duration_s
        i += 1
    return out


def write_demo_job(job: tuple) -> int:
    """One bag of `autopilot-train simulate` in a worker process: (path, scenario, seed,
    storage, imperfection, boat) -> messages written. Top level, so spawned workers find it."""
    path, scenario, seed, storage, imperfection, boat = job
    return write_demo_bag(path, scenario, seed, storage, imperfection, boat=boat)


def dagger_rollout(policy, scenario: Scenario, seed: int, label_lead_s: float,
                   rate_hz: float = 10.0, boat: BoatSpec = REFERENCE,
                   ) -> tuple[Recording, dict[int, float]]:
    """The model steers `boat`; returns the recording and {tick: expert label} for
    build_recording.

    The label is where the rudder would be `label_lead_s` after the tick had the expert
    commanded it now: the same quantity a demonstration's label measures. The guards are
    off: a guard taking the helm would hide the very mistakes these rollouts exist to label
    (the PID's states are not the model's).
    """
    samples, sink = _collector()
    config = PilotConfig(rate_hz=rate_hz, guards=GuardConfig(envelope=False, watchdog=False))
    pilot_steer = PilotSteer(Pilot(config, policy), scenario.mode, scenario.target_at(0.0))
    expert = ExpertHelmsman(seed, imperfection=0.0, rate_hz=rate_hz)
    labels: dict[int, float] = {}

    def steer(sim: Simulator, target: float, new: list, now: float) -> float:
        command = pilot_steer(sim, target, new, now)
        wanted = expert.command(sim, scenario.mode, target)
        rudder = sim.state.rudder
        reach = sim.params.rudder_slew * label_lead_s
        labels[round(now * rate_hz)] = rudder + max(-reach, min(reach, wanted - rudder))
        return command

    _drive(scenario, seed, rate_hz, steer, sink, boat)
    return (_recording(Path(f'dagger/{scenario.name}_{seed}_{boat.name}'), 'memory', samples),
            labels)


def dagger_windows(job: tuple[str, str, int, BoatSpec, DatasetConfig, int]) -> Dataset:
    """One DAgger rollout as labelled training windows: the unit of work of a process pool.

    job: (model path, scenario name, seed, boat, dataset config, group number).
    """
    from autopilot_ros.policy import OnnxPolicy

    model_path, scenario, seed, boat, config, group = job
    policy = OnnxPolicy(model_path, rate_hz=config.rate_hz)
    rec, labels = dagger_rollout(policy, SCENARIOS[scenario], seed, config.label_lead_s,
                                 config.rate_hz, boat=boat)
    return build_recording(rec, config, group=group, name=str(rec.path),
                           labels=lambda t: labels.get(round(t * config.rate_hz)))


def _collector() -> tuple[dict[str, list], Callable[[object], None]]:
    """Per-input sample lists, as a Recording holds them, and the sink that fills them."""
    samples: dict[str, list] = {key: [] for key in LOGICAL_INPUTS}

    def sink(s: object) -> None:
        key = 'autopilot/status' if isinstance(s, StatusSample) else input_of(s).name
        samples[key].append(s)
    return samples, sink


def _recording(path: Path, storage: str, samples: dict[str, list]) -> Recording:
    """A Recording whose clock starts at sim time 0, so ticks fall on the sim's ticks."""
    end = max((lst[-1].stamp for lst in samples.values() if lst), default=0.0)
    return Recording(path=path, storage_id=storage, samples=samples, start_time=0.0,
                     end_time=end)
