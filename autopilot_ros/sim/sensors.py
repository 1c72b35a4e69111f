"""The boat's instruments: noisy, biased, each at its own rate, like the real ones.

Every sensor samples the true state at its own rate (first sample at a seeded random phase,
so instruments are not in lockstep), adds gaussian noise, and emits the samples.py
dataclass the node would build from its ROS message, stamped with sim time in seconds.
Sample times fall on physics steps, so a rate above the physics rate is capped by it.
"""

from dataclasses import dataclass
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

    def sample(self, st: BoatState, wind_from: float, tws: float, out: list) -> None:
        """Append every sample due at st.time to out (IMU, heading, wind, speed, rudder)."""
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

    def _imu(self, st: BoatState) -> ImuSample:
        """REP-103 IMU: z up, so a starboard turn reads negative angular_velocity.z.

        The accelerometer measures specific force: kinematic acceleration plus gravity's
        reaction, i.e. +g along 'up' expressed in the body frame. Up in the body frame is
        (-sin(pitch), sin(roll) cos(pitch), cos(roll) cos(pitch)); turning to starboard
        accelerates the boat towards starboard (-y) by speed * yaw_rate.
        """
        n0, n1, n2, n3, n4, n5, n6, n7 = self._imu_noise()
        bx, by, bz = self.gyro_bias
        sr, cr = math.sin(st.roll), math.cos(st.roll)
        spi, cpi = math.sin(st.pitch), math.cos(st.pitch)
        return ImuSample(
            st.time,
            st.roll + n0,
            st.pitch + n1,
            st.roll_rate + bx + n2,
            st.pitch_rate + by + n3,
            -st.yaw_rate + bz + n4,
            st.surge_accel - GRAVITY * spi + n5,
            GRAVITY * sr * cpi - st.speed * st.yaw_rate + n6,
            GRAVITY * cr * cpi + st.heave_accel + n7,
        )

    def _heading(self, st: BoatState) -> HeadingSample:
        return HeadingSample(st.time,
                             wrap_2pi(st.heading + self.config.heading_noise * self._normal()))

    def _wind(self, st: BoatState, wind_from: float, tws: float) -> WindSample:
        """Masthead apparent wind: true wind, boat speed, and the mast swinging in a sea.

        Rolling to starboard (roll rate > 0) moves the vane to starboard, which reads as
        wind from starboard; pitching bow down moves it forward, which reads as head wind.
        """
        c = self.config
        twa = wrap_pi(wind_from - st.heading)
        fwd = tws * math.cos(twa) + st.speed + c.mast_height * st.pitch_rate
        stbd = tws * math.sin(twa) + c.mast_height * st.roll_rate
        awa = wrap_pi(math.atan2(stbd, fwd) + c.awa_noise * self._normal())
        aws = max(0.0, math.hypot(fwd, stbd) + c.aws_noise * self._normal())
        return WindSample(st.time, awa, aws)
