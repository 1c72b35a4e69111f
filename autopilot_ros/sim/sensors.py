"""The boat's instruments: noisy, biased, each at its own rate, like the real ones.

Every sensor samples the true state at its own rate (first sample at a seeded random phase,
so instruments are not in lockstep), adds gaussian noise, and emits the samples.py
dataclass the node would build from its ROS message, stamped with sim time in seconds.
Sample times fall on physics steps, so a rate above the physics rate is capped by it.

Real installations differ in more than noise, and a pilot must cope (sim/boats.py draws
them): an IMU mounted a few degrees off level reads a constant roll and pitch offset; a
compass damps its heading (first-order lag); a wind instrument damps apparent wind; and
every reading may reach the pilot late (bus, multiplexer, bridge), stamped when it
arrives, as a bridge that stamps with the receive time does. All of it is off by default.
"""

from collections import deque
from dataclasses import dataclass, replace
import math

import numpy as np

from autopilot_ros.conventions import GRAVITY, wrap_2pi, wrap_pi
from autopilot_ros.samples import HeadingSample, ImuSample, RudderSample, SpeedSample, WindSample
from autopilot_ros.sim.boat import BlockNormals, BoatState, NoiseRows


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """Rates (Hz; 0 disables a sensor) and noise standard deviations (SI units)."""

    imu_hz: float = 50.0
    heading_hz: float = 10.0
    wind_hz: float = 5.0
    speed_hz: float = 2.0
    rudder_hz: float = 20.0
    imu_angle_noise: float = math.radians(0.2)
    gyro_noise: float = 0.004  # rad/s
    gyro_bias_std: float = 0.002  # rad/s, one constant bias per axis per run
    accel_noise: float = 0.05  # m/s^2
    heading_noise: float = math.radians(0.7)
    awa_noise: float = math.radians(2.0)
    aws_noise: float = 0.25  # m/s
    speed_noise: float = 0.05  # m/s
    rudder_noise: float = 0.005  # normalised
    mast_height: float = 12.0  # m: the wind vane swings with roll and pitch
    imu_roll_offset: float = 0.0  # rad: the IMU mounted heeled to starboard by this much
    imu_pitch_offset: float = 0.0  # rad: ... and bow down by this much
    compass_lag_s: float = 0.0  # first-order damping of the compass heading
    wind_damping_s: float = 0.0  # first-order damping of the apparent wind vector
    latency_s: float = 0.0  # every reading arrives this late, stamped on arrival


class Sensors:
    """Turns true state into timestamped samples at the configured rates."""

    def __init__(self, config: SensorConfig, rng: np.random.Generator) -> None:
        self.config = config
        self._normal = BlockNormals(rng)
        self._imu_noise = NoiseRows(rng, (config.imu_angle_noise,) * 2
                                    + (config.gyro_noise,) * 3 + (config.accel_noise,) * 3)
        self.gyro_bias = tuple(float(b) for b in config.gyro_bias_std * rng.standard_normal(3))
        rates = (config.imu_hz, config.heading_hz, config.wind_hz, config.speed_hz,
                 config.rudder_hz)
        self._periods = [1.0 / r if r > 0.0 else math.inf for r in rates]
        phases = rng.uniform(0.0, 1.0, size=len(rates))
        self._next = [ph * p if math.isfinite(p) else math.inf
                      for ph, p in zip(phases.tolist(), self._periods, strict=True)]
        self._lagged = config.compass_lag_s > 0.0 or config.wind_damping_s > 0.0
        self._last_time: float | None = None
        self._heading_state: float | None = None  # the compass's damped heading
        self._wind_state: tuple[float, float] | None = None  # damped (forward, starboard)
        self._in_flight: deque = deque()  # (arrival time, sample) while latency_s > 0

    def sample(self, st: BoatState, wind_from: float, tws: float, out: list) -> None:
        """Append every sample due at st.time to out (IMU, heading, wind, speed, rudder)."""
        if self.config.latency_s > 0.0:
            measured: list = []
            self._measure(st, wind_from, tws, measured)
            arrive = st.time + self.config.latency_s
            self._in_flight.extend((arrive, m) for m in measured)
            while self._in_flight and self._in_flight[0][0] <= st.time + 1e-9:
                _, m = self._in_flight.popleft()
                out.append(replace(m, stamp=st.time))
            return
        self._measure(st, wind_from, tws, out)

    def _measure(self, st: BoatState, wind_from: float, tws: float, out: list) -> None:
        if self._lagged:
            self._damp(st, wind_from, tws)
        t = st.time + 1e-9
        nxt = self._next
        if t >= nxt[0]:
            out.append(self._imu(st))
            nxt[0] = self._advance(nxt[0], self._periods[0], t)
        if t >= nxt[1]:
            out.append(self._heading(st))
            nxt[1] = self._advance(nxt[1], self._periods[1], t)
        if t >= nxt[2]:
            out.append(self._wind(st, wind_from, tws))
            nxt[2] = self._advance(nxt[2], self._periods[2], t)
        if t >= nxt[3]:
            c = self.config
            out.append(SpeedSample(st.time, max(0.0, st.speed + c.speed_noise * self._normal())))
            nxt[3] = self._advance(nxt[3], self._periods[3], t)
        if t >= nxt[4]:
            c = self.config
            angle = max(-1.0, min(1.0, st.rudder + c.rudder_noise * self._normal()))
            out.append(RudderSample(st.time, angle))
            nxt[4] = self._advance(nxt[4], self._periods[4], t)

    @staticmethod
    def _advance(due: float, period: float, t: float) -> float:
        """Next due time on the sensor's own clock; skip missed slots instead of bursting."""
        due += period
        if due <= t:
            due += period * math.ceil((t - due) / period + 1e-12)
        return due

    def _damp(self, st: BoatState, wind_from: float, tws: float) -> None:
        """Advance the compass's and the wind instrument's damping by one physics step."""
        c = self.config
        dt = 0.0 if self._last_time is None else st.time - self._last_time
        self._last_time = st.time
        if c.compass_lag_s > 0.0:
            if self._heading_state is None:
                self._heading_state = st.heading
            a = 1.0 - math.exp(-dt / c.compass_lag_s)
            self._heading_state = wrap_2pi(
                self._heading_state + a * wrap_pi(st.heading - self._heading_state))
        if c.wind_damping_s > 0.0:
            fwd, stbd = self._masthead_wind(st, wind_from, tws)
            if self._wind_state is None:
                self._wind_state = (fwd, stbd)
            a = 1.0 - math.exp(-dt / c.wind_damping_s)
            f0, s0 = self._wind_state
            self._wind_state = (f0 + a * (fwd - f0), s0 + a * (stbd - s0))

    def _imu(self, st: BoatState) -> ImuSample:
        """REP-103 IMU: z up, so a starboard turn reads negative angular_velocity.z.

        The accelerometer measures specific force: kinematic acceleration plus gravity's
        reaction, i.e. +g along 'up' expressed in the body frame. Up in the body frame is
        (-sin(pitch), sin(roll) cos(pitch), cos(roll) cos(pitch)); turning to starboard
        accelerates the boat towards starboard (-y) by speed * yaw_rate.
        """
        n0, n1, n2, n3, n4, n5, n6, n7 = self._imu_noise()
        bx, by, bz = self.gyro_bias
        # A misaligned IMU sees gravity (and reports attitude) as if the boat were heeled
        # by its mounting offsets as well; the rates are those of the hull.
        roll = st.roll + self.config.imu_roll_offset
        pitch = st.pitch + self.config.imu_pitch_offset
        sr, cr = math.sin(roll), math.cos(roll)
        spi, cpi = math.sin(pitch), math.cos(pitch)
        return ImuSample(
            st.time,
            roll + n0,
            pitch + n1,
            st.roll_rate + bx + n2,
            st.pitch_rate + by + n3,
            -st.yaw_rate + bz + n4,
            st.surge_accel - GRAVITY * spi + n5,
            GRAVITY * sr * cpi - st.speed * st.yaw_rate + n6,
            GRAVITY * cr * cpi + st.heave_accel + n7,
        )

    def _heading(self, st: BoatState) -> HeadingSample:
        heading = st.heading if self._heading_state is None else self._heading_state
        return HeadingSample(st.time,
                             wrap_2pi(heading + self.config.heading_noise * self._normal()))

    def _wind(self, st: BoatState, wind_from: float, tws: float) -> WindSample:
        """Masthead apparent wind: true wind, boat speed, and the mast swinging in a sea.

        Rolling to starboard (roll rate > 0) moves the vane to starboard, which reads as
        wind from starboard; pitching bow down moves it forward, which reads as head wind.
        """
        c = self.config
        fwd, stbd = (self._masthead_wind(st, wind_from, tws) if self._wind_state is None
                     else self._wind_state)
        awa = wrap_pi(math.atan2(stbd, fwd) + c.awa_noise * self._normal())
        aws = max(0.0, math.hypot(fwd, stbd) + c.aws_noise * self._normal())
        return WindSample(st.time, awa, aws)

    def _masthead_wind(self, st: BoatState, wind_from: float, tws: float
                       ) -> tuple[float, float]:
        """Apparent wind at the masthead, (forward, starboard) m/s, before any damping."""
        mast = self.config.mast_height
        twa = wrap_pi(wind_from - st.heading)
        return (tws * math.cos(twa) + st.speed + mast * st.pitch_rate,
                tws * math.sin(twa) + mast * st.roll_rate)
