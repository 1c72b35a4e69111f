"""The one closed simulation loop: a boat, a steering callback and a sample sink, per tick.

Closed-loop evaluation, demonstration and DAgger recordings and sim_node all run this
loop, so what each of them measures or records is the same boat doing the same thing. Per
tick: the boat advances one control period, the sensor samples it emitted go to the sink
(a pilot, a bag, a publisher), the steering callback answers with a rudder command, the
command goes to the rudder, and the true state is traced for scoring.
"""

from collections.abc import Callable

import numpy as np

from autopilot_ros.pilot import POLICY_MODEL, Pilot
from autopilot_ros.samples import SensorSample
from autopilot_ros.sim.boat import BoatParams
from autopilot_ros.sim.scenarios import Scenario
from autopilot_ros.sim.sensors import SensorConfig
from autopilot_ros.sim.simulator import Simulator

# steer(sim, target, new samples, time) -> rudder command in [-1, 1]. `target` is the
# scenario's target in force now (a heading or a wind angle, by the scenario's mode).
Steer = Callable[[Simulator, float, list[SensorSample], float], float]
Sink = Callable[[SensorSample], None]
TRACE_KEYS = ('t', 'err', 'rudder', 'heading', 'target')


class ClosedLoop:
    """One scenario and seed at a fixed control rate; `tick()` or `run()` it."""

    def __init__(self, scenario: Scenario, seed: int, *, rate_hz: float, steer: Steer,
                 sink: Sink | None = None, params: BoatParams | None = None,
                 sensors: SensorConfig | None = None) -> None:
        if not rate_hz > 0.0:
            raise ValueError(f'rate_hz must be > 0, got {rate_hz}')
        self.scenario = scenario
        self.seed = seed
        self.sim = Simulator(scenario, seed, params=params, sensor_config=sensors)
        self.dt = 1.0 / rate_hz
        self.steer = steer
        self.sink = sink
        self.ticks = int(round(scenario.duration_s * rate_hz))
        self.k = 0  # ticks run
        self.target = self.sim.target_at(0.0)
        self.changes = [0.0]  # times of the start and of every target change
        self._trace = {key: np.zeros(self.ticks) for key in TRACE_KEYS}

    @property
    def done(self) -> bool:
        return self.k >= self.ticks

    def tick(self) -> None:
        """One control period; see the module docstring for the order of events."""
        sim = self.sim
        sim.step(self.dt)
        now = sim.time
        target = sim.target_at(now)
        if target != self.target:
            self.target = target
            self.changes.append(now)
        samples = sim.poll_samples()
        if self.sink is not None:
            for sample in samples:
                self.sink(sample)
        sim.set_rudder_command(self.steer(sim, target, samples, now))
        target_heading = sim.target_heading()
        k, trace = self.k, self._trace
        trace['t'][k] = now
        trace['err'][k] = sim.truth_heading_error(target_heading)
        trace['rudder'][k] = sim.state.rudder
        trace['heading'][k] = sim.state.heading
        trace['target'][k] = target_heading
        self.k += 1

    def run(self) -> 'ClosedLoop':
        while not self.done:
            self.tick()
        return self

    def trace(self) -> dict[str, np.ndarray]:
        """Time, true heading error, rudder, heading and target heading of the ticks run."""
        return {key: values[:self.k] for key, values in self._trace.items()}


class PilotSteer:
    """A Pilot as a steering callback: it follows the scenario's target changes, takes the
    new samples and ticks, exactly as the node would; it counts the ticks the model steered
    and those a guard (envelope, watchdog) held the helm from it.
    """

    def __init__(self, pilot: Pilot, mode: str, target: float) -> None:
        self.pilot = pilot
        self.mode = mode
        self.model_ticks = 0
        self.guard_ticks = 0
        pilot.set_mode(mode, target)

    def __call__(self, sim: Simulator, target: float, samples: list[SensorSample],
                 now: float) -> float:
        pilot = self.pilot
        if target != pilot.target:
            pilot.set_mode(self.mode, target)
        for sample in samples:
            pilot.update(sample)
        out = pilot.step(now)
        self.model_ticks += out.policy == POLICY_MODEL
        self.guard_ticks += out.policy != POLICY_MODEL and bool(pilot.guard.holding)
        return out.command
