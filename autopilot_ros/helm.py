"""The helm page's pure core: who may press a button, what each button asks the pilot.

No rclpy and no web server here (helm_server.py serves the page, helm_node.py wires it to
the autopilot's services), so the rules a sailor relies on are tested on their own:
- the access token, compared in constant time, with a lockout after repeated misses;
- the keypad's nudges: + turns the boat to starboard in every mode, as on every
  autopilot keypad; in the wind modes that is a smaller wind angle (a sign flip);
- the tack: through the wind to the same angle on the other side, never a gybe;
- the JSON the page receives and the commands it may send.

Degrees and knots only in what a person reads; the JSON carries degrees and m/s with the
unit in every name.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import json
import math

from autopilot_ros.conventions import (
    MODES,
    true_wind,
    twa_for_awa,
    wrap_2pi,
    wrap_pi,
)

# A token a phone can guess in an evening is no lock: at one try a second (the lockout
# below) eight characters of digits alone take years.
MIN_TOKEN_LENGTH = 8
# The keypad: degrees to starboard (+) or port (-).
NUDGES = (-10, -1, 1, 10)
ACTIONS = ('engage', 'standby', 'nudge', 'tack')
# A tack mirrors the course about the true wind. Past this true wind angle the turn through
# the wind would be over 160 deg: the pilot steers the short way to a new target, and near
# 180 deg the short way can be the gybe. A gybe is not something a button should do.
TACK_MAX_TWA_DEG = 80.0
# Misses of the token from one address before that address is locked out, and for how long.
MAX_TOKEN_MISSES = 5
LOCKOUT_S = 60.0
MAX_MESSAGE_BYTES = 1024  # a command is a few dozen bytes; anything larger is refused
STATUS_STALE_S = 1.0  # no autopilot/status for this long: the page says the pilot is silent
SENSOR_STALE_S = 3.0  # the helm's own view of heading, wind, rudder and speed
KNOTS_PER_MS = 3600.0 / 1852.0


def token_problem(token: str) -> str | None:
    """Why `token` cannot unlock the helm, or None. An empty token means: view only."""
    if not token:
        return 'no access token configured: the page is view only'
    if len(token) < MIN_TOKEN_LENGTH:
        return (f'access token too short ({len(token)} characters, at least '
                f'{MIN_TOKEN_LENGTH}): the page is view only')
    if token != token.strip() or any(ord(c) < 32 for c in token):
        return 'access token has leading or trailing blanks or control characters'
    return None


def check_token(expected: str, given: object) -> bool:
    """True only for the configured token, compared in constant time.

    hmac.compare_digest takes as long for a near miss as for a wild one, so the reply time
    tells an attacker nothing about how much of a guess was right. No token configured
    (or an unusable one) unlocks nothing.
    """
    if not isinstance(given, str) or token_problem(expected) is not None:
        return False
    return hmac.compare_digest(expected.encode('utf-8'), given.encode('utf-8'))


class TokenGate:
    """The token check with a per-address lockout after `MAX_TOKEN_MISSES` misses.

    Per address, not global: a stranger on the wifi guessing must not lock the skipper out.
    """

    def __init__(self, token: str, max_misses: int = MAX_TOKEN_MISSES,
                 lockout_s: float = LOCKOUT_S) -> None:
        self._token = token
        self.problem = token_problem(token)
        self._max = max_misses
        self._lockout = lockout_s
        self._misses: dict[str, list[float]] = collections.defaultdict(list)
        self._locked_until: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        """Whether any command can ever be accepted (a usable token is configured)."""
        return self.problem is None

    def check(self, peer: str, given: object, now: float) -> tuple[bool, str]:
        """(accepted, why not) for one attempt from `peer` at monotonic time `now`."""
        if self.problem is not None:
            return False, self.problem
        until = self._locked_until.get(peer, 0.0)
        if now < until:
            return False, f'too many wrong tokens: locked for {until - now:.0f} s'
        if check_token(self._token, given):
            self._misses.pop(peer, None)
            return True, ''
        misses = [t for t in self._misses[peer] if now - t < self._lockout] + [now]
        self._misses[peer] = misses
        if len(misses) >= self._max:
            self._locked_until[peer] = now + self._lockout
            del self._misses[peer]
            return False, f'wrong token; too many: locked for {self._lockout:.0f} s'
        return False, 'wrong token'


@dataclasses.dataclass(frozen=True)
class Course:
    """What the pilot steers to: a mode and its target (radians, the mode's range)."""

    mode: str
    target: float


@dataclasses.dataclass(frozen=True)
class Wind:
    """What a tack needs to know of the wind: apparent angle and speed, speed through water."""

    awa: float  # rad, (-pi, pi], + = from starboard
    aws: float  # m/s
    stw: float | None  # m/s through the water; None when not known (then TWA = AWA)


class Refused(ValueError):
    """A button that cannot do what it says now, with the reason a sailor reads."""


def nudge(course: Course, degrees: float) -> Course:
    """The course after a keypad nudge of `degrees` to starboard (+) or port (-).

    Compass: the target heading grows (clockwise). Wind modes: turning to starboard brings
    a starboard wind (angle > 0) towards the bow and takes a port wind (angle < 0) aft, so
    the wind angle target always decreases by `degrees` (TWA = wind direction - heading).
    """
    if course.mode not in MODES or course.mode == 'standby':
        raise Refused('standby: engage first')
    if not math.isfinite(degrees) or degrees not in NUDGES:
        raise Refused(f'a nudge is one of {", ".join(f"{n:+d}" for n in NUDGES)} degrees')
    step = math.radians(degrees)
    if course.mode == 'compass':
        return Course('compass', wrap_2pi(course.target + step))
    return Course(course.mode, wrap_pi(course.target - step))


@dataclasses.dataclass(frozen=True)
class TackPlan:
    """A tack: the new course and what it means for the boat."""

    course: Course
    turn_deg: float  # + to starboard, - to port
    twa_deg: float  # the true wind angle the tack mirrors (at the old target)


def tack(course: Course, heading: float | None, wind: Wind | None) -> TackPlan:
    """Through the wind onto the other tack, at the same true wind angle.

    Compass mode: the true wind comes from D = heading + TWA, and the new target heading is
    the old one mirrored about it: target + 2 * wrap(D - target). On the boat's course that
    is heading + 2 * TWA, pypilot's rule with the true wind instead of the apparent (to
    mirror the true wind the boat turns 2 * TWA; 2 * AWA would fall short, AWA being
    smaller close-hauled). Without a speed through water TWA is taken as AWA.
    Wind modes: the target angle changes sign (45 deg from starboard becomes 45 deg from
    port), which the pilot then steers through the wind. Refused in standby, without wind,
    and when the wind at the target is more than `TACK_MAX_TWA_DEG` off the bow: that would
    be a gybe, not a tack.
    """
    if course.mode not in MODES or course.mode == 'standby':
        raise Refused('standby: engage first')
    if wind is None or not (math.isfinite(wind.awa) and math.isfinite(wind.aws)):
        raise Refused('no wind reading: cannot tell which way is through the wind')
    stw = wind.stw if wind.stw is not None and math.isfinite(wind.stw) else 0.0
    twa_now, tws = true_wind(wind.awa, wind.aws, stw)
    if course.mode == 'compass':
        if heading is None or not math.isfinite(heading):
            raise Refused('no heading: cannot tack')
        direction = heading + twa_now  # where the true wind comes from
        twa = wrap_pi(direction - course.target)
        new = Course('compass', wrap_2pi(course.target + 2.0 * twa))
        turn = 2.0 * twa
    else:
        twa = course.target if course.mode == 'wind_twa' \
            else twa_for_awa(course.target, tws, stw)
        new = Course(course.mode, wrap_pi(-course.target) if course.target != 0.0 else 0.0)
        turn = 2.0 * twa
    if abs(math.degrees(twa)) > TACK_MAX_TWA_DEG:
        raise Refused(f'the wind is {abs(math.degrees(twa)):.0f} deg off the bow on this '
                      f'course (tack limit {TACK_MAX_TWA_DEG:.0f}): turning through it would '
                      'be a gybe; steer it by hand')
    if abs(math.degrees(twa)) < 1.0:
        raise Refused('head to wind: no tack to mirror')
    return TackPlan(new, math.degrees(turn), math.degrees(twa))


def degrees_in_mode(course: Course) -> float:
    """The target as a sailor reads it: compass [0, 360), wind angle (-180, 180]."""
    deg = math.degrees(course.target)
    return deg % 360.0 if course.mode == 'compass' else deg


def describe(course: Course) -> str:
    """'compass 095' or 'wind_twa 45 stbd': the course as the page's result line says it."""
    if course.mode == 'standby':
        return 'standby'
    deg = degrees_in_mode(course)
    if course.mode == 'compass':
        return f'compass {deg:05.1f}'
    side = 'stbd' if deg > 0 else 'port' if deg < 0 else ''
    return f'{course.mode} {abs(deg):.0f} {side}'.rstrip()


# -- the page's commands ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Message:
    """One message from the page: an unlock attempt or a command (both carry the token)."""

    kind: str  # 'auth' or 'command'
    token: object
    action: str = ''
    degrees: float = 0.0
    id: int | None = None


def parse_message(raw: str | bytes) -> Message:
    """The page's message, or Refused with what was wrong (never anything else)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Refused(f'message over {MAX_MESSAGE_BYTES} bytes')
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refused('not JSON') from None
    if not isinstance(data, dict):
        raise Refused('not a JSON object')
    kind = data.get('type')
    ident = data.get('id')
    if ident is not None and (not isinstance(ident, int) or isinstance(ident, bool)):
        raise Refused('id must be an integer')
    if kind == 'auth':
        return Message('auth', data.get('token'), id=ident)
    if kind != 'command':
        raise Refused("type must be 'auth' or 'command'")
    action = data.get('action')
    if action not in ACTIONS:
        raise Refused(f'action must be one of {", ".join(ACTIONS)}')
    degrees = 0.0
    if action == 'nudge':
        degrees = data.get('degrees')
        if isinstance(degrees, bool) or not isinstance(degrees, (int, float)) \
                or degrees not in NUDGES:
            raise Refused(f'a nudge is one of {", ".join(f"{n:+d}" for n in NUDGES)} degrees')
    return Message('command', data.get('token'), action, float(degrees), ident)


# -- what the page shows ------------------------------------------------------------------
def _deg(value: float | None, wrap: str = '') -> float | None:
    """Degrees rounded for the page (JSON has no NaN: unknown is null)."""
    if value is None or not math.isfinite(value):
        return None
    deg = round(math.degrees(value), 2)  # round first: 359.999 is 000.0, not 360.0
    return deg % 360.0 if wrap == '360' else deg


def _num(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


@dataclasses.dataclass
class Reading:
    """A value and the monotonic time it arrived."""

    value: object
    at: float


class HelmState:
    """What the helm has heard, turned into the page's JSON; and the rolling history.

    Fed from the ROS callbacks (helm_node.py) and read by the server's broadcast loop; the
    caller holds a lock around both.
    """

    def __init__(self, history_s: float = 300.0, sample_period: float = 0.2) -> None:
        self.status: Reading | None = None  # dict of AutopilotStatus fields
        self.heading: Reading | None = None  # rad
        self.wind: Reading | None = None  # (awa rad, aws m/s)
        self.rudder: Reading | None = None  # normalised
        self.speed: Reading | None = None  # m/s through water
        self.history: collections.deque = collections.deque(
            maxlen=max(1, int(round(history_s / sample_period))))
        self.history_s = history_s
        self.commands_enabled = False
        self.last_result = ''  # the last accepted command, for every page to see

    def fresh(self, reading: Reading | None, now: float, limit: float) -> bool:
        return reading is not None and now - reading.at <= limit

    def course(self) -> Course | None:
        """The mode and target autopilot/status last said (None before any)."""
        if self.status is None:
            return None
        s = self.status.value
        return Course(s['mode'], s['target'])

    def wind_now(self, now: float) -> Wind | None:
        if not self.fresh(self.wind, now, SENSOR_STALE_S):
            return None
        awa, aws = self.wind.value
        stw = self.speed.value if self.fresh(self.speed, now, SENSOR_STALE_S) else None
        return Wind(awa, aws, stw)

    def heading_now(self, now: float) -> float | None:
        return self.heading.value if self.fresh(self.heading, now, SENSOR_STALE_S) else None

    def snapshot(self, now: float, wall: float) -> dict:
        """The page's view at monotonic `now` (ages) and wall time `wall` (the plot)."""
        alive = self.fresh(self.status, now, STATUS_STALE_S)
        s = self.status.value if self.status else {}
        mode = s.get('mode')
        heading = self.heading_now(now)
        wind = self.wind_now(now)
        rudder = self.rudder.value if self.fresh(self.rudder, now, SENSOR_STALE_S) else None
        speed = self.speed.value if self.fresh(self.speed, now, SENSOR_STALE_S) else None
        target = s.get('target')
        return {
            'type': 'state',
            't': round(wall, 3),
            'pilot_alive': alive,
            'status_age_s': None if self.status is None else round(now - self.status.at, 2),
            'mode': mode,
            'engaged': bool(s.get('engaged', False)),
            'target_deg': _deg(target, '360' if mode == 'compass' else ''),
            'target_heading_deg': _deg(s.get('target_heading'), '360'),
            'heading_deg': _deg(heading, '360'),
            'heading_error_deg': _deg(s.get('heading_error')),
            'command': _num(s.get('command')),
            'raw_command': _num(s.get('raw_command')),
            'rudder': _num(rudder),
            'policy': s.get('policy'),
            'reason': s.get('reason', ''),
            'model': s.get('model_path', ''),
            'stale_inputs': list(s.get('stale_inputs', ())),
            'awa_deg': None if wind is None else _deg(wind.awa),
            'aws_ms': None if wind is None else _num(wind.aws, 2),
            'stw_ms': _num(speed, 2),
            'commands_enabled': self.commands_enabled,
            'last_result': self.last_result,
        }

    def sample(self, now: float, wall: float) -> dict:
        """A snapshot, also kept as a point of the rolling plot."""
        snap = self.snapshot(now, wall)
        self.history.append(plot_point(snap))
        return snap

    def history_message(self) -> dict:
        """The last `history_s` of the plot, sent to a page when it connects."""
        return {'type': 'history', 'span_s': self.history_s, 'points': list(self.history)}


def _field(kind: str | list, description: str) -> dict:
    return {'type': kind, 'description': description}


# The page's state message as a JSON schema: the Foxglove channel's (helm_node
# `foxglove_port`), so Foxglove's panels know the fields and their units.
STATE_SCHEMA = {
    'type': 'object',
    'title': 'autopilot_ros.HelmState',
    'properties': {
        't': _field('number', 'wall time, s'),
        'pilot_alive': _field('boolean', 'autopilot/status heard within 1 s'),
        'status_age_s': _field(['number', 'null'], 's since the last autopilot/status'),
        'mode': _field(['string', 'null'], 'standby | compass | wind_awa | wind_twa'),
        'engaged': _field('boolean', 'the pilot drives the rudder'),
        'target_deg': _field(['number', 'null'], 'compass [0, 360) or wind angle, + stbd'),
        'target_heading_deg': _field(['number', 'null'], 'the target as a heading'),
        'heading_deg': _field(['number', 'null'], 'compass heading'),
        'heading_error_deg': _field(['number', 'null'], '+ needs starboard rudder'),
        'command': _field(['number', 'null'], 'rudder command, [-1, 1], + stbd'),
        'raw_command': _field(['number', 'null'], 'before the safety layer'),
        'rudder': _field(['number', 'null'], 'measured rudder, [-1, 1], + stbd'),
        'policy': _field(['string', 'null'], 'standby | model | pid'),
        'reason': _field(['string', 'null'], 'why the fallback or standby steers'),
        'model': _field(['string', 'null'], 'model file'),
        'stale_inputs': {'type': 'array', 'items': {'type': 'string'}},
        'awa_deg': _field(['number', 'null'], 'apparent wind angle, + from starboard'),
        'aws_ms': _field(['number', 'null'], 'apparent wind speed, m/s'),
        'stw_ms': _field(['number', 'null'], 'speed through water, m/s'),
        'commands_enabled': _field('boolean', 'an access token is configured'),
        'last_result': _field('string', 'the last accepted command'),
    },
}


def plot_point(snap: dict) -> list:
    """[t, heading error deg, command, measured rudder]: one point of the rolling plot."""
    return [snap['t'], snap['heading_error_deg'] if snap['engaged'] else None,
            snap['command'] if snap['pilot_alive'] else None, snap['rudder']]


def status_fields(mode: str, engaged: bool, target: float, target_heading: float,
                  heading_error: float, command: float, raw_command: float, policy: str,
                  reason: str, model_path: str, stale_inputs) -> dict:
    """autopilot/status as the plain dict HelmState keeps (helm_node fills it)."""
    return {'mode': mode, 'engaged': bool(engaged), 'target': float(target),
            'target_heading': float(target_heading), 'heading_error': float(heading_error),
            'command': float(command), 'raw_command': float(raw_command), 'policy': policy,
            'reason': reason, 'model_path': model_path, 'stale_inputs': list(stale_inputs)}


def to_json(message: dict) -> str:
    """Compact JSON; NaN and infinity are refused (the page's JSON.parse rejects them)."""
    return json.dumps(message, separators=(',', ':'), allow_nan=False)

