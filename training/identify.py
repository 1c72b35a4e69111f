"""Identify a boat from its recordings: the simulator's own model fitted to a sailor's bags.

A sailor's recordings are the only truth about their boat. This module fits the
`BoatParams` of sim/boat.py to them, so the simulator becomes a twin of that boat: the PID
can be tuned on it and models judged on it. Pure: numpy and scipy, no ROS, no torch.

Each part of the model is fitted where it is observable, with scipy's least_squares:
- speed (hull speed, speed lag): the polar against the true wind worked out from the
  apparent wind and the log, by output error over each whole recording. The waterline
  length follows from the hull speed (boats.HULL_SPEED_PER_SQRT_M) unless it is given.
- rudder actuator (slew, dead time): the measured rudder against the command, where a
  command was recorded and it is what moved the rudder.
- heel (heel gain, roll period and damping, IMU roll offset): the roll ODE of Boat.step
  driven by the measured apparent wind, by output error over short windows.
- yaw (rudder gain, yaw damping base and per speed, weather and downwind helm, rudder
  sensor offset): the Nomoto model of Boat.step driven by the MEASURED rudder angle, speed,
  roll and apparent wind, by output error over short windows started from the measured
  heading and the turn rate averaged over +-0.4 s, never by differentiating the gyro.
- compass lag (its damping): the compass against the gyro's turn rate, integrated, over
  short windows (a per-window offset and gyro drift taken out), before the yaw fit, which
  then holds it. Fitted with the yaw model instead, it traded against the damping: 0.14 s
  for laggy_instruments' 0.8 s, and a PID tuned on that twin lost the boat downwind.
- wind instrument damping: the AWA against the integrated gyro over 20 s windows (a
  per-window scale, offset and drift taken out).
Per recording, the gyro bias comes from the gyro's mean against the compass's net turn,
and the disturbance (what the yaw model cannot explain, the gust level) is measured.

Everything not identified takes its size-scaled value, `boat_params(length=...)`, and is
marked "assumed, not identified"; every parameter the data cannot pin down gets one line
saying why. Positive parameters are fitted in log space; weather and downwind helm (which
can be 0) and the offsets linearly, within bounds. Standard deviations come from the
Jacobian at the optimum, as a sandwich clustered by window (the residuals within a window
are strongly correlated, so the plain s^2 (J'J)^-1 would flatter the fit).

The fit is judged on a recording it did not use: the turn rate one second ahead, and the
heading of free simulation over 10 s and 30 s, restarted along the recording and driven
by the measured inputs, against two naive predictors (constant turn rate; the boat keeps
its heading).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
import math
from pathlib import Path
from typing import Any

import numpy as np

from autopilot_ros.sim import boat as boat_model
from autopilot_ros.sim.boat import BoatParams, sail_force
from autopilot_ros.sim.boats import (
    HULL_SPEED_PER_SQRT_M,
    BoatSpec,
    boat_params,
    design_heel_of,
)
from autopilot_ros.sim.sensors import SensorConfig

GRID_DT = 0.1  # s: every recording is resampled onto one grid of this step
YAW_WINDOW_S = 8.0  # output-error windows of the yaw fit
START_RATE_S = 0.4  # the start turn rate of a window: the gyro averaged over +- this
ROLL_WINDOW_S = 10.0  # ... and of the roll oscillation
HEEL_AVERAGE_S = 20.0  # the steady heel: signals averaged over this
MAX_PERIOD_SPREAD = 1.3  # roll periods fitted per recording must agree within this ratio
MIN_FIT_S = 120.0  # usable seconds the fit needs at the least
MIN_HOLDOUT_S = 40.0  # ... and the check on a held-out recording (a 30 s horizon and more)
HORIZONS_S = (10.0, 30.0)  # free-simulation horizons of the check
RESTART_S = 5.0  # free simulations restart this often along the held-out recording
RATE_AHEAD_S = 1.0  # the "one-step" turn-rate prediction: one second ahead
RATE_WEIGHT_S = 2.0  # a turn-rate residual counts as much as the heading error it makes in 2 s
REL_STD_WARN = 0.3  # relative std above which a parameter is reported as poorly identified
WIND_BOX_S = 0.5  # s: the apparent wind is averaged over this (its noise is an input's)
MAX_GAP_S = 2.0  # a grid point farther than this from an input's samples is not usable
# Starts of the yaw fit: (rudder gain, damping) x the size-scaled boat's.
MULTI_START = ((1.0, 1.0), (0.5, 0.5), (2.0, 2.0), (2.0, 1.0), (1.0, 2.0))

# What the data must show for a parameter to be identifiable (the warnings say which failed).
MIN_SPEED_SPREAD = 0.6  # m/s between the 10th and 90th percentile: damping split, speed lag
MIN_RUDDER_STD = 0.04  # normalised: the rudder moved
MIN_ROLL_STD = math.radians(1.5)  # heel varied: weather helm, heel gain
MIN_DOWNWIND_S = 60.0  # seconds with |AWA| > 90 deg: downwind helm
MIN_SATURATED_SHARE = 0.03  # share of steps the rudder moved at its slew limit

_REF = BoatParams()
# The yaw model's parameters as simulate_yaw reads them (BoatParams fields and the offset).
_YAW_KEYS = ('rudder_gain', 'min_flow_speed', 'rudder_stall', 'yaw_damping_base',
             'yaw_damping_per_speed', 'weather_helm', 'downwind_helm', 'rudder_offset',
             'compass_lag_s')
_SAIL_REF = sail_force(12.0, _REF.reef_wind)


class IdentifyError(ValueError):
    """Recordings identification cannot use; the message says what is missing or needed."""


# --------------------------------------------------------------------------- tracks


@dataclass
class Track:
    """One recording on the GRID_DT grid: what every fit reads.

    heading is unwrapped (rad, clockwise); rate the starboard turn rate (gyro, bias
    removed); roll > 0 starboard side down (as measured, IMU offset included); rudder and
    command normalised; valid marks grid points where every input was fresh.
    """

    name: str
    t: np.ndarray
    heading: np.ndarray
    rate: np.ndarray
    roll: np.ndarray
    roll_rate: np.ndarray
    awa: np.ndarray
    aws: np.ndarray
    speed: np.ndarray
    rudder: np.ndarray
    valid: np.ndarray
    command: np.ndarray | None = None
    command_source: str = ''
    gyro_bias_z: float = 0.0  # rad/s on angular_velocity.z (what the sensor adds)
    gyro_bias_x: float = 0.0
    rates_hz: dict[str, float] = field(default_factory=dict)
    roll_known: bool = True

    @property
    def seconds(self) -> float:
        return float(np.count_nonzero(self.valid)) * GRID_DT

    def segment(self, start: float, end: float, name: str) -> Track:
        """The part of the track between two times (s from its start)."""
        keep = (self.t >= self.t[0] + start) & (self.t < self.t[0] + end)
        out = replace(self, name=name)
        for f in ('t', 'heading', 'rate', 'roll', 'roll_rate', 'awa', 'aws', 'speed', 'rudder',
                  'valid'):
            setattr(out, f, getattr(self, f)[keep])
        if self.command is not None:
            out.command = self.command[keep]
        return out


def _stamps_values(samples: Sequence[Any], attr: str) -> tuple[np.ndarray, np.ndarray]:
    t = np.array([s.stamp for s in samples], dtype=float)
    v = np.array([getattr(s, attr) for s in samples], dtype=float)
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    t, first = np.unique(t, return_index=True)
    return t, v[first]


def _fresh(ts: np.ndarray, grid: np.ndarray, max_gap: float) -> np.ndarray:
    """Grid points with a sample of this input within max_gap on both sides (or on them)."""
    if len(ts) == 0:
        return np.zeros(len(grid), dtype=bool)
    i = np.searchsorted(ts, grid)
    before = np.where(i > 0, grid - ts[np.maximum(i - 1, 0)], np.inf)
    at = np.where(i < len(ts), ts[np.minimum(i, len(ts) - 1)] - grid, np.inf)
    return (np.minimum(before, at) <= 1e-9) | ((before <= max_gap) & (at <= max_gap))


def _box(ts: np.ndarray, vs: np.ndarray, grid: np.ndarray, width: float) -> np.ndarray:
    """The mean of a piecewise-linear signal over +-width/2 around each grid point: a
    high-rate, noisy signal (gyro, rudder) averaged instead of picked at one sample."""
    if len(ts) < 2:
        return np.interp(grid, ts, vs) if len(ts) else np.full(len(grid), np.nan)
    area = np.concatenate(([0.0], np.cumsum(0.5 * (vs[1:] + vs[:-1]) * np.diff(ts))))
    lo = np.clip(grid - width / 2, ts[0], ts[-1])
    hi = np.clip(grid + width / 2, ts[0], ts[-1])
    span = hi - lo
    mean = (np.interp(hi, ts, area) - np.interp(lo, ts, area)) / np.where(span > 0, span, 1.0)
    return np.where(span > 0, mean, np.interp(grid, ts, vs))


def _rate_hz(ts: np.ndarray) -> float:
    if len(ts) < 3:
        return 0.0
    step = float(np.median(np.diff(ts)))
    return 1.0 / step if step > 0 else 0.0


def track_of(rec: Any, name: str | None = None) -> Track:
    """A Recording (training.bags) on the grid; IdentifyError when an input is missing."""
    name = name or str(rec.path)
    s = rec.samples
    if not s.get('rudder_angle'):
        raise IdentifyError(
            f'{name} has no rudder angle (topic rudder_angle): identification needs the '
            'rudder angle sensor, since the boat turns by what the rudder did. Record it, or '
            'map it with --topic rudder_angle=/your/topic')
    if not s.get('speed'):
        raise IdentifyError(
            f'{name} has no speed through water (topic speed): identification needs the log, '
            'since the rudder bites with the square of the speed. Record it, or map it with '
            '--topic speed=/your/topic')
    for key in ('imu', 'heading', 'wind'):
        if not s.get(key):
            raise IdentifyError(f'{name} has no {key} samples: identification needs the IMU, '
                                'the compass, the wind instrument, the log and the rudder angle')
    ti, gz = _stamps_values(s['imu'], 'yaw_rate_z')
    if len(ti) < 2:
        raise IdentifyError(f'{name}: the IMU gives no turn rate (angular_velocity.z): '
                            'identification needs a gyro')
    th, hd = _stamps_values(s['heading'], 'heading')
    tw, awa = _stamps_values(s['wind'], 'awa')
    tw2, aws = _stamps_values(s['wind'], 'aws')
    tsp, spd = _stamps_values(s['speed'], 'stw')
    tr, rud = _stamps_values(s['rudder_angle'], 'angle')
    tro, roll = _stamps_values(s['imu'], 'roll')
    trr, roll_rate = _stamps_values(s['imu'], 'roll_rate')
    roll_known = len(tro) >= 2
    # A topic whose every value is NaN (an instrument that sent only 'not available') has
    # messages but nothing to fit: say which, rather than fail inside numpy.
    for what, ts in (('compass heading', th), ('wind angle', tw), ('wind speed', tw2),
                     ('speed through water', tsp), ('rudder angle', tr)):
        if len(ts) < 2:
            raise IdentifyError(f'{name}: the {what} never has a value (every reading absent '
                                'or not a number): identification needs it')
    start = max(x[0] for x in (ti, th, tw, tsp, tr) if len(x))
    end = min(x[-1] for x in (ti, th, tw, tsp, tr) if len(x))
    if not end - start >= 2 * GRID_DT:
        raise IdentifyError(f'{name}: the inputs never overlap in time (IMU, compass, wind, '
                            'log and rudder must be recorded together)')
    grid = np.arange(start, end + 1e-9, GRID_DT)
    valid = np.ones(len(grid), dtype=bool)
    for ts in (ti, th, tw, tsp, tr):
        valid &= _fresh(ts, grid, max(MAX_GAP_S, 2.5 / max(_rate_hz(ts), 1e-3)))
    heading_u = np.unwrap(hd)
    heading = np.interp(grid, th, heading_u)
    raw_rate = -_box(ti, gz, grid, GRID_DT)
    # Gyro bias: the gyro's mean turn against the compass's net turn over the recording.
    span = grid[-1] - grid[0]
    net = (heading[-1] - heading[0]) / span if span > 0 else 0.0
    bias_rate = float(np.mean(raw_rate)) - net
    if roll_known:
        roll_g = _box(tro, roll, grid, GRID_DT)
    else:
        roll_g = np.zeros(len(grid))
    if len(trr) >= 2:
        rr = _box(trr, roll_rate, grid, GRID_DT)
        bias_x = float(np.mean(rr))
        rr = rr - bias_x
    else:
        rr = np.gradient(roll_g, GRID_DT)
        bias_x = 0.0
    # Apparent wind as a vector, averaged over WIND_BOX_S, less the masthead's own swing
    # (roll and pitch rates times the mast height: sensors.py), which the hull never feels.
    _, pr = _stamps_values(s['imu'], 'pitch_rate')
    tpr = _stamps_values(s['imu'], 'pitch_rate')[0]
    pitch_rate = _box(tpr, pr, grid, GRID_DT) if len(tpr) >= 2 else np.zeros(len(grid))
    mast = SensorConfig().mast_height
    aws_w = np.interp(tw, tw2, aws) if len(tw2) >= 2 else np.zeros(len(tw))
    fwd = _box(tw, aws_w * np.cos(awa), grid, WIND_BOX_S) - mast * pitch_rate
    stbd = _box(tw, aws_w * np.sin(awa), grid, WIND_BOX_S) - mast * rr
    command, source = _command(rec, grid)
    rates = {'imu_hz': _rate_hz(ti), 'heading_hz': _rate_hz(th), 'wind_hz': _rate_hz(tw),
             'speed_hz': _rate_hz(tsp), 'rudder_hz': _rate_hz(tr)}
    return Track(name=name, t=grid, heading=heading, rate=raw_rate - bias_rate, roll=roll_g,
                 roll_rate=rr, awa=np.arctan2(stbd, fwd), aws=np.hypot(fwd, stbd),
                 speed=np.interp(grid, tsp, spd), rudder=_box(tr, rud, grid, GRID_DT),
                 valid=valid, command=command, command_source=source,
                 gyro_bias_z=-bias_rate, gyro_bias_x=bias_x, rates_hz=rates,
                 roll_known=roll_known)


def _command(rec: Any, grid: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The rudder command on the grid (held between commands), and where it came from.

    rudder_command when recorded (the autopilot steered); otherwise autopilot/status's
    command, unless it is 0 throughout (the node in hand steering reports none).
    """
    s = rec.samples
    for key, attr, source in (('rudder_command', 'angle', 'rudder_command'),
                              ('autopilot/status', 'command', 'autopilot/status')):
        samples = s.get(key) or []
        if len(samples) < 10:
            continue
        ts, vs = _stamps_values(samples, attr)
        if len(ts) < 10 or not np.any(np.abs(vs) > 1e-6):
            continue
        i = np.clip(np.searchsorted(ts, grid, side='right') - 1, 0, len(ts) - 1)
        return np.clip(vs[i], -1.0, 1.0), source
    return None, ''


# --------------------------------------------------------------------------- model pieces

# The simulator's own polar table, so the fit and the boat it describes cannot drift apart.
_POLAR_TWA = np.radians(boat_model._POLAR_TWA_DEG)
_POLAR_FACTOR = np.asarray(boat_model._POLAR_FACTOR)


def polar_shape(tws: np.ndarray, twa: np.ndarray) -> np.ndarray:
    """boat.polar_speed for a hull speed of 1, vectorised (the polar is linear in it)."""
    a = np.minimum(np.abs(np.angle(np.exp(1j * twa))), math.pi)
    return np.tanh(np.maximum(tws, 0.0) / 7.0) * np.interp(a, _POLAR_TWA, _POLAR_FACTOR)


def true_wind_np(awa: np.ndarray, aws: np.ndarray, speed: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """conventions.true_wind, vectorised: (TWA, TWS)."""
    fwd = aws * np.cos(awa) - speed
    stbd = aws * np.sin(awa)
    return np.arctan2(stbd, fwd), np.hypot(fwd, stbd)


def side_force_np(awa: np.ndarray) -> np.ndarray:
    """boat.side_force_coefficient, vectorised."""
    a = np.abs(awa)
    coeff = np.sin(awa)
    ease_from = math.radians(60.0)
    ease = np.cos((a - ease_from) * ((math.pi / 2) / (math.pi - ease_from))) ** 2
    coeff = np.where(a > ease_from, coeff * ease, coeff)
    x = np.clip((a - math.radians(12.0)) / math.radians(16.0), 0.0, None)
    luff = x * x * (3.0 - 2.0 * x)
    return np.where(a < math.radians(28.0), coeff * luff, coeff)


def sail_np(aws: np.ndarray, reef_wind: float = _REF.reef_wind) -> np.ndarray:
    return aws * aws / (1.0 + (aws / reef_wind) ** 2)


def downwind_term(awa: np.ndarray, aws: np.ndarray) -> np.ndarray:
    """The helm bias per unit of downwind_helm (Boat.helm_bias): eased sails downwind."""
    term = sail_np(aws) / _SAIL_REF * np.sin(awa) * -np.cos(awa)
    return np.where(np.abs(awa) > math.pi / 2, term, 0.0)


def simulate_yaw(p: dict[str, float], h0: np.ndarray, r0: np.ndarray, rudder: np.ndarray,
                 speed: np.ndarray, roll: np.ndarray, downwind: np.ndarray,
                 dt: float = GRID_DT) -> tuple[np.ndarray, np.ndarray]:
    """Heading and turn rate of Boat.step's yaw model over windows (rows), from (h0, r0),
    driven by the measured rudder, speed, roll and downwind term (inputs held over a step,
    the rate's first-order step solved exactly)."""
    # Each step is driven by the mean of its two ends' inputs (the rudder ramps, it does
    # not jump at the grid points).
    rudder = 0.5 * (rudder[:, 1:] + rudder[:, :-1])
    speed = 0.5 * (speed[:, 1:] + speed[:, :-1])
    roll = 0.5 * (roll[:, 1:] + roll[:, :-1])
    downwind = 0.5 * (downwind[:, 1:] + downwind[:, :-1])
    flow = np.maximum(speed, p['min_flow_speed'])
    d = rudder + p['rudder_offset']
    eff = d - p['rudder_stall'] * d ** 3
    bias = -p['weather_helm'] * roll + p['downwind_helm'] * downwind
    damping = p['yaw_damping_base'] + p['yaw_damping_per_speed'] * np.maximum(speed, 0.0)
    decay = np.exp(-damping * dt)
    steady = p['rudder_gain'] * flow * flow * (eff + bias) / damping
    n = rudder.shape[1] + 1
    h = np.empty((rudder.shape[0], n))
    r = np.empty((rudder.shape[0], n))
    h[:, 0], r[:, 0] = h0, r0
    for k in range(n - 1):
        r[:, k + 1] = steady[:, k] + (r[:, k] - steady[:, k]) * decay[:, k]
        h[:, k + 1] = h[:, k] + 0.5 * (r[:, k] + r[:, k + 1]) * dt
    return h, r


def compass_view(h: np.ndarray, r0: np.ndarray, lag_s: float, dt: float = GRID_DT
                 ) -> np.ndarray:
    """What a compass damped with time constant lag_s reads of the heading h (windows as
    rows). It starts lag_s * r0 behind (a steady turn's lag), as the measured start does."""
    if lag_s <= 1e-3:
        return h
    a = 1.0 - math.exp(-dt / lag_s)
    out = np.empty(h.shape)
    out[:, 0] = h[:, 0] - lag_s * r0
    for k in range(h.shape[1] - 1):
        out[:, k + 1] = out[:, k] + a * (h[:, k + 1] - out[:, k])
    return out


MAX_COMPASS_LAG_S = 3.0  # the search's upper bound (a compass damped longer is no compass)
COMPASS_LAG_STD_WARN = 0.15  # s: a standard deviation above this is said
MAX_WIND_DAMPING_S = 6.0  # s: the search's upper bound for the wind instrument's damping
WIND_WINDOW_S = 20.0  # windows of the wind damping fit
WIND_DAMPING_STD_WARN = 0.5  # s: a standard deviation above this is said


def _time_constant(sse: Callable[[float, np.ndarray], float], windows: int, upper: float
                   ) -> tuple[float, float]:
    """The time constant in [0, upper] minimising sse(tau, rows of windows): a grid, then a
    bounded scalar search around its best; and its jackknife std over 5 blocks of windows."""
    from scipy.optimize import minimize_scalar

    def best(rows: np.ndarray) -> float:
        grid = np.linspace(0.0, upper, 31)
        k = int(np.argmin([sse(g, rows) for g in grid]))
        lo, hi = grid[max(0, k - 1)], grid[min(len(grid) - 1, k + 1)]
        return float(minimize_scalar(lambda g: sse(g, rows), bounds=(lo, hi),
                                     method='bounded', options={'xatol': 1e-3}).x)

    everything = np.arange(windows)
    tau = best(everything)
    blocks = np.array_split(everything, 5)
    if min(len(b) for b in blocks) == 0:
        return tau, float('nan')
    leave_out = [best(np.setdiff1d(everything, b)) for b in blocks]
    std = math.sqrt((len(blocks) - 1) / len(blocks)
                    * float(np.sum((np.asarray(leave_out) - np.mean(leave_out)) ** 2)))
    return tau, std


def _integrated(rate: np.ndarray, dt: float) -> np.ndarray:
    """The heading change since each window's start, from the gyro's turn rate."""
    return np.concatenate((np.zeros((len(rate), 1)), np.cumsum(rate[:, :-1], axis=1) * dt),
                          axis=1)


def fit_compass_lag(heading: np.ndarray, rate: np.ndarray, dt: float = GRID_DT
                    ) -> tuple[float, float]:
    """The compass's time constant from windows (rows) of heading and gyro turn rate: the
    lag that best turns the integrated turn rate into what the compass read, with a
    per-window offset and drift fitted away (the start heading, the gyro's bias). The yaw
    model plays no part, so the lag cannot trade against damping. Not a per-window scale
    (for heel's projection of the gyro): it traded against the lag in windows with little
    turning (on a 5 Hz compass without lag, 0.4 s in calm water; 0.00 without it).
    Returns the lag and its jackknife standard deviation over 5 blocks of windows."""
    integrated = _integrated(rate, dt)
    t = np.arange(heading.shape[1]) * dt
    tc = t - t.mean()

    def sse(lag: float, rows: np.ndarray) -> float:
        view = compass_view(integrated[rows] + lag * rate[rows, :1], rate[rows, 0], lag, dt)
        res = heading[rows] - view
        # Least squares of offset + drift per window, in closed form (t is the same in all).
        res = res - res.mean(axis=1, keepdims=True)
        res = res - np.outer(res @ tc / float(tc @ tc), tc)
        return float(np.sum(res * res))

    return _time_constant(sse, len(heading), MAX_COMPASS_LAG_S)


def fit_wind_damping(awa: np.ndarray, rate: np.ndarray, dt: float = GRID_DT
                     ) -> tuple[float, float]:
    """The wind instrument's damping (sensors.py: a first-order lag of the apparent wind)
    from windows (rows) of apparent wind angle and gyro turn rate: the time constant that
    best turns the heading change (the integrated gyro, negated) into the change of the AWA,
    each window's scale (how much AWA a degree of heading moves at that point of sail and
    speed), offset and drift fitted away. Gusts and shifts do not follow the yaw, so they
    are noise here, not bias; 20 s windows give the turns room. The first model tried,
    the apparent wind vector from a steady true wind, read gusts as damping (1.7-3.5 s on a
    boat without any). In wind modes the pilot steers on this reading: laggy_instruments'
    2 s, missing from its twin, let gains tuned there (kp 2.5, kd 2.7) lose it downwind.
    Returns the damping and its jackknife std."""
    turned = -_integrated(rate, dt)
    angle = np.unwrap(awa, axis=1)
    n = awa.shape[1]
    t = np.arange(n) * dt

    def sse(tau: float, rows: np.ndarray) -> float:
        a = 1.0 - math.exp(-dt / tau) if tau > 1e-6 else 1.0
        x = turned[rows]
        view = np.empty(x.shape)  # sensors.py's update, settled at the window's start
        view[:, 0] = x[:, 0]
        for k in range(1, n):
            view[:, k] = view[:, k - 1] + a * (x[:, k] - view[:, k - 1])
        reg = np.stack((view, np.ones_like(view), np.broadcast_to(t, view.shape)), axis=2)
        beta = np.linalg.solve(np.einsum('wni,wnj->wij', reg, reg) + 1e-9 * np.eye(3),
                               np.einsum('wni,wn->wi', reg, angle[rows])[..., None])[..., 0]
        res = angle[rows] - np.einsum('wni,wi->wn', reg, beta)
        return float(np.sum(res * res))

    return _time_constant(sse, len(awa), MAX_WIND_DAMPING_S)


def simulate_roll(g: float, period: float, zeta: float, offset: float, roll0: np.ndarray,
                  rate0: np.ndarray, force: np.ndarray, dt: float = GRID_DT,
                  substeps: int = 4) -> np.ndarray:
    """Measured roll of Boat.step's heel oscillator over windows, driven by the sail force x
    side-force coefficient. g is heel_gain / w^2 (the steady heel per unit force); the
    IMU's roll offset is added to what it measures."""
    w = 2.0 * math.pi / period
    w2 = w * w
    h = dt / substeps
    n = force.shape[1]
    out = np.empty(force.shape)
    phi = roll0 - offset
    rate = rate0.copy()
    out[:, 0] = roll0
    for k in range(n - 1):
        f = force[:, k]
        for _ in range(substeps):

            c = np.cos(phi)
            acc = -w2 * (g * f * c * c + np.sin(phi)) - 2.0 * zeta * w * rate
            rate = rate + acc * h
            phi = phi + rate * h
        out[:, k + 1] = phi + offset
    return out


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class _Free:
    """One fitted parameter: its name, log or linear, start value and bounds (physical)."""

    name: str
    log: bool
    start: float
    low: float
    high: float

    def to_x(self, value: float) -> float:
        return math.log(value) if self.log else value

    def from_x(self, x: float) -> float:
        return math.exp(x) if self.log else x

    def bounds(self) -> tuple[float, float]:
        return ((math.log(self.low), math.log(self.high)) if self.log
                else (self.low, self.high))


@dataclass
class FitResult:
    values: dict[str, float]
    std: dict[str, float]  # absolute, physical units
    cost: float
    residual_rms: float


def _least_squares(free: list[_Free], residuals: Callable[[dict[str, float]], np.ndarray],
                   cluster: int, reweight: int = 0) -> FitResult:
    """least_squares over the free parameters; std by the window-clustered sandwich.

    residuals(values) returns a flat vector made of `cluster`-long blocks (one per window
    or recording) whose errors are correlated within and independent between blocks.
    With `reweight`, that many more passes weigh each block by the inverse of its own
    residual RMS (floored at the median): a window where the sea, not the rudder, turned
    the boat (and the helmsman's rudder answered the sea) counts less. Weighted least
    squares for errors whose size differs from window to window, not a hand-made optimiser.
    """
    from scipy.optimize import least_squares

    weights = None

    def fun(x: np.ndarray) -> np.ndarray:
        r = residuals({f.name: f.from_x(v) for f, v in zip(free, x, strict=True)})
        if weights is not None:
            r = (r.reshape(-1, cluster) * weights[:, None]).ravel()
        return r

    x0 = np.array([min(max(f.to_x(f.start), f.bounds()[0] + 1e-6), f.bounds()[1] - 1e-6)
                   for f in free])
    lo = np.array([f.bounds()[0] for f in free])
    hi = np.array([f.bounds()[1] for f in free])
    if reweight:  # the first weights from the start values (the size-scaled boat)
        weights = _block_weights(residuals({f.name: f.start for f in free}), cluster)
    for _ in range(reweight + 1):
        res = least_squares(fun, x0, bounds=(lo, hi), x_scale='jac', method='trf',
                            diff_step=1e-4, max_nfev=200)
        x0 = res.x
        if reweight:
            weights = _block_weights(
                residuals({f.name: f.from_x(v) for f, v in zip(free, res.x, strict=True)}),
                cluster)
    values = {f.name: f.from_x(v) for f, v in zip(free, res.x, strict=True)}
    jac = res.jac
    r = res.fun
    blocks = max(1, len(r) // cluster)
    j3 = jac[:blocks * cluster].reshape(blocks, cluster, -1)
    r2 = r[:blocks * cluster].reshape(blocks, cluster)
    score = np.einsum('bcp,bc->bp', j3, r2)
    bread = np.linalg.pinv(jac.T @ jac)
    meat = score.T @ score * blocks / max(1, blocks - len(free))
    cov = bread @ meat @ bread
    std = {}
    for i, f in enumerate(free):
        s = math.sqrt(max(cov[i, i], 0.0))
        std[f.name] = values[f.name] * s if f.log else s
    return FitResult(values, std, float(res.cost),
                     float(np.sqrt(np.mean(r * r))) if len(r) else math.nan)


def _block_weights(raw: np.ndarray, cluster: int) -> np.ndarray:
    """1 for blocks with a residual RMS up to the lower quartile q, (q / RMS)^4 above it: a
    redescending weight, so the windows where waves turned the boat (and the helmsman's
    rudder answered them in advance, which would read as a weak rudder) hardly count.
    Measured on the held-out boats (bench/bench_identify.py): the median and a square left
    the yaw damping 20-45 % high; this leaves it within ~10 %."""
    rms = np.sqrt(np.mean(raw.reshape(-1, cluster) ** 2, axis=1))
    q = float(np.percentile(rms, 25))
    return (q / np.maximum(rms, max(q, 1e-12))) ** 4


def _windows(tracks: Sequence[Track], length_s: float, stride_s: float | None = None
             ) -> list[tuple[Track, np.ndarray]]:
    """Per track, the start indices of windows lying wholly on valid grid points."""
    n = int(round(length_s / GRID_DT))
    stride = int(round((stride_s or length_s) / GRID_DT))
    out = []
    for tr in tracks:
        bad = np.concatenate(([0], np.cumsum(~tr.valid)))
        starts = np.arange(0, len(tr.t) - n, stride)
        ok = bad[starts + n + 1] - bad[starts] == 0 if len(starts) else starts.astype(bool)
        out.append((tr, starts[ok]))
    return out


def start_rate(tr: Track, starts: np.ndarray) -> np.ndarray:
    """The turn rate each window (or free simulation) starts from: the gyro averaged over
    +-START_RATE_S. One reading's noise is not the boat's turn: started from it, the yaw fit
    read a noisy gyro as damping (it forgets a wrong start faster): laggy_instruments'
    doubled noise at 5 Hz gave +68 % damping at 3 m/s, +7 % with this average."""
    half = int(round(START_RATE_S / GRID_DT))
    csum = np.concatenate(([0.0], np.cumsum(tr.rate)))
    lo = np.maximum(starts - half, 0)
    hi = np.minimum(starts + half + 1, len(tr.rate))
    return (csum[hi] - csum[lo]) / (hi - lo)


def _stack(wins: list[tuple[Track, np.ndarray]], n: int, attr: str) -> np.ndarray:
    rows = [getattr(tr, attr)[starts[:, None] + np.arange(n + 1)] for tr, starts in wins
            if len(starts)]
    return np.concatenate(rows) if rows else np.zeros((0, n + 1))


# --------------------------------------------------------------------------- results


@dataclass
class ParamResult:
    """One BoatParams field as identification leaves it."""

    name: str
    value: float
    std: float = math.nan
    identified: bool = False
    how: str = ''

    def plain(self) -> dict:
        out: dict[str, Any] = {'value': _round(self.value),
                               'identified': bool(self.identified), 'how': self.how}
        if math.isfinite(self.std):
            out['std'] = _round(self.std)
            if self.value:
                out['relative_std'] = _round(abs(self.std / self.value), 3)
        return out


@dataclass
class Evaluation:
    """Prediction errors on the held-out recording, per predictor."""

    recording: str
    seconds: float
    rate_rms: dict[str, float]  # rad/s, turn rate RATE_AHEAD_S ahead
    heading_rms: dict[float, dict[str, float]]  # horizon -> predictor -> rad
    starts: int
    trace: dict[str, np.ndarray] = field(default_factory=dict)


PREDICTORS = ('model', 'constant turn rate', 'keeps heading')


@dataclass
class Identification:
    """What `identify` found: the boat, every parameter's provenance, the check, warnings."""

    spec: BoatSpec
    params: dict[str, ParamResult]
    warnings: list[str]
    evaluation: Evaluation | None
    disturbance: list[dict]
    instruments: dict[str, Any]
    recordings: list[str]
    fit_seconds: float
    extras: dict[str, Any] = field(default_factory=dict)

    def identified_block(self) -> dict:
        """The boat file's `identified:` block: plain data for people."""
        ev = self.evaluation
        block: dict[str, Any] = {
            'tool': 'autopilot-train identify',
            'recordings': list(self.recordings),
            'fit_seconds': _round(self.fit_seconds, 1),
            'params': {name: pr.plain() for name, pr in self.params.items()},
            'instruments': _plain(self.instruments),
            'disturbance': _plain(self.disturbance),
            'extras': _plain(self.extras),
            'warnings': list(self.warnings),
        }
        if ev is not None:
            block['holdout'] = {
                'recording': ev.recording, 'seconds': _round(ev.seconds, 1),
                'restarts': ev.starts,
                f'turn_rate_rms_deg_s_{RATE_AHEAD_S:g}s_ahead': {
                    k: _round(math.degrees(v), 3) for k, v in ev.rate_rms.items()},
                **{f'heading_rms_deg_{h:g}s': {k: _round(math.degrees(v), 2)
                                               for k, v in ev.heading_rms[h].items()}
                   for h in HORIZONS_S}}
        return block


def _round(x: float, digits: int = 5) -> float:
    if not math.isfinite(x):
        return float(x)
    if x == 0:
        return 0.0
    return float(f'{x:.{digits}g}')


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return _round(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    return obj


# --------------------------------------------------------------------------- the parts


def _fit_speed(tracks: Sequence[Track], prior: BoatParams, warnings: list[str],
               length: float | None) -> tuple[dict[str, ParamResult], float]:
    """Hull speed and speed lag: the polar's target against the log, by output error."""
    pieces = []
    for tr in tracks:
        twa, tws = true_wind_np(tr.awa, tr.aws, tr.speed)
        base = polar_shape(tws, twa) * (1.0 - prior.rudder_drag * tr.rudder ** 2)
        base *= np.clip(1.0 - np.maximum(np.abs(tr.roll) - 0.4, 0.0), 0.0, None)
        pieces.append((base, tr.speed, tr.valid))
    all_speed = np.concatenate([tr.speed[tr.valid] for tr in tracks])
    spread = float(np.percentile(all_speed, 90) - np.percentile(all_speed, 10))
    base_all = np.concatenate([b[v] for b, _, v in pieces])
    usable = base_all > 0.2
    guess = (float(np.median(all_speed[usable] / base_all[usable])) if np.any(usable)
             else prior.hull_speed)
    free = [_Free('hull_speed', True, guess, 0.5, 20.0)]
    lag_identified = spread >= MIN_SPEED_SPREAD
    if lag_identified:
        free.append(_Free('speed_lag_s', True, prior.speed_lag_s, 0.5, 120.0))

    def residuals(v: dict[str, float]) -> np.ndarray:
        hs = v['hull_speed']
        lag = v.get('speed_lag_s', boat_params(length=_length_of(hs)).speed_lag_s
                    if length is None else prior.speed_lag_s)
        a = math.exp(-GRID_DT / lag)
        out = []
        for base, speed, valid in pieces:
            target = hs * base
            u = np.empty(len(speed))
            u[0] = speed[0]
            # First-order lag: scipy's lfilter runs the recursion in C.
            from scipy.signal import lfilter
            u[1:] = lfilter([1.0 - a], [1.0, -a], target[:-1], zi=[a * speed[0]])[0]
            out.append(np.where(valid, u - speed, 0.0))
        return np.concatenate(out)

    fit = _least_squares(free, residuals, cluster=int(round(60.0 / GRID_DT)))
    hs = fit.values['hull_speed']
    results = {'hull_speed': ParamResult('hull_speed', hs, fit.std['hull_speed'], True,
                                         'speed fit: the polar against the log')}
    boat_length = length if length is not None else _length_of(hs)
    if lag_identified:
        results['speed_lag_s'] = ParamResult('speed_lag_s', fit.values['speed_lag_s'],
                                             fit.std['speed_lag_s'], True,
                                             'speed fit: the log following the polar')
    else:
        warnings.append(f'the speed never varied much (10-90 % spread {spread:.2f} m/s, '
                        f'needs {MIN_SPEED_SPREAD} m/s): speed lag assumed, and yaw damping '
                        'base and per speed not separable (their size-scaled ratio assumed)')
    return results, boat_length


def _length_of(hull_speed: float) -> float:
    return min(60.0, max(1.0, (hull_speed / HULL_SPEED_PER_SQRT_M) ** 2))


def _fit_actuator(tracks: Sequence[Track], prior: BoatParams, warnings: list[str]
                  ) -> tuple[dict[str, ParamResult], dict[str, Any]]:
    """Rudder slew (and dead time) from the command against the measured rudder."""
    with_cmd = [tr for tr in tracks if tr.command is not None]
    if not with_cmd:
        warnings.append('no rudder command recorded (rudder_command, or a command in '
                        'autopilot/status): rudder slew assumed')
        return {}, {}
    max_rate = max(float(np.percentile(np.abs(np.diff(tr.rudder)) / GRID_DT, 99))
                   for tr in with_cmd)
    best = None
    for delay_steps in range(0, 6):
        def residuals(v: dict[str, float], d: int = delay_steps) -> np.ndarray:
            return np.concatenate([_actuator_residuals(tr, v['rudder_slew'], d)[0]
                                   for tr in with_cmd])
        free = [_Free('rudder_slew', True, max(prior.rudder_slew, max_rate), 0.01, 5.0)]
        fit = _least_squares(free, residuals, cluster=int(round(30.0 / GRID_DT)))
        if best is None or fit.cost < best[1].cost:
            best = (delay_steps, fit)
    delay_steps, fit = best
    slew = fit.values['rudder_slew']
    saturated = np.concatenate([_actuator_residuals(tr, slew, delay_steps)[1]
                                for tr in with_cmd])
    share = float(np.mean(saturated)) if len(saturated) else 0.0
    rudder_var = float(np.var(np.concatenate([tr.rudder[tr.valid] for tr in with_cmd])))
    explained = 1.0 - fit.residual_rms ** 2 / max(rudder_var, 1e-12)
    extras = {'rudder_dead_time_s': delay_steps * GRID_DT,
              'rudder_command_source': sorted({tr.command_source for tr in with_cmd}),
              'rudder_command_explains': explained,
              'rudder_slew_saturated_share': share}
    if explained < 0.5:
        warnings.append(f'the recorded command does not drive the rudder (it explains '
                        f'{explained:.0%} of its movement; hand steering?): rudder slew '
                        'assumed')
        return {}, extras
    if share < MIN_SATURATED_SHARE:
        warnings.append(f'the rudder never had to move as fast as it can ({share:.1%} of the '
                        f'time at the limit): rudder slew not identified, assumed at least '
                        f'the fastest seen ({max_rate:.2f}/s)')
        value = max(prior.rudder_slew, max_rate)
        return {'rudder_slew': ParamResult('rudder_slew', value, math.nan, False,
                                           'assumed: size-scaled, at least the fastest '
                                           'movement seen')}, extras
    return {'rudder_slew': ParamResult('rudder_slew', slew, fit.std['rudder_slew'], True,
                                       f'actuator fit: {extras["rudder_command_source"][0]} '
                                       'against the measured rudder')}, extras


def _actuator_residuals(tr: Track, slew: float, delay: int) -> tuple[np.ndarray, np.ndarray]:
    cmd = tr.command
    if delay:
        cmd = np.concatenate((np.full(delay, cmd[0]), cmd[:-delay]))
    step = slew * GRID_DT
    rud = np.empty(len(cmd))
    rud[0] = tr.rudder[0]
    sat = np.zeros(len(cmd), dtype=bool)
    for k in range(len(cmd) - 1):
        want = cmd[k] - rud[k]
        sat[k] = abs(want) > step
        rud[k + 1] = min(1.0, max(-1.0, rud[k] + min(step, max(-step, want))))
    return np.where(tr.valid, rud - tr.rudder, 0.0), sat[tr.valid]


def _static_heel(tracks: Sequence[Track], prior: BoatParams) -> FitResult:
    """The steady heel: sin(roll) = -g * sail force * side-force coefficient * cos^2(roll),
    g = heel_gain / w^2 (boat.py), on signals averaged over HEEL_AVERAGE_S, where the roll's
    own oscillation and the waves' rolling average out; with the IMU's roll offset."""
    m = int(round(HEEL_AVERAGE_S / GRID_DT))
    step = int(round(1.0 / GRID_DT))
    kernel = np.ones(m) / m
    pieces = []
    for tr in tracks:
        if len(tr.t) <= m:
            continue
        ok = np.convolve(tr.valid.astype(float), kernel, mode='valid') > 1.0 - 1e-9
        force = sail_np(tr.aws) * side_force_np(tr.awa)
        pieces.append((tr.roll, force, ok))
    block = int(round(60.0))

    def residuals(v: dict[str, float]) -> np.ndarray:
        out = []
        for roll, force, ok in pieces:
            phi = roll - v['roll_offset']
            lhs = np.convolve(np.sin(phi), kernel, mode='valid')
            rhs = -v['g'] * np.convolve(force * np.cos(phi) ** 2, kernel, mode='valid')
            out.append(np.where(ok, lhs - rhs, 0.0)[::step])
        r = np.concatenate(out) if out else np.zeros(0)
        return r[:len(r) // block * block] if len(r) >= block else r

    w2 = (2.0 * math.pi / prior.roll_period_s) ** 2
    g0 = prior.heel_gain / w2
    free = [_Free('g', True, g0, g0 / 50, g0 * 50), _Free('roll_offset', False, 0.0, -0.2, 0.2)]
    return _least_squares(free, residuals, cluster=block)


def _roll_dynamics(wins: list[tuple[Track, np.ndarray]], n: int, g: float, offset: float,
                   prior: BoatParams) -> FitResult | None:
    """Roll period and damping by output error of the roll oscillator over windows."""
    roll = _stack(wins, n, 'roll')
    if len(roll) < 5:
        return None
    rate = _stack(wins, n, 'roll_rate')
    force = sail_np(_stack(wins, n, 'aws')) * side_force_np(_stack(wins, n, 'awa'))
    free = [_Free('roll_period_s', True, prior.roll_period_s, 0.8, 15.0),
            _Free('roll_damping_ratio', True, prior.roll_damping_ratio, 0.03, 1.5)]

    def residuals(v: dict[str, float]) -> np.ndarray:
        pred = simulate_roll(g, v['roll_period_s'], v['roll_damping_ratio'], offset,
                             roll[:, 0], rate[:, 0], force)
        return (pred - roll)[:, 1:].ravel()

    return _least_squares(free, residuals, cluster=n, reweight=3)


def _fit_heel(tracks: Sequence[Track], prior: BoatParams, warnings: list[str]
              ) -> tuple[dict[str, ParamResult], float]:
    """Heel: the steady heel per unit of sail force (and the IMU's roll offset) from averaged
    signals (_static_heel), then roll period and damping by output error of the roll
    oscillator over windows, driven by the measured apparent wind."""
    if not all(tr.roll_known for tr in tracks):
        warnings.append('the IMU gives no roll: heel gain, roll period and damping and weather '
                        'helm assumed')
        return {}, 0.0
    all_roll = np.concatenate([tr.roll[tr.valid] for tr in tracks])
    roll_std = float(np.std(all_roll))
    if roll_std < MIN_ROLL_STD:
        warnings.append(f'no heel variation (roll std {math.degrees(roll_std):.1f} deg, needs '
                        f'{math.degrees(MIN_ROLL_STD):.1f}): heel gain and weather helm '
                        'assumed')
        return {}, 0.0
    static = _static_heel(tracks, prior)
    g, offset = static.values['g'], static.values['roll_offset']
    rel_g = static.std['g'] / g
    n = int(round(ROLL_WINDOW_S / GRID_DT))
    wins = _windows(tracks, ROLL_WINDOW_S)
    out: dict[str, ParamResult] = {}
    period, rel_p = prior.roll_period_s, 0.0
    whole = _roll_dynamics(wins, n, g, offset, prior)
    # The roll period is the boat's only if every sea state agrees on it: waves roll a boat
    # at their own encounter period, and a fit to one sea state finds that one.
    parts = [w for w in wins if len(w[1]) >= 5]
    if len(parts) < 2 and parts:  # one recording: its halves
        tr, starts = parts[0]
        parts = [(tr, starts[:len(starts) // 2]), (tr, starts[len(starts) // 2:])]
    periods = [f.values['roll_period_s'] for f in
               (_roll_dynamics([w], n, g, offset, prior) for w in parts) if f is not None]
    spread = max(periods) / min(periods) if len(periods) >= 2 else math.inf
    if whole is None:
        warnings.append('too few stretches of steady recording for the roll period and '
                        'damping: assumed')
    elif len(periods) < 2:
        warnings.append('too few steady stretches in each recording to check that they agree '
                        'on the roll period: roll period and damping assumed')
    elif spread > MAX_PERIOD_SPREAD:
        warnings.append(
            f'the roll period differs from recording to recording ({min(periods):.1f}-'
            f'{max(periods):.1f} s): the waves, not the boat, set the rolling; roll period and '
            'damping assumed (the steady heel is identified)')
    else:
        v, sd = whole.values, whole.std
        for name in ('roll_period_s', 'roll_damping_ratio'):
            rel = sd[name] / v[name]
            if rel <= REL_STD_WARN:
                out[name] = ParamResult(name, v[name], sd[name], True,
                                        'heel fit: the roll oscillation against the wind')
            else:
                warnings.append(f'{name} not identified (relative std {rel:.0%}): assumed')
        if 'roll_period_s' in out:
            period, rel_p = v['roll_period_s'], sd['roll_period_s'] / v['roll_period_s']
    if rel_g <= REL_STD_WARN:
        hg = g * (2.0 * math.pi / period) ** 2
        how = ('heel fit: the steady heel against the apparent wind'
               + ('' if 'roll_period_s' in out else ', with the assumed roll period'))
        out['heel_gain'] = ParamResult('heel_gain', hg, hg * math.hypot(rel_g, 2 * rel_p), True,
                                       how)
    else:
        warnings.append(f'heel_gain not identified (relative std {rel_g:.0%}): assumed')
    return out, offset


def _fit_yaw(tracks: Sequence[Track], prior: BoatParams, roll_offset: float,
             split_damping: bool, heel_ok: bool, warnings: list[str],
             say: Callable[[str], None] | None = None
             ) -> tuple[dict[str, ParamResult], dict[str, float]]:
    """The yaw model of Boat.step by output error over windows (see the module docstring)."""
    n = int(round(YAW_WINDOW_S / GRID_DT))
    wins = _windows(tracks, YAW_WINDOW_S)
    data = {a: _stack(wins, n, a) for a in ('heading', 'rate', 'rudder', 'speed', 'roll',
                                             'awa', 'aws')}
    if len(data['heading']) < 10:
        raise IdentifyError(f'only {len(data["heading"])} stretches of {YAW_WINDOW_S:g} s with '
                            'every input fresh: the yaw fit needs at least 10')
    roll = data['roll'] - roll_offset
    downwind = downwind_term(data['awa'], data['aws'])
    all_awa = np.concatenate([tr.awa[tr.valid] for tr in tracks])
    downwind_s = float(np.count_nonzero(np.abs(all_awa) > math.pi / 2)) * GRID_DT
    rudder_std = float(np.std(np.concatenate([tr.rudder[tr.valid] for tr in tracks])))
    if rudder_std < MIN_RUDDER_STD:
        warnings.append(f'the rudder never moved much (std {rudder_std:.3f}, needs '
                        f'{MIN_RUDDER_STD}): rudder gain and yaw damping poorly identified')
    fixed = {'min_flow_speed': prior.min_flow_speed, 'rudder_stall': prior.rudder_stall,
             'weather_helm': prior.weather_helm, 'downwind_helm': prior.downwind_helm,
             'yaw_damping_base': prior.yaw_damping_base,
             'yaw_damping_per_speed': prior.yaw_damping_per_speed, 'rudder_offset': 0.0,
             'compass_lag_s': 0.0}
    free = [_Free('rudder_gain', True, prior.rudder_gain, prior.rudder_gain / 30,
                  prior.rudder_gain * 30)]
    if split_damping:
        free += [_Free('yaw_damping_base', True, prior.yaw_damping_base, 1e-3, 5.0),
                 _Free('yaw_damping_per_speed', True, prior.yaw_damping_per_speed, 1e-3, 5.0)]
    else:
        free.append(_Free('damping_scale', True, 1.0, 0.05, 20.0))
    if heel_ok:
        free.append(_Free('weather_helm', False, prior.weather_helm, 0.0, 5.0))
    if downwind_s >= MIN_DOWNWIND_S:
        free.append(_Free('downwind_helm', False, prior.downwind_helm, 0.0, 2.0))
    else:
        warnings.append(f'never downwind for long ({downwind_s:.0f} s with the apparent wind '
                        f'abaft the beam, needs {MIN_DOWNWIND_S:.0f}): downwind helm assumed')
    free.append(_Free('rudder_offset', False, 0.0, -0.3, 0.3))
    fixed['compass_lag_s'], lag_std = fit_compass_lag(data['heading'], data['rate'])
    if not lag_std <= COMPASS_LAG_STD_WARN:
        warnings.append(f'compass lag {fixed["compass_lag_s"]:.2f} s +- {lag_std:.2f}: poorly '
                        'identified: the boat turned little (courses changed, and '
                        'rough water, would pin it down)')

    def params_of(v: dict[str, float]) -> dict[str, float]:
        p = {**fixed, **v}
        if 'damping_scale' in v:
            p['yaw_damping_base'] = prior.yaw_damping_base * v['damping_scale']
            p['yaw_damping_per_speed'] = prior.yaw_damping_per_speed * v['damping_scale']
        return p

    r0 = np.concatenate([start_rate(tr, starts) for tr, starts in wins if len(starts)])

    def residuals(v: dict[str, float]) -> np.ndarray:
        h, r = simulate_yaw(params_of(v), data['heading'][:, 0], r0,
                            data['rudder'], data['speed'], roll, downwind)
        lag = fixed['compass_lag_s']
        h = compass_view(h + lag * r0[:, None], r0, lag)
        # The window's start heading is one compass reading, noisy: its offset is fitted
        # per window (projected out), so the compass's noise cannot pose as damping.
        dh = h - data['heading']
        dh -= dh.mean(axis=1, keepdims=True)
        e = np.concatenate((dh[:, 1:], RATE_WEIGHT_S * (r - data['rate'])[:, 1:]), axis=1)
        return e.ravel()

    # Several starts: the reweighted fit can settle where a weak rudder and strong damping
    # explain the wave-tossed windows. Each start's result is judged by the lower quartile
    # of the window RMS (the calm windows the weights are built around), which no start's
    # weights decide; on light_racer the median picked a rudder gain 37 % low, this 3 %.
    best = None
    for i, (gain_x, damp_x) in enumerate(MULTI_START):
        if say is not None:
            say(f'  yaw fit, start {i + 1}/{len(MULTI_START)} ({len(data["heading"])} windows)')
        starts = [replace(f, start=f.start * (gain_x if f.name == 'rudder_gain' else damp_x
                                              if 'damping' in f.name else 1.0))
                  for f in free]
        fit = _least_squares(starts, residuals, cluster=2 * n, reweight=3)
        raw = residuals(fit.values).reshape(-1, 2 * n)
        score = float(np.percentile(np.sqrt(np.mean(raw * raw, axis=1)), 25))
        if best is None or score < best[0]:
            best = (score, fit)
    fit = best[1]
    p = params_of(fit.values)
    out = {}
    for f in free:
        name = f.name
        if name == 'rudder_offset':
            continue
        if name == 'damping_scale':
            scale, sd = fit.values[name], fit.std[name]
            for key in ('yaw_damping_base', 'yaw_damping_per_speed'):
                out[key] = ParamResult(key, p[key], p[key] * sd / scale, True,
                                       'yaw fit (scaled together: their ratio is assumed)')
            continue
        out[name] = ParamResult(name, p[name], fit.std[name], True, 'yaw fit')
    extras = {'compass_lag_s': fixed['compass_lag_s'], 'compass_lag_s_std': lag_std,
              'rudder_sensor_offset': fit.values['rudder_offset'],
              'rudder_sensor_offset_std': fit.std['rudder_offset'],
              'yaw_windows': len(data['heading'])}
    return out, {**p, **extras}


def _disturbance(tr: Track, p: dict[str, float], roll_offset: float) -> dict[str, float]:
    """What the yaw model cannot explain on one recording, and how gusty the wind was."""
    k = int(round(RATE_AHEAD_S / GRID_DT))
    idx = np.flatnonzero(tr.valid[:-k] & tr.valid[k:])
    out: dict[str, float] = {'recording': tr.name, 'seconds': tr.seconds}
    if len(idx) > 10:
        _, r = _predict(tr, p, roll_offset, idx, k)
        err = r[:, -1] - tr.rate[idx + k]
        out['unexplained_yaw_accel_rms'] = float(np.sqrt(np.mean(err * err)) / RATE_AHEAD_S)
    twa, tws = true_wind_np(tr.awa, tr.aws, tr.speed)
    m = int(round(2.0 / GRID_DT))
    smooth = np.convolve(tws, np.ones(m) / m, mode='valid')
    out['mean_tws'] = float(np.mean(tws))
    out['gust_level'] = float(np.std(smooth) / max(np.mean(smooth), 1e-6))
    return out


def _predict(tr: Track, p: dict[str, float], roll_offset: float, starts: np.ndarray,
             n: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's free simulation from each start: (what the compass will read, turn
    rate). The start is the measured heading, which a damped compass reads late."""
    idx = starts[:, None] + np.arange(n + 1)
    lag = p.get('compass_lag_s', 0.0)
    r0 = start_rate(tr, starts)
    h, r = simulate_yaw(p, tr.heading[starts] + lag * r0, r0, tr.rudder[idx],
                        tr.speed[idx], tr.roll[idx] - roll_offset,
                        downwind_term(tr.awa[idx], tr.aws[idx]))
    return compass_view(h, r0, lag), r


def evaluate(tr: Track, p: dict[str, float], roll_offset: float = 0.0) -> Evaluation:
    """The model against the naive predictors on a recording it did not fit."""
    k = int(round(RATE_AHEAD_S / GRID_DT))
    idx = np.flatnonzero(tr.valid[:-k] & tr.valid[k:])
    _, r = _predict(tr, p, roll_offset, idx, k)
    truth = tr.rate[idx + k]
    rate_rms = {'model': _rms(r[:, -1] - truth), 'constant turn rate': _rms(tr.rate[idx] - truth),
                'keeps heading': _rms(truth)}
    heading_rms: dict[float, dict[str, float]] = {}
    starts_used = 0
    for horizon in HORIZONS_S:
        n = int(round(horizon / GRID_DT))
        wins = _windows([tr], horizon, RESTART_S)[0][1]
        if not len(wins):
            heading_rms[horizon] = {name: math.nan for name in PREDICTORS}
            continue
        h, _ = _predict(tr, p, roll_offset, wins, n)
        meas = tr.heading[wins[:, None] + np.arange(n + 1)]
        steps = np.arange(n + 1) * GRID_DT
        const = tr.heading[wins][:, None] + tr.rate[wins][:, None] * steps
        keep = np.repeat(tr.heading[wins][:, None], n + 1, axis=1)
        heading_rms[horizon] = {'model': _rms(h - meas), 'constant turn rate': _rms(const - meas),
                                'keeps heading': _rms(keep - meas)}
        starts_used = max(starts_used, len(wins))
    trace = _trace(tr, p, roll_offset)
    return Evaluation(tr.name, tr.seconds, rate_rms, heading_rms, starts_used, trace)


def _trace(tr: Track, p: dict[str, float], roll_offset: float) -> dict[str, np.ndarray]:
    """Measured heading and the 30 s free simulations back to back, for the plot."""
    n = int(round(HORIZONS_S[-1] / GRID_DT))
    wins = _windows([tr], HORIZONS_S[-1])[0][1]
    out = {'t': tr.t - tr.t[0], 'heading': tr.heading.copy(), 'model': np.full(len(tr.t), np.nan),
           'constant turn rate': np.full(len(tr.t), np.nan),
           'keeps heading': np.full(len(tr.t), np.nan), 'rudder': tr.rudder.copy()}
    if len(wins):
        h, _ = _predict(tr, p, roll_offset, wins, n)
        steps = np.arange(n + 1) * GRID_DT
        for i, s in enumerate(wins):
            sl = slice(s, s + n + 1)
            out['model'][sl] = h[i]
            out['constant turn rate'][sl] = tr.heading[s] + tr.rate[s] * steps
            out['keeps heading'][sl] = tr.heading[s]
    return out


def _rms(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.sqrt(np.mean(x * x))) if x.size else math.nan


# --------------------------------------------------------------------------- identify


def identifiable(recordings: Sequence[Any]) -> str:
    """'' when the recordings hold what `identify` needs (every input, enough seconds), else
    why not, in one line. Cheap (no fit): training asks it to suggest identifying the boat."""
    try:
        tracks = [track_of(r) for r in recordings]
        if not tracks:
            return 'no recordings'
        fit, check = split_holdout(tracks, None)
    except (IdentifyError, ValueError) as exc:  # a hint never stops training
        return str(exc)
    fit_s = sum(tr.seconds for tr in fit)
    if fit_s < MIN_FIT_S or check.seconds < MIN_HOLDOUT_S:
        return (f'{fit_s:.0f} s to fit and {check.seconds:.0f} s to check; identification '
                f'needs {MIN_FIT_S:.0f} s and {MIN_HOLDOUT_S:.0f} s')
    return ''


def split_holdout(tracks: list[Track], holdout: Track | None) -> tuple[list[Track], Track]:
    """The tracks to fit and the one to check on (see `identify`)."""
    if holdout is not None:
        return tracks, holdout
    if len(tracks) >= 2:
        return tracks[:-1], tracks[-1]
    tr = tracks[0]
    span = tr.t[-1] - tr.t[0]
    cut = 0.75 * span
    return ([tr.segment(0.0, cut, tr.name + ' (first 75 %)')],
            tr.segment(cut, span + GRID_DT, tr.name + ' (last 25 %)'))


def identify(recordings: Sequence[Any], holdout: Any | None = None,
             length: float | None = None, name: str = 'boat',
             progress: Callable[[str], None] | None = None) -> Identification:
    """Fit the simulator's boat model to recordings (training.bags.Recording objects).

    The check runs on `holdout` when given; otherwise on the last recording when there
    are two or more, or on the last 25 % of a single one. IdentifyError when the
    recordings cannot be used (a missing input, too little data).
    """
    say = progress or (lambda text: None)
    if not recordings:
        raise IdentifyError('no recordings to identify the boat from')
    if length is not None and not 1.0 <= length <= 60.0:
        raise IdentifyError(f"--length {length:g} m is not a yacht's waterline (1-60 m)")
    tracks = [track_of(r) for r in recordings]
    check = track_of(holdout) if holdout is not None else None
    fit_tracks, check = split_holdout(tracks, check)
    fit_s = sum(tr.seconds for tr in fit_tracks)
    if fit_s < MIN_FIT_S or check.seconds < MIN_HOLDOUT_S:
        total = fit_s + check.seconds
        raise IdentifyError(
            f'too short to fit: {fit_s:.0f} s to fit and {check.seconds:.0f} s to check '
            f'({total:.0f} s with every input recorded); identification needs at least '
            f'{MIN_FIT_S:.0f} s to fit and {MIN_HOLDOUT_S:.0f} s to check it on '
            f'({MIN_FIT_S + MIN_HOLDOUT_S:.0f} s in one bag, the last 25 % kept to check), '
            'better 20-30 minutes of varied sailing')
    say(f'identify: {len(fit_tracks)} recording(s), {fit_s:.0f} s to fit; checking on '
        f'{check.name} ({check.seconds:.0f} s)')
    warnings: list[str] = []
    results: dict[str, ParamResult] = {}

    say('identify: speed (hull speed, speed lag) ...')
    speed, boat_length = _fit_speed(
        fit_tracks, boat_params() if length is None else boat_params(length=length), warnings,
        length)
    results.update(speed)
    prior = boat_params(length=boat_length)
    lag_ok = 'speed_lag_s' in speed

    say('identify: rudder actuator (slew) ...')
    actuator, act_extras = _fit_actuator(fit_tracks, prior, warnings)
    results.update(actuator)

    say('identify: heel (heel gain, roll period, roll damping) ...')
    heel, roll_offset = _fit_heel(fit_tracks, prior, warnings)
    results.update(heel)
    heel_prior = prior
    if 'roll_period_s' in heel or 'roll_damping_ratio' in heel or 'heel_gain' in heel:
        heel_prior = replace(prior, **{k: v.value for k, v in heel.items()})

    say('identify: yaw (rudder gain, yaw damping, weather and downwind helm) ...')
    heel_ok = all(tr.roll_known for tr in fit_tracks) and float(np.std(np.concatenate(
        [tr.roll[tr.valid] for tr in fit_tracks]))) >= MIN_ROLL_STD
    yaw, p = _fit_yaw(fit_tracks, heel_prior, roll_offset, lag_ok, heel_ok, warnings, say)
    split_rel = [yaw[k].std / yaw[k].value for k in ('yaw_damping_base', 'yaw_damping_per_speed')
                 if k in yaw and yaw[k].value > 0]
    if lag_ok and max(split_rel, default=0.0) > REL_STD_WARN:
        # The speeds varied, but not enough to tell the two apart: fit their sum at the
        # recorded speeds (one scale on the size-scaled pair) rather than report a split
        # that is noise.
        warnings.append(
            f'yaw damping base and per speed not separable in these recordings (relative std '
            f'{max(split_rel):.0%}): fitted together, their size-scaled ratio assumed; more '
            'speeds (light and strong wind) would separate them')
        say('identify: yaw again, the two dampings together ...')
        yaw, p = _fit_yaw(fit_tracks, heel_prior, roll_offset, False, heel_ok, [], say)
    results.update(yaw)

    for key, pr in results.items():
        if pr.identified and math.isfinite(pr.std) and pr.value and \
                abs(pr.std / pr.value) > REL_STD_WARN and key not in ('weather_helm',
                                                                       'downwind_helm'):
            warnings.append(f'{key}: relative std {abs(pr.std / pr.value):.0%} (above '
                            f'{REL_STD_WARN:.0%}): poorly identified')
        if key in ('weather_helm', 'downwind_helm') and pr.identified and \
                math.isfinite(pr.std) and pr.std > max(REL_STD_WARN * pr.value, 0.05):
            warnings.append(f'{key}: {pr.value:.2f} +- {pr.std:.2f}: poorly identified')

    values = {k: v.value for k, v in results.items()}
    params = replace(prior, **values)
    if length is None:
        how = 'from the identified hull speed (1.26 sqrt(length) m/s)'
    else:
        how = 'given (--length)'
    all_params: dict[str, ParamResult] = {}
    for f in fields(BoatParams):
        if f.name in results:
            all_params[f.name] = results[f.name]
        elif f.name == 'length':
            all_params[f.name] = ParamResult('length', params.length, math.nan, length is None,
                                             how)
        else:
            all_params[f.name] = ParamResult(
                f.name, float(getattr(params, f.name)), math.nan, False,
                f'assumed, not identified (size-scaled for {params.length:.1f} m)')

    say('identify: disturbance and instruments ...')
    wind_wins = _windows(fit_tracks, WIND_WINDOW_S)
    n_wind = int(round(WIND_WINDOW_S / GRID_DT))
    if sum(len(starts) for _, starts in wind_wins) >= 10:
        wind_damping, wind_std = fit_wind_damping(_stack(wind_wins, n_wind, 'awa'),
                                                  _stack(wind_wins, n_wind, 'rate'))
        if wind_damping >= 0.95 * MAX_WIND_DAMPING_S:  # at the bound: nothing was found
            warnings.append(f'wind instrument damping not identified (the search ended at '
                            f'its bound, {MAX_WIND_DAMPING_S:g} s: too few turns): assumed '
                            'none')
            wind_damping, wind_std = 0.0, math.nan
        elif not wind_std <= WIND_DAMPING_STD_WARN:
            warnings.append(f'wind instrument damping {wind_damping:.2f} s +- {wind_std:.2f}: '
                            'poorly identified (few turns against a steady wind)')
    else:
        wind_damping, wind_std = 0.0, math.nan
        warnings.append(f'wind instrument damping not identified (under 10 stretches of '
                        f'{WIND_WINDOW_S:g} s with every input fresh): assumed none')
    disturbance = [_disturbance(tr, p, roll_offset) for tr in fit_tracks]
    biases = [tr.gyro_bias_z for tr in tracks] + [tr.gyro_bias_x for tr in tracks]
    rates = {key: float(np.median([tr.rates_hz[key] for tr in tracks]))
             for key in tracks[0].rates_hz}
    sensors = replace(SensorConfig(), **{k: round(v, 2) for k, v in rates.items() if v > 0},
                      gyro_bias_std=min(0.1, float(np.sqrt(np.mean(np.square(biases))))),
                      compass_lag_s=p['compass_lag_s'], wind_damping_s=wind_damping,
                      imu_roll_offset=max(-0.3, min(0.3, roll_offset)))
    instruments = {**rates, 'gyro_bias_z_per_recording': [tr.gyro_bias_z for tr in tracks],
                   'imu_roll_offset': roll_offset, 'compass_lag_s': p['compass_lag_s'],
                   'compass_lag_s_std': p['compass_lag_s_std'],
                   'wind_damping_s': wind_damping, 'wind_damping_s_std': wind_std}

    say(f'identify: checking on {check.name} ...')
    evaluation = evaluate(check, p, roll_offset)
    extras = {**act_extras, 'design_heel_deg': design_heel_of(params),
              'imu_roll_offset': roll_offset,
              'yaw_model': {k: float(v) for k, v in p.items() if k in _YAW_KEYS},
              'rudder_sensor_offset': p['rudder_sensor_offset'],
              'rudder_sensor_offset_std': p['rudder_sensor_offset_std'],
              'yaw_windows': p['yaw_windows']}
    spec = BoatSpec(name=name, params=params, sensors=sensors,
                    traits={'length': params.length})
    return Identification(spec=spec, params=all_params, warnings=warnings,
                          evaluation=evaluation, disturbance=disturbance,
                          instruments=instruments,
                          recordings=[str(tr.name) for tr in fit_tracks],
                          fit_seconds=fit_s, extras=extras)


# --------------------------------------------------------------------------- reporting


def table(ident: Identification) -> str:
    """The short terminal table: the held-out errors per predictor."""
    ev = ident.evaluation
    if ev is None:
        return ''
    lines = [f'held-out: {ev.recording} ({ev.seconds:.0f} s, {ev.starts} restarts)',
             f'{"predictor":<20} {"rate 1 s deg/s":>14} '
             + ' '.join(f'{f"heading {h:g} s deg":>16}' for h in HORIZONS_S)]
    for name in PREDICTORS:
        lines.append(f'{name:<20} {math.degrees(ev.rate_rms[name]):>14.3f} '
                     + ' '.join(f'{math.degrees(ev.heading_rms[h][name]):>16.2f}'
                                for h in HORIZONS_S))
    return '\n'.join(lines)


def params_table(ident: Identification, truth: BoatParams | None = None) -> str:
    """Every parameter: value, std, identified or assumed (and the truth when known)."""
    head = f'{"parameter":<24} {"value":>10} {"std":>9}'
    if truth is not None:
        head += f' {"true":>10} {"error":>8}'
    lines = [head + '  how']
    for name, pr in ident.params.items():
        std = f'{pr.std:9.3g}' if math.isfinite(pr.std) else f'{"-":>9}'
        row = f'{name:<24} {pr.value:>10.4g} {std}'
        if truth is not None:
            tv = float(getattr(truth, name))
            err = f'{(pr.value - tv) / tv:+8.0%}' if tv else f'{pr.value - tv:+8.3f}'
            row += f' {tv:>10.4g} {err}'
        lines.append(row + '  ' + pr.how)
    return '\n'.join(lines)


def report_markdown(ident: Identification, yaml_name: str, png_name: str) -> str:
    ev = ident.evaluation
    out = [f'# {ident.spec.name}: identified from {len(ident.recordings)} recording(s)', '',
           f'Boat file: `{yaml_name}`. Fitted on {ident.fit_seconds:.0f} s: '
           + ', '.join(f'`{r}`' for r in ident.recordings) + '.', '']
    if ev is not None:
        out += ['## Prediction on a recording the fit did not use', '',
                f'`{ev.recording}`, {ev.seconds:.0f} s; free simulations restarted every '
                f'{RESTART_S:g} s from the measured heading and turn rate, driven by the '
                'measured rudder, speed, heel and wind.', '',
                '| predictor | turn rate 1 s ahead, deg/s | '
                + ' | '.join(f'heading {h:g} s, deg RMS' for h in HORIZONS_S) + ' |',
                '|---|---|' + '---|' * len(HORIZONS_S)]
        for name in PREDICTORS:
            out.append(f'| {name} | {math.degrees(ev.rate_rms[name]):.3f} | '
                       + ' | '.join(f'{math.degrees(ev.heading_rms[h][name]):.2f}'
                                    for h in HORIZONS_S) + ' |')
        out += ['', f'![measured and predicted heading]({png_name})', '']
    out += ['## Parameters', '', '| parameter | value | std | identified | how |',
            '|---|---|---|---|---|']
    for name, pr in ident.params.items():
        std = f'{pr.std:.3g}' if math.isfinite(pr.std) else ''
        out.append(f'| {name} | {pr.value:.4g} | {std} | {"yes" if pr.identified else "no"} '
                   f'| {pr.how} |')
    out += ['', '## What the data could not identify', '']
    out += [f'- {w}' for w in ident.warnings] or ['- nothing: every fitted parameter is '
                                                  'within the relative std limit']
    out += ['', '## Disturbance per recording', '',
            '| recording | s | unexplained yaw accel RMS, deg/s^2 | gust level (TWS std/mean) |',
            '|---|---|---|---|']
    for d in ident.disturbance:
        acc = d.get('unexplained_yaw_accel_rms', math.nan)
        out.append(f'| {d["recording"]} | {d["seconds"]:.0f} | {math.degrees(acc):.3f} | '
                   f'{d["gust_level"]:.3f} |')
    inst = ident.instruments
    out += ['', '## Instruments', '',
            'Rates from the stamps: ' + ', '.join(
                f'{k} {inst[k]:.1f}' for k in ('imu_hz', 'heading_hz', 'wind_hz', 'speed_hz',
                                               'rudder_hz') if k in inst) + '. Gyro bias (z) '
            'per recording, deg/s: ' + ', '.join(
                f'{math.degrees(b):.3f}' for b in inst['gyro_bias_z_per_recording'])
            + f'. Compass lag (damping) {inst["compass_lag_s"]:.2f} s +- '
            f'{inst["compass_lag_s_std"]:.2f}, wind instrument damping '
            f'{inst["wind_damping_s"]:.2f} s +- {inst["wind_damping_s_std"]:.2f}, IMU roll '
            f'offset {math.degrees(inst["imu_roll_offset"]):.1f} deg (all fitted). The other '
            "instrument settings are the simulator's defaults.", '']
    return '\n'.join(out)


def plot(ident: Identification, path: str | Path) -> Path:
    """Measured vs predicted heading on the held-out recording, with the naive predictors."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ev = ident.evaluation
    tr = ev.trace if ev is not None else {}
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True,
                                  gridspec_kw={'height_ratios': (3, 1)})
    if tr:
        t = tr['t']
        ax.plot(t, np.degrees(tr['heading']), color='black', lw=1.4, label='measured')
        for key, style in (('model', dict(color='tab:blue', lw=1.2)),
                           ('constant turn rate', dict(color='tab:orange', lw=0.9, ls='--')),
                           ('keeps heading', dict(color='tab:green', lw=0.9, ls=':'))):
            ax.plot(t, np.degrees(tr[key]), label=f'{key} (free, {HORIZONS_S[-1]:g} s)',
                    **style)
        ax2.plot(t, tr['rudder'], color='tab:red', lw=0.8)
        low, high = np.degrees(np.nanmin(tr['heading'])), np.degrees(np.nanmax(tr['heading']))
        margin = max(10.0, 0.25 * (high - low))
        ax.set_ylim(low - margin, high + margin)  # a naive predictor may leave the plot
    ax.set_ylabel('heading, deg (unwrapped)')
    ax.set_title(f'{ident.spec.name}: held-out {ev.recording if ev else ""}')
    ax.legend(loc='best', fontsize=8)
    ax.grid(alpha=0.3)
    ax2.set_ylabel('rudder')
    ax2.set_xlabel('s')
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- the command


def run_identify(bags: Sequence[str], out: str | Path, holdout: str | None = None,
                 length: float | None = None, topic_map: Any = None, skip_bad: bool = False,
                 say: Callable[[str], None] = print) -> int:
    """`autopilot-train identify`: read the bags, fit, write the boat file and the report.

    BagError and IdentifyError propagate with their one message (the CLI prints it).
    """
    from autopilot_ros.sim.boat_file import save_boat_file
    from autopilot_ros.training.bags import read_bag, read_bags

    required = ('imu', 'heading', 'wind')  # rudder angle and speed: our own messages
    out = Path(out)
    name = out.stem
    say(f'identify: reading {", ".join(str(b) for b in bags)} ...')
    recordings = read_bags(bags, topic_map, required=required, skip_bad=skip_bad)
    check = None
    if holdout is not None:
        check = read_bag(holdout, topic_map, required=required)
        # The bag as a folder or as its storage file: either way it is not fitted on.
        same = Path(holdout).expanduser().resolve()
        targets = {same, same.parent} if same.is_file() else {same}
        recordings = [r for r in recordings if Path(r.path).resolve() not in targets]
        if not recordings:
            raise IdentifyError(f'--holdout {holdout} is the only recording: give other bags '
                                'to fit on')
    for rec in recordings + ([check] if check is not None else []):
        say(f'  {rec.summary()}')
        for warning in rec.warnings:
            say(f'  warning: {warning}')
    ident = identify(recordings, holdout=check, length=length, name=name, progress=say)
    md = out.with_name(f'{name}_fit.md')
    png = out.with_name(f'{name}_fit.png')
    comment = (f'Identified by autopilot-train identify from {len(ident.recordings)} '
               f'recording(s); report: {md.name}')
    save_boat_file(ident.spec, out, identified=ident.identified_block(), comment=comment)
    plot(ident, png)
    md.write_text(report_markdown(ident, out.name, png.name), encoding='utf-8')
    say('')
    say(params_table(ident))
    say('')
    say(table(ident))
    say('')
    for warning in ident.warnings:
        say(f'not identified: {warning}')
    say(f'wrote {out}, {md} and {png}; sail it with: autopilot-eval --boat {out}')
    return 0
