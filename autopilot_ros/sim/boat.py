"""A sailing yacht that is hard to steer for the reasons real boats are.

The model is a ~10 m cruising yacht reduced to the few effects a helmsman fights:

- Yaw is a first-order Nomoto model, r' = A(u) * (rudder + helm bias) - D(u) * r + N_waves.
  Rudder force is lift on a foil, so A grows with the square of the water speed over the
  blade (with a small floor: a drifting boat still turns a little). Yaw damping comes
  from the keel and hull moving sideways through the water, so it grows with speed too;
  the steady turn rate per unit rudder therefore grows with speed (a constant turning
  circle), as on a real boat. The blade stalls beyond ~25 degrees.
- Heel is a damped oscillator: righting moment ~ sin(roll), heeling moment from the sails'
  side force ~ AWS^2 * sin(AWA), depowered downwind, luffing in the no-go zone, reefed in
  strong wind (the moment saturates). A heeled hull is asymmetric and the sails' centre of
  effort moves outboard, so heel makes the boat luff up (weather helm); with the boom out
  downwind the sails alone turn the boat towards the wind.
- Speed follows a polar diagram of (TWS, |TWA|) with a first-order lag; rudder deflection,
  heavy heel and the no-go zone (below ~40 degrees TWA) cost speed, and a wave face
  pushes the boat along (surfing).
- The true wind gusts (filtered noise on TWS) and shifts (slow random walk on direction
  plus occasional fast step shifts). Direction is the compass direction it blows FROM.
- Waves are a few long-crested sinusoids around a mean direction. Their surface slope rolls
  and pitches the boat; a Froude-Krylov-like yaw moment, strongest on the quarter, yaws it;
  their orbital velocity at a crest moves with a following boat and steals flow from the
  rudder; on the face of a big quartering sea the boat is directionally unstable (it wants
  to broach). The encounter frequency comes out of the boat's own position, so following
  seas push for long seconds, which is what makes them hard.

Sign conventions follow docs/design.md: heading clockwise from north in [0, 2*pi); yaw rate > 0
turns to starboard; roll > 0 is starboard side down (REP-103); pitch > 0 is bow down;
rudder > 0 turns to starboard. All randomness comes from numpy Generators, so a seed fixes
the run.
"""

from dataclasses import dataclass, replace
import math

import numpy as np

from autopilot_ros.conventions import GRAVITY, apparent_wind, wrap_2pi, wrap_pi

# Fraction of hull speed reached per |TWA| (degrees): a generic cruiser's polar shape. The
# no-go zone is below ~40 degrees, where the sails luff and the speed collapses.
_POLAR_TWA_DEG = (0.0, 30.0, 38.0, 45.0, 52.0, 60.0, 75.0, 90.0, 110.0, 120.0, 135.0,
                  150.0, 165.0, 180.0)
_POLAR_FACTOR = (0.0, 0.03, 0.35, 0.66, 0.8, 0.88, 0.96, 1.0, 1.0, 0.97, 0.92, 0.85,
                 0.78, 0.74)
_POLAR_TWA = tuple(math.radians(a) for a in _POLAR_TWA_DEG)


def polar_speed(tws: float, twa: float, hull_speed: float = 4.0) -> float:
    """Target speed through water (m/s) for a true wind speed and angle.

    Speed saturates at hull speed (tanh in TWS: light air is slow, a gale is no faster)
    and depends on |TWA| through the table above.
    """
    a = min(abs(wrap_pi(twa)), math.pi)
    i = 1
    while i < len(_POLAR_TWA) - 1 and _POLAR_TWA[i] < a:
        i += 1
    a0, a1 = _POLAR_TWA[i - 1], _POLAR_TWA[i]
    f0, f1 = _POLAR_FACTOR[i - 1], _POLAR_FACTOR[i]
    factor = f0 + (f1 - f0) * (a - a0) / (a1 - a0)
    return hull_speed * math.tanh(max(tws, 0.0) / 7.0) * factor


_EASE_FROM = math.radians(60.0)
_EASE_SCALE = (math.pi / 2) / (math.pi - _EASE_FROM)


def sail_force(aws: float, reef_wind: float) -> float:
    """Sail force scale ~ AWS^2, saturating as the crew reefs in strong wind."""
    return aws * aws / (1.0 + (aws / reef_wind) ** 2)


def side_force_coefficient(awa: float) -> float:
    """Signed heeling side-force shape: sin(AWA), depowered downwind and when luffing.

    Positive for wind from starboard; that force pushes the boat over to port (roll < 0).
    """
    a = abs(awa)
    coeff = math.sin(awa)
    if a > _EASE_FROM:
        # Sails eased as the boat bears away: the force turns into drive, not heel.
        coeff *= math.cos((a - _EASE_FROM) * _EASE_SCALE) ** 2
    if a < math.radians(28.0):
        x = max(0.0, (a - math.radians(12.0)) / math.radians(16.0))
        coeff *= x * x * (3.0 - 2.0 * x)  # luffing: the sail flogs, no force
    return coeff


@dataclass(frozen=True, slots=True)
class BoatParams:
    """Physical constants of the model yacht (SI units; rudder normalised to [-1, 1])."""

    length: float = 10.0  # waterline length (m): wave-length averaging
    beam: float = 3.4  # m: wave-roll averaging
    hull_speed: float = 4.0  # m/s (~8 kn)
    speed_lag_s: float = 7.0  # speed through water follows the polar with this lag
    rudder_gain: float = 0.017  # yaw accel (rad/s^2) per unit rudder per (m/s)^2 of flow
    min_flow_speed: float = 0.8  # m/s: floor so a slow boat still turns a little
    rudder_stall: float = 0.25  # lift loss at full deflection: eff = d - stall * d^3
    rudder_drag: float = 0.15  # fraction of speed lost at full rudder
    yaw_damping_base: float = 0.15  # 1/s
    yaw_damping_per_speed: float = 0.12  # 1/s per m/s
    weather_helm: float = 0.5  # equivalent rudder per rad of heel, towards the wind
    downwind_helm: float = 0.2  # equivalent rudder from eased sails at the reference wind
    rudder_slew: float = 0.25  # normalised units per second (~9 deg/s over +-35 deg)
    roll_period_s: float = 3.5
    roll_damping_ratio: float = 0.35  # sails damp roll heavily
    heel_gain: float = 0.03  # roll accel per unit sail force
    reef_wind: float = 10.0  # m/s AWS at which the sail force is half its unreefed value
    pitch_period_s: float = 2.5
    pitch_damping_ratio: float = 0.5
    wave_yaw_gain: float = 0.5  # yaw accel (rad/s^2) per unit of wave slope
    broach_gain: float = 0.8  # yaw accel per unit of surfing slope on the quarter
    surf_gain: float = 0.15  # share of g * slope that accelerates the boat down a face
    orbital_flow: float = 0.6  # share of the wave's orbital velocity the rudder loses


@dataclass(slots=True)
class BoatState:
    """True state of the boat; the simulator's ground truth."""

    heading: float = 0.0  # rad, clockwise from north, [0, 2*pi)
    yaw_rate: float = 0.0  # rad/s, > 0 turning to starboard
    speed: float = 0.0  # m/s through the water
    roll: float = 0.0  # rad, > 0 starboard side down
    roll_rate: float = 0.0
    pitch: float = 0.0  # rad, > 0 bow down
    pitch_rate: float = 0.0
    rudder: float = 0.0  # actual blade angle, normalised [-1, 1], > 0 turns to starboard
    time: float = 0.0  # s
    north: float = 0.0  # m, position (drives the wave encounter)
    east: float = 0.0
    surge_accel: float = 0.0  # m/s^2 along the bow, for the IMU
    heave_accel: float = 0.0  # m/s^2 up, for the IMU

    def copy(self) -> 'BoatState':
        return replace(self)


class BlockNormals:
    """Standard normals drawn in blocks: one Generator call per few thousand samples."""

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self._rng = rng
        self._block = block
        self._buf: list[float] = []
        self._i = 0

    def __call__(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self._rng.standard_normal(self._block).tolist()
            self._i = 0
        self._i += 1
        return self._buf[self._i - 1]


class NoiseRows:
    """Rows of scaled gaussian noise (one row per sample of a multi-channel sensor),
    drawn in blocks so a 50 Hz IMU costs one Generator call every few hundred samples."""

    def __init__(self, rng: np.random.Generator, scales: tuple[float, ...],
                 block: int = 512) -> None:
        self._rng = rng
        self._scales = np.asarray(scales, dtype=float)
        self._block = block
        self._rows: list[list[float]] = []
        self._i = 0

    def __call__(self) -> list[float]:
        if self._i >= len(self._rows):
            draw = self._rng.standard_normal((self._block, len(self._scales)))
            self._rows = (draw * self._scales).tolist()
            self._i = 0
        self._i += 1
        return self._rows[self._i - 1]


class WindModel:
    """True wind with gusts, lulls and shifts.

    TWS = mean * (1 + gust), the gust term an Ornstein-Uhlenbeck process (correlation
    time ~8 s, relative std `gust`) smoothed over ~1.5 s so gusts build rather than jump.
    Direction = mean + a slow OU walk (time constant ~3 min, std `shift`) + step shifts
    that arrive as a Poisson process (mean interval `step_interval_s`) and swing through in
    a few seconds, as when a cloud passes.
    """

    GUST_TAU_S = 8.0
    GUST_SMOOTH_S = 1.5
    WALK_TAU_S = 180.0
    STEP_SWING_RATE = 0.1  # rad/s while a step shift swings through

    def __init__(self, tws: float, wind_from: float, rng: np.random.Generator,
                 gust: float = 0.1, shift: float = math.radians(4.0),
                 step_shift: float = math.radians(10.0), step_interval_s: float = 75.0) -> None:
        self.mean_tws = tws
        self.mean_from = wind_from
        self.gust = gust
        self.shift = shift
        self.step_shift = step_shift
        self.step_interval_s = step_interval_s
        self._rng = rng
        self._normal = BlockNormals(rng)
        self._g1 = gust * rng.standard_normal()
        self._g2 = self._g1
        self._walk = shift * rng.standard_normal()
        self._step = 0.0
        self._step_target = 0.0
        self._t = 0.0
        self._next_step = self._draw_step_time()
        self.tws = max(0.0, tws * (1.0 + self._g2))
        self.wind_from = wrap_2pi(wind_from + self._walk)

    def _draw_step_time(self) -> float:
        if self.step_shift <= 0.0 or self.step_interval_s <= 0.0:
            return math.inf
        return self._t + float(self._rng.exponential(self.step_interval_s))

    def step(self, dt: float) -> None:
        normal = self._normal
        self._t += dt
        if self.gust > 0.0:
            tau = self.GUST_TAU_S
            self._g1 += (-self._g1 / tau * dt
                         + self.gust * math.sqrt(2.0 * dt / tau) * normal())
            self._g2 += (self._g1 - self._g2) * dt / self.GUST_SMOOTH_S
        if self.shift > 0.0:
            tau = self.WALK_TAU_S
            self._walk += (-self._walk / tau * dt
                           + self.shift * math.sqrt(2.0 * dt / tau) * normal())
        if self._t >= self._next_step:
            # Shifts come back more often than they wander further: mean-reverting steps.
            sign = -1.0 if self._rng.random() < 0.5 + 0.2 * math.tanh(
                self._step_target / max(self.step_shift, 1e-9)) else 1.0
            size = self.step_shift * (0.5 + 0.5 * self._rng.random())
            self._step_target += sign * size
            self._next_step = self._draw_step_time()
        diff = self._step_target - self._step
        swing = self.STEP_SWING_RATE * dt
        self._step += max(-swing, min(swing, diff))
        self.tws = max(0.0, self.mean_tws * (1.0 + self._g2))
        self.wind_from = wrap_2pi(self.mean_from + self._walk + self._step)


class WaveField:
    """Long-crested sea: a few sinusoids around a mean direction, amplitudes from Hs.

    Components spread in frequency around the peak (a rough JONSWAP shape) and by up to
    ~25 degrees in direction; sum(a_i^2) = Hs^2 / 8, so the significant height is Hs.
    Deep water: k = w^2 / g. Slopes are averaged over the hull (length for pitch and yaw,
    beam for roll), so short chop shakes a boat less than its slope suggests.
    """

    _FREQ_RATIOS = (0.75, 0.88, 1.0, 1.15, 1.35)
    _WEIGHTS = (0.45, 0.85, 1.0, 0.7, 0.4)
    _SPREAD_DEG = (-22.0, -9.0, 0.0, 11.0, 24.0)

    def __init__(self, height: float, period: float, wave_from: float,
                 rng: np.random.Generator, params: BoatParams) -> None:
        self.height = height
        self.period = period
        self.wave_from = wave_from
        wp = 2.0 * math.pi / max(period, 0.5)
        weights = np.array(self._WEIGHTS) * (1.0 + 0.15 * rng.standard_normal(5))
        weights = np.abs(weights)
        amps = weights * math.sqrt(height * height / 8.0 / float(np.sum(weights**2)))
        comps = []
        for i, ratio in enumerate(self._FREQ_RATIOS):
            w = wp * ratio * (1.0 + 0.03 * rng.standard_normal())
            k = w * w / GRAVITY
            theta = wave_from + math.radians(self._SPREAD_DEG[i] + 4.0 * rng.standard_normal())
            phase = float(rng.uniform(0.0, 2.0 * math.pi))
            dn, de = -math.cos(theta), -math.sin(theta)  # propagation (north, east)
            a = float(amps[i])
            len_att = 1.0 / (1.0 + (k * params.length / math.pi) ** 2)
            beam_att = 1.0 / (1.0 + (k * params.beam / math.pi) ** 2)
            comps.append((a, w, k, phase, dn, de, a * k * len_att, a * k * beam_att))
        self.components = tuple(comps) if height > 0.0 else ()

    def sample(self, t: float, north: float, east: float, heading: float,
               speed: float) -> tuple[float, float, float, float, float]:
        """Surface seen by the boat: (slope_fwd, slope_stbd, yaw_shape, orbital_fwd, heave_acc).

        slope_fwd > 0: the surface rises towards the bow. slope_stbd > 0: it rises to
        starboard. yaw_shape: the oscillating wave yaw moment per unit gain (> 0 turns to
        starboard), strongest for waves on the quarter (relative direction 120-170 deg).
        """
        cp, sp = math.cos(heading), math.sin(heading)
        sf = ss = yaw = orb = heave = 0.0
        sin, cos = math.sin, math.cos
        for a, w, k, phase, dn, de, akl, akb in self.components:
            ph = w * t - k * (dn * north + de * east) + phase
            s, c = sin(ph), cos(ph)
            pf = dn * cp + de * sp  # propagation along the bow
            ps = de * cp - dn * sp  # propagation to starboard
            sf += akl * s * pf
            ss += akb * s * ps
            orb += a * w * c * pf
            we = w - k * speed * pf  # encounter frequency
            heave -= a * we * we * c
            # Waves come from (-pf, -ps) relative to the bow: cos/sin of that angle.
            cr, sr = -pf, -ps
            gain = 0.45 - 0.59 * cr + 0.19 * cr * cr
            side = 3.0 * sr
            side = 1.0 if side > 1.0 else (-1.0 if side < -1.0 else side)
            # On the face of a wave from the starboard quarter (s < 0) the stern is pushed
            # down-wave and the bow rounds up towards the waves' side: a positive moment.
            yaw -= akl * s * gain * side
        return sf, ss, yaw, orb, heave

    def yaw_moment_forecast(self, t: float, north: float, east: float, heading: float,
                            speed: float, offsets: np.ndarray, params: BoatParams) -> np.ndarray:
        """Wave yaw acceleration (rad/s^2) at t + offsets, holding heading and speed.

        The vectorised twin of the yaw terms in Boat.step: what a helmsman who watches the
        sea sees coming. It includes the broaching tendency on quartering faces. Holding
        heading and speed, each component's phase advances at its encounter frequency.
        """
        if not self.components:
            return np.zeros(len(offsets), dtype=float)
        cp, sp = math.cos(heading), math.sin(heading)
        ph0, encounter, yaw_coef, slope_coef = [], [], [], []
        for _, w, k, phase, dn, de, akl, _ in self.components:
            pf = dn * cp + de * sp
            ps = de * cp - dn * sp
            ph0.append(w * t - k * (dn * north + de * east) + phase)
            encounter.append(w - k * speed * pf)
            side = max(-1.0, min(1.0, -3.0 * ps))
            yaw_coef.append(-akl * (0.45 + 0.59 * pf + 0.19 * pf * pf) * side)
            slope_coef.append(akl * pf)
        s = np.sin(np.multiply.outer(offsets, encounter) + np.asarray(ph0))
        yaw = s @ np.asarray(yaw_coef)
        slope_fwd = s @ np.asarray(slope_coef)
        broach = broach_shape(self.wave_from, heading) * np.maximum(0.0, -slope_fwd)
        return params.wave_yaw_gain * yaw + params.broach_gain * broach


def broach_shape(wave_from: float, heading: float) -> float:
    """Directional instability on a following face: > 0 turns to starboard.

    With the sea on the starboard quarter the stern is shoved down-wave and the boat
    rounds up to starboard, beam-on to the seas; dead downwind is an unstable balance (the
    moment grows with the deviation), beam and head seas give no broach.
    """
    rel = wrap_pi(wave_from - heading)
    return -math.sin(2.0 * rel) * max(0.0, -math.cos(rel))


class Boat:
    """The yacht: integrates its state one physics step at a time."""

    def __init__(self, state: BoatState, wind: WindModel, waves: WaveField,
                 params: BoatParams | None = None) -> None:
        self.params = params or BoatParams()
        self.state = state
        self.wind = wind
        self.waves = waves
        self.rudder_command = state.rudder
        p = self.params
        self._w_roll = 2.0 * math.pi / p.roll_period_s
        self._w_pitch = 2.0 * math.pi / p.pitch_period_s
        self._sail_ref = sail_force(12.0, p.reef_wind)
        self._consts = (
            p.rudder_slew, p.orbital_flow, p.min_flow_speed, p.rudder_gain, p.weather_helm,
            p.downwind_helm, p.reef_wind, p.wave_yaw_gain, p.broach_gain, p.yaw_damping_base,
            p.yaw_damping_per_speed, p.rudder_stall, p.heel_gain, p.roll_damping_ratio,
            p.pitch_damping_ratio, p.hull_speed, p.rudder_drag, p.speed_lag_s, p.surf_gain)
        # Last computed terms, for the expert helmsman's feel of the boat.
        self.last_authority = 0.0
        self.last_helm_bias = 0.0
        self.last_wave_yaw = 0.0
        self._update_terms()

    # -- forces a helmsman feels -------------------------------------------------------

    def rudder_authority(self, flow_speed: float) -> float:
        """Yaw acceleration (rad/s^2) per unit of effective rudder at this water flow."""
        p = self.params
        v = max(flow_speed, p.min_flow_speed)
        return p.rudder_gain * v * v

    def yaw_damping(self, speed: float) -> float:
        """1/s: hull and keel resist yawing more the faster they move."""
        p = self.params
        return p.yaw_damping_base + p.yaw_damping_per_speed * max(speed, 0.0)

    def helm_bias(self, roll: float, awa: float, aws: float) -> float:
        """Equivalent rudder the sails and heel apply; > 0 turns the boat to starboard.

        Heel (roll < 0 = port side down, wind from starboard) luffs the boat up towards the
        wind; so do eased sails downwind. A helmsman holds the opposite rudder.
        """
        p = self.params
        bias = -p.weather_helm * roll
        if abs(awa) > math.pi / 2:
            bias += (p.downwind_helm * sail_force(aws, p.reef_wind) / self._sail_ref
                     * math.sin(awa) * -math.cos(awa))
        return bias

    def stall(self, rudder: float) -> float:
        """Effective rudder after the blade's lift loss at large angles."""
        return rudder - self.params.rudder_stall * rudder * rudder * rudder

    def apparent_wind(self) -> tuple[float, float]:
        """(AWA, AWS) at the boat from the true wind and the speed through water."""
        st = self.state
        return apparent_wind(wrap_pi(self.wind.wind_from - st.heading), self.wind.tws,
                             st.speed)

    def true_wind(self) -> tuple[float, float]:
        """(TWA, TWS): TWA = wrap_pi(wind_from - heading)."""
        return wrap_pi(self.wind.wind_from - self.state.heading), self.wind.tws

    def wave_yaw_forecast(self, horizon_s: float = 2.0, dt: float = 0.1) -> np.ndarray:
        """Wave yaw acceleration (rad/s^2) from now to horizon_s, every dt.

        What a helmsman reads from the sea behind: the push of the next wave before it
        arrives. Heading and speed are held at their current values.
        """
        st = self.state
        offsets = np.arange(0.0, horizon_s + 1e-9, dt)
        return self.waves.yaw_moment_forecast(st.time, st.north, st.east, st.heading,
                                              st.speed, offsets, self.params)

    def _update_terms(self) -> None:
        st = self.state
        p = self.params
        sf, _, yaw, orb, _ = self.waves.sample(st.time, st.north, st.east, st.heading,
                                               st.speed)
        awa, aws = self.apparent_wind()
        self.last_authority = self.rudder_authority(st.speed - p.orbital_flow * orb)
        self.last_helm_bias = self.helm_bias(st.roll, awa, aws)
        self.last_wave_yaw = (p.wave_yaw_gain * yaw + p.broach_gain * max(0.0, -sf)
                              * broach_shape(self.waves.wave_from, st.heading))

    # -- integration -------------------------------------------------------------------

    def step(self, dt: float) -> None:
        """Advance the physics by dt seconds (semi-implicit Euler; keep dt <= ~0.05 s)."""
        (slew, orbital_flow, min_flow, rudder_gain, weather_helm, downwind_helm, reef_wind,
         wave_yaw_gain, broach_gain, damp0, damp1, stall, heel_gain, roll_damp, pitch_damp,
         hull_speed, rudder_drag, speed_lag, surf) = self._consts
        st = self.state
        wind = self.wind
        wind.step(dt)
        heading, r, u = st.heading, st.yaw_rate, st.speed
        roll, pitch = st.roll, st.pitch
        sin, cos = math.sin, math.cos

        twa = wrap_pi(wind.wind_from - heading)
        awa, aws = apparent_wind(twa, wind.tws, u)
        sf, ss, wyaw, orb, heave = self.waves.sample(st.time, st.north, st.east, heading, u)
        sail = aws * aws / (1.0 + (aws / reef_wind) ** 2)

        # Rudder actuator: slew-limited towards the command, clamped to its range.
        max_move = slew * dt
        rud = st.rudder + max(-max_move, min(max_move, self.rudder_command - st.rudder))
        rud = max(-1.0, min(1.0, rud))

        # Yaw (Nomoto, first order) with weather helm, waves and broaching.
        flow = u - orbital_flow * orb
        if flow < min_flow:
            flow = min_flow
        authority = rudder_gain * flow * flow
        bias = -weather_helm * roll
        if abs(awa) > 1.5707963267948966:
            bias += downwind_helm * sail / self._sail_ref * sin(awa) * -cos(awa)
        wave_yaw = wave_yaw_gain * wyaw
        if sf < 0.0:
            wave_yaw -= broach_gain * sf * broach_shape(self.waves.wave_from, heading)
        eff = rud - stall * rud * rud * rud
        r += (authority * (eff + bias) - (damp0 + damp1 * u) * r + wave_yaw) * dt
        heading = wrap_2pi(heading + r * dt)

        # Roll: sails' side force against the righting moment, plus the wave slope.
        wr = self._w_roll
        cr = cos(roll)
        heel = -heel_gain * sail * side_force_coefficient(awa) * cr * cr
        roll_acc = heel - wr * wr * (sin(roll) + ss) - 2.0 * roll_damp * wr * st.roll_rate
        roll_rate = st.roll_rate + roll_acc * dt
        roll = max(-1.4, min(1.4, roll + roll_rate * dt))

        # Pitch: follows the wave slope along the hull (bow up on a rising surface).
        wpi = self._w_pitch
        pitch_acc = wpi * wpi * (-sf - pitch) - 2.0 * pitch_damp * wpi * st.pitch_rate
        pitch_rate = st.pitch_rate + pitch_acc * dt
        pitch += pitch_rate * dt

        # Speed: lag towards the polar; rudder drag and heavy heel cost speed; a wave face
        # that slopes down towards the bow (sf < 0) surfs the boat forward.
        target = polar_speed(wind.tws, twa, hull_speed) * (1.0 - rudder_drag * rud * rud)
        excess_heel = abs(roll) - 0.4
        if excess_heel > 0.0:
            target *= max(0.0, 1.0 - excess_heel)
        surge = (target - u) / speed_lag - surf * GRAVITY * sf
        u = max(0.0, u + surge * dt)

        st.north += st.speed * cos(st.heading) * dt
        st.east += st.speed * sin(st.heading) * dt
        st.heading, st.yaw_rate, st.speed = heading, r, u
        st.roll, st.roll_rate, st.pitch, st.pitch_rate = roll, roll_rate, pitch, pitch_rate
        st.rudder = rud
        st.surge_accel = surge
        st.heave_accel = heave
        st.time += dt
        self.last_authority = authority
        self.last_helm_bias = bias
        self.last_wave_yaw = wave_yaw


def equilibrium_heel(awa: float, aws: float, params: BoatParams) -> float:
    """Steady heel (rad) for a wind, so a run starts settled rather than with a lurch."""
    wr2 = (2.0 * math.pi / params.roll_period_s) ** 2
    force = params.heel_gain * sail_force(aws, params.reef_wind) * side_force_coefficient(awa)
    roll = 0.0
    for _ in range(30):
        roll = -math.asin(max(-1.0, min(1.0, force * math.cos(roll) ** 2 / wr2)))
    return roll
