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

from autopilot_ros.features import STEERING_MODES
from autopilot_ros.pilot import POLICY_STANDBY, Pilot, PilotConfig
from autopilot_ros.samples import SAMPLE_MESSAGES
from autopilot_ros.sim.helmsman import ExpertHelmsman
from autopilot_ros.sim.scenarios import Scenario
from autopilot_ros.sim.simulator import Simulator
from autopilot_ros.training.bags import LOGICAL_INPUTS, BagWriter, Recording, StatusSample


def _drive(scenario: Scenario, seed: int, rate_hz: float,
           steer: Callable[[Simulator, float, list, float], float],
           sink: Callable[[object], None]) -> Simulator:
    """Run one scenario: per tick, samples to sink, then status, then steer(...) rules."""
    if scenario.mode not in STEERING_MODES:
        raise ValueError(f'scenario {scenario.name} has no steering mode')
    sim = Simulator(scenario, seed)
    dt = 1.0 / rate_hz
    n = int(round(scenario.duration_s * rate_hz))
    for _ in range(n):
        sim.step(dt)
        now = sim.time
        samples = sim.poll_samples()
        for s in samples:
            sink(s)
        target = sim.target_at(now)
        command = steer(sim, target, samples, now)
        sink(StatusSample(now, scenario.mode, False, target, sim.target_heading(), command,
                          POLICY_STANDBY))
        sim.set_rudder_command(command)
    return sim


def _expert_steer(seed: int, imperfection: float, mode: str, rate_hz: float):
    expert = ExpertHelmsman(seed, imperfection=imperfection, rate_hz=rate_hz)
    return lambda sim, target, samples, now: expert.command(sim, mode, target)


def demo_recording(scenario: Scenario, seed: int, imperfection: float = 0.3,
                   rate_hz: float = 10.0) -> Recording:
    """The expert steering `scenario`, in memory (same samples as write_demo_bag)."""
    samples, sink = _collector()
    _drive(scenario, seed, rate_hz, _expert_steer(seed, imperfection, scenario.mode, rate_hz),
           sink)
    return _recording(Path(f'sim/{scenario.name}_{seed}'), 'memory', samples)


def write_demo_bag(path: str | Path, scenario: Scenario, seed: int, storage: str = 'mcap',
                   imperfection: float = 0.3, rate_hz: float = 10.0) -> int:
    """Record the expert steering `scenario` into a new rosbag2 bag; returns messages."""
    count = 0
    with BagWriter(path, storage) as bag:
        def sink(s: object) -> None:
            nonlocal count
            bag.write_sample(s)
            count += 1
        _drive(scenario, seed, rate_hz,
               _expert_steer(seed, imperfection, scenario.mode, rate_hz), sink)
    return count


def dagger_rollout(policy, scenario: Scenario, seed: int, label_lead_s: float,
                   rate_hz: float = 10.0) -> tuple[Recording, dict[int, float]]:
    """The model steers; returns the recording and {tick: expert label} for build_recording.

    The label is where the rudder would be `label_lead_s` after the tick had the expert
    commanded it now: the same quantity a demonstration's label measures.
    """
    samples, sink = _collector()
    pilot = Pilot(PilotConfig(rate_hz=rate_hz), policy)
    pilot.set_mode(scenario.mode, scenario.target_at(0.0))
    expert = ExpertHelmsman(seed, imperfection=0.0, rate_hz=rate_hz)
    labels: dict[int, float] = {}

    def steer(sim: Simulator, target: float, new: list, now: float) -> float:
        if target != pilot.target:
            pilot.set_mode(scenario.mode, target)
        for s in new:
            pilot.update(s)
        command = pilot.step(now).command
        wanted = expert.command(sim, scenario.mode, target)
        rudder = sim.state.rudder
        reach = sim.params.rudder_slew * label_lead_s
        labels[round(now * rate_hz)] = rudder + max(-reach, min(reach, wanted - rudder))
        return command

    _drive(scenario, seed, rate_hz, steer, sink)
    return _recording(Path(f'dagger/{scenario.name}_{seed}'), 'memory', samples), labels


def _collector() -> tuple[dict[str, list], Callable[[object], None]]:
    """Per-input sample lists, as a Recording holds them, and the sink that fills them."""
    samples: dict[str, list] = {key: [] for key in LOGICAL_INPUTS}

    def sink(s: object) -> None:
        key = 'autopilot/status' if isinstance(s, StatusSample) else SAMPLE_MESSAGES[type(s)][0]
        samples[key].append(s)
    return samples, sink


def _recording(path: Path, storage: str, samples: dict[str, list]) -> Recording:
    """A Recording whose clock starts at sim time 0, so ticks fall on the sim's ticks."""
    end = max((lst[-1].stamp for lst in samples.values() if lst), default=0.0)
    return Recording(path=path, storage_id=storage, samples=samples, start_time=0.0,
                     end_time=end)
