"""A demonstration helmsman: the steering a learned pilot should imitate.

A good helmsman does not wait for the heading to go wrong. They feel the weather helm
build with heel and hold it off; they see the next sea coming up under the quarter and
put the helm over before it lifts the stern; they know how much less the rudder bites at
low speed or on a crest. This helmsman does that with the simulator's truth: the true
heading, yaw rate and wind, the boat's current rudder authority and helm bias, and the
forecast of the wave yaw moment over the next ~1.5 s. It turns the heading error into a
desired turn rate, the turn rate error into a desired yaw acceleration, and solves the
yaw model for the rudder that delivers it after the helm bias and the coming wave.

People are not perfect: `imperfection` in [0, 1] scales a reaction delay, a slightly
wrong feel for the rudder, noisy perception and hands, and occasional inattention (the
helm held still for a few seconds). At 0 the helmsman is deterministic and exact.
"""

from collections import deque
from dataclasses import dataclass
import math

import numpy as np

from autopilot_ros.conventions import wrap_pi
from autopilot_ros.sim.simulator import Simulator, target_heading_for


@dataclass(frozen=True)
class HelmsmanSkill:
    """How the expert steers (gains) and how human they are at imperfection = 1."""

    heading_gain: float = 0.45  # 1/s: desired turn rate per rad of heading error
    max_turn_rate: float = math.radians(10.0)  # rad/s: how briskly they alter course
    turn_rate_margin: float = 0.95  # share of the boat's full-rudder turn rate they ask for
    rate_time_constant_s: float = 0.9  # how quickly they want the turn rate corrected
    anticipation_s: float = 0.8  # how far ahead they judge the boat's swing
    trim_gain: float = 0.02  # 1/s per rad: slow trim for what feel does not explain
    wave_lead_s: tuple[float, float] = (0.3, 1.5)  # look-ahead window for the next sea
    reaction_delay_s: float = 0.3
    authority_misjudgment: float = 0.12  # relative std, drawn once per helmsman
    heading_noise: float = math.radians(1.0)  # misjudged heading, drifts over ~2 s
    hand_noise: float = 0.03  # rudder, slowly varying
    inattention_per_min: float = 0.5  # how often they look away
    inattention_s: tuple[float, float] = (1.0, 2.5)


class ExpertHelmsman:
    """Steers a Simulator better than the PID pilot; one per run (it has memory), ~10 Hz."""

    def __init__(self, seed: int, imperfection: float = 1.0,
                 skill: HelmsmanSkill | None = None, rate_hz: float = 10.0) -> None:
        if not 0.0 <= imperfection <= 1.0:
            raise ValueError(f'imperfection must be in [0, 1], got {imperfection}')
        self.skill = skill or HelmsmanSkill()
        self.imperfection = imperfection
        self.rate_hz = rate_hz
        self._rng = np.random.default_rng(seed)
        sk, imp = self.skill, imperfection
        self._authority_scale = max(
            0.5, 1.0 + sk.authority_misjudgment * imp * float(self._rng.standard_normal()))
        delay_steps = int(round(sk.reaction_delay_s * imp * rate_hz))
        self._queue: deque[float] = deque([0.0] * delay_steps)
        self._hand = 0.0
        self._eye = 0.0
        self._trim = 0.0
        self._last_time: float | None = None
        self._last_output = 0.0
        self._inattentive_until = -math.inf
        self._next_lapse = self._draw_lapse(0.0)

    def _draw_lapse(self, now: float) -> float:
        rate = self.skill.inattention_per_min * self.imperfection / 60.0
        return now + float(self._rng.exponential(1.0 / rate)) if rate > 0.0 else math.inf

    def command(self, sim: Simulator, mode: str, target: float) -> float:
        """Rudder command in [-1, 1] for this moment (mode and target as in Scenario)."""
        sk, imp, rng = self.skill, self.imperfection, self._rng
        now = sim.time
        dt = 1.0 / self.rate_hz if self._last_time is None else max(now - self._last_time,
                                                                   1e-3)
        self._last_time = now
        if imp > 0.0:
            # Slowly wandering misjudgements of the heading (eyes) and the helm (hands).
            self._eye = self._ou(self._eye, sk.heading_noise * imp, 2.0, dt)
            self._hand = self._ou(self._hand, sk.hand_noise * imp, 1.0, dt)
        desired = self._steer(sim, mode, target, dt) + self._hand
        self._queue.append(max(-1.0, min(1.0, desired)))
        out = self._queue.popleft()
        if now >= self._next_lapse:
            lo, hi = sk.inattention_s
            self._inattentive_until = now + float(rng.uniform(lo, hi))
            self._next_lapse = self._draw_lapse(self._inattentive_until)
        if now < self._inattentive_until:
            return self._last_output  # looking at the sails: the helm stays where it was
        self._last_output = out
        return out

    def _ou(self, x: float, std: float, tau: float, dt: float) -> float:
        """One step of an Ornstein-Uhlenbeck process with stationary std and time tau."""
        theta = min(1.0, dt / tau)
        return x - theta * x + std * math.sqrt(2.0 * theta) * float(self._rng.standard_normal())

    def _steer(self, sim: Simulator, mode: str, target: float, dt: float) -> float:
        """The helmsman's judgement without human error (but with their misjudged heading).

        Heading error -> desired turn rate (saturating at what the boat can do now) ->
        desired yaw acceleration -> rudder, from the yaw model: r' = A (rudder + bias)
        - D r + wave. Closed loop (small errors): s^2 + s / tau + k / tau, a well-damped
        ~0.7 rad/s response that a slew-limited rudder can follow.
        """
        sk = self.skill
        boat = sim.boat
        st = boat.state
        twa, tws = boat.true_wind()
        goal = target_heading_for(mode, target, st.heading, twa, tws, st.speed)
        err = wrap_pi(goal - st.heading) + self._eye
        # Trim out what feel misses, but not during a big alteration of course.
        if abs(err) < math.radians(15.0):
            self._trim = max(-0.3, min(0.3, self._trim + sk.trim_gain * err * dt))
        authority = boat.last_authority * self._authority_scale
        damping = boat.yaw_damping(st.speed)
        peak = 1.0 - boat.params.rudder_stall
        r_max = min(sk.max_turn_rate, sk.turn_rate_margin * authority * peak / damping)
        forecast = boat.wave_yaw_forecast(sk.wave_lead_s[1], 0.1)
        lead = forecast[int(round(sk.wave_lead_s[0] / 0.1)):]
        wave = float(np.mean(lead)) if lead.size else 0.0
        # The rudder cannot be moved at once, so judge where the boat will be by the time
        # it has: with the helm held, yaw accelerates at acc_now for `anticipation_s`.
        rud = st.rudder
        acc_now = (authority * (rud - boat.params.rudder_stall * rud**3 + boat.last_helm_bias)
                   - damping * st.yaw_rate + float(forecast[0]))
        ahead = sk.anticipation_s
        r_pred = st.yaw_rate + acc_now * ahead
        err_pred = err - (st.yaw_rate + 0.5 * acc_now * ahead) * ahead
        r_des = r_max * math.tanh(sk.heading_gain * err_pred / r_max)
        acc_des = (r_des - r_pred) / sk.rate_time_constant_s
        needed = ((acc_des + damping * r_pred - wave) / authority
                  - boat.last_helm_bias + self._trim)
        return _invert_stall(needed, boat.params.rudder_stall)


def _invert_stall(effective: float, stall: float) -> float:
    """Rudder angle whose effective (stalled) deflection is `effective`, clamped to +-1."""
    peak = 1.0 - stall
    if abs(effective) >= peak:
        return math.copysign(1.0, effective)
    x = effective
    for _ in range(6):  # Newton on x - stall * x^3 = effective; monotonic on [-1, 1]
        x -= (x - stall * x**3 - effective) / (1.0 - 3.0 * stall * x * x)
    return max(-1.0, min(1.0, x))
