"""The whole simulated boat: physics, wind, sea and instruments behind one small API.

A caller (the sim node, a test, a data generator) sets a rudder command, advances time,
and polls the sensor samples emitted meanwhile, exactly as a pilot on a real boat would
receive them. Truth (state, true wind, target heading) is exposed for scoring and for the
demonstration helmsman. Seeded: the same scenario and seed give the same run, sample for
sample. The physics advances in fixed steps of physics_dt, so the run does not depend on
how the caller slices time.
"""

import math

import numpy as np

from autopilot_ros.conventions import apparent_wind, wind_target_heading, wrap_2pi, wrap_pi
from autopilot_ros.sim.boat import (
    Boat,
    BoatParams,
    BoatState,
    WaveField,
    WindModel,
    equilibrium_heel,
    polar_speed,
)
from autopilot_ros.sim.scenarios import Scenario, initial_heading
from autopilot_ros.sim.sensors import SensorConfig, Sensors


def target_heading_for(mode: str, target: float, heading: float, twa: float, tws: float,
                       speed: float) -> float:
    """Compass heading that satisfies a pilot target, from the current wind triangle.

    docs/design.md: TWA mode target heading = heading + (TWA - target TWA); AWA mode converts
    the target AWA to a target TWA with the current TWS and speed first.
    """
    if mode == 'compass':
        return wrap_2pi(target)
    return wind_target_heading(mode, target, heading, twa, tws, speed)


class Simulator:
    """A seeded sailing run of one Scenario; see the module docstring."""

    def __init__(self, scenario: Scenario, seed: int, physics_dt: float = 0.02,
                 sensor_config: SensorConfig | None = None,
                 params: BoatParams | None = None) -> None:
        if not physics_dt > 0.0:
            raise ValueError(f'physics_dt must be > 0, got {physics_dt}')
        self.scenario = scenario
        self.seed = seed
        self.physics_dt = physics_dt
        self.params = params or BoatParams()
        self.sensor_config = sensor_config or SensorConfig()
        # Independent streams: changing the sensors does not change the weather.
        init_ss, wind_ss, wave_ss, sensor_ss = np.random.SeedSequence(seed).spawn(4)
        init_rng = np.random.default_rng(init_ss)
        wind = WindModel(scenario.tws, scenario.wind_from, np.random.default_rng(wind_ss),
                         gust=scenario.gust, shift=scenario.shift,
                         step_shift=scenario.step_shift)
        waves = WaveField(scenario.wave_height, scenario.wave_period,
                          wrap_2pi(scenario.wind_from + scenario.wave_dir_offset),
                          np.random.default_rng(wave_ss), self.params)
        self.initial_offset = scenario.draw_initial_offset(init_rng)
        heading = initial_heading(scenario, self.initial_offset, self.params.hull_speed,
                                  wind.wind_from, wind.tws)
        twa = wrap_pi(wind.wind_from - heading)
        speed = polar_speed(wind.tws, twa, self.params.hull_speed)
        awa, aws = apparent_wind(twa, wind.tws, speed)
        state = BoatState(heading=heading, speed=speed,
                          roll=equilibrium_heel(awa, aws, self.params))
        self.boat = Boat(state, wind, waves, self.params)
        self.sensors = Sensors(self.sensor_config, np.random.default_rng(sensor_ss))
        self._samples: list = []
        self._steps = 0
        self._requested = 0.0

    # -- properties ------------------------------------------------------------------

    @property
    def time(self) -> float:
        """Sim time in seconds (a whole number of physics steps)."""
        return self.boat.state.time

    @property
    def state(self) -> BoatState:
        """The true state (live object; copy() it to keep a snapshot)."""
        return self.boat.state

    @property
    def mode(self) -> str:
        return self.scenario.mode

    @property
    def done(self) -> bool:
        return self.time >= self.scenario.duration_s - 1e-9

    # -- control ---------------------------------------------------------------------

    def set_rudder_command(self, cmd: float) -> None:
        """Command the rudder actuator (normalised, clamped); non-finite values are ignored
        like a servo driver ignores a garbled message."""
        if math.isfinite(cmd):
            self.boat.rudder_command = max(-1.0, min(1.0, float(cmd)))

    def step(self, dt: float) -> None:
        """Advance by dt seconds in fixed physics steps, collecting sensor samples."""
        if dt < 0.0 or not math.isfinite(dt):
            raise ValueError(f'dt must be finite and >= 0, got {dt}')
        self._requested += dt
        n_target = int(math.floor(self._requested / self.physics_dt + 1e-6))
        boat, sensors, out, h = self.boat, self.sensors, self._samples, self.physics_dt
        wind, st = boat.wind, boat.state
        while self._steps < n_target:
            boat.step(h)
            self._steps += 1
            st.time = self._steps * h  # no float drift over long runs
            sensors.sample(st, wind.wind_from, wind.tws, out)

    def poll_samples(self) -> list:
        """Samples emitted since the last poll, in time order."""
        out, self._samples = self._samples, []
        return out

    # -- truth -----------------------------------------------------------------------

    def target_at(self, t: float) -> float:
        """The scenario target (heading or wind angle, rad) in force at time t."""
        return self.scenario.target_at(t)

    def target_heading(self, t: float | None = None) -> float:
        """The target as a compass heading, from the true wind triangle now."""
        target = self.target_at(self.time if t is None else t)
        twa, tws = self.true_wind()
        st = self.boat.state
        return target_heading_for(self.mode, target, st.heading, twa, tws, st.speed)

    def truth_heading_error(self, target_heading: float) -> float:
        """wrap_pi(target_heading - true heading): > 0 needs starboard rudder."""
        return wrap_pi(target_heading - self.boat.state.heading)

    def true_wind(self) -> tuple[float, float]:
        """(TWA, TWS) truth: TWA = wrap_pi(wind_from - heading)."""
        return self.boat.true_wind()

    def apparent_wind(self) -> tuple[float, float]:
        """(AWA, AWS) truth at the boat (no masthead motion, no instrument noise)."""
        return self.boat.apparent_wind()

    def wave_yaw_forecast(self, horizon_s: float = 2.0, dt: float = 0.1) -> np.ndarray:
        """Wave yaw acceleration (rad/s^2) over the next horizon_s: what the sea will do."""
        return self.boat.wave_yaw_forecast(horizon_s, dt)
