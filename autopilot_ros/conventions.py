"""The sign and unit conventions of docs/design.md as code, so every module agrees on them.

Compass heading: radians clockwise from north in [0, 2*pi). Wind angles: radians in
(-pi, pi] from the bow, positive = wind from starboard. Rudder: normalised [-1, 1],
positive turns to starboard. IMU: REP-103 body frame (x forward, y left, z up), so a turn
to starboard is a *negative* angular_velocity.z.
"""

import math

# Bumped whenever a sign or unit convention changes; exported models carry it.
SIGN_CONVENTION_VERSION = 1

TWO_PI = 2.0 * math.pi
GRAVITY = 9.80665

# What the pilot steers to. Standby steers to nothing; each steering mode has a target:
# compass a heading in [0, 2*pi), the wind modes an apparent or true wind angle in (-pi, pi].
MODES = ('standby', 'compass', 'wind_awa', 'wind_twa')
STEERING_MODES = MODES[1:]
WIND_MODES = ('wind_awa', 'wind_twa')


def wrap_pi(angle: float) -> float:
    """Wrap an angle to (-pi, pi]: the range of heading errors and wind angles."""
    wrapped = math.fmod(angle + math.pi, TWO_PI)
    if wrapped <= 0.0:
        wrapped += TWO_PI
    return wrapped - math.pi


def wrap_2pi(angle: float) -> float:
    """Wrap an angle to [0, 2*pi): the range of compass headings."""
    wrapped = math.fmod(angle, TWO_PI)
    if wrapped < 0.0:
        wrapped += TWO_PI
    return 0.0 if wrapped >= TWO_PI else wrapped


def heading_error(target_heading: float, heading: float) -> float:
    """Positive when the boat must turn to starboard (needs positive rudder)."""
    return wrap_pi(target_heading - heading)


def turn_rate_starboard(angular_velocity_z: float) -> float:
    """REP-103 z is up, so a starboard (clockwise seen from above) turn is negative z."""
    return -angular_velocity_z


def true_wind(awa: float, aws: float, boat_speed: float) -> tuple[float, float]:
    """True wind angle and speed from apparent wind and speed through water.

    Vectors are 'wind from' in the boat frame (forward, starboard). The boat's own motion
    adds a head wind of boat_speed from the bow, so true = apparent - (boat_speed, 0).
    Leeway and current are ignored.
    """
    forward = aws * math.cos(awa) - boat_speed
    starboard = aws * math.sin(awa)
    tws = math.hypot(forward, starboard)
    if tws < 1e-9:
        return wrap_pi(awa), 0.0
    return wrap_pi(math.atan2(starboard, forward)), tws


def apparent_wind(twa: float, tws: float, boat_speed: float) -> tuple[float, float]:
    """Apparent wind angle and speed seen from a boat moving at boat_speed."""
    forward = tws * math.cos(twa) + boat_speed
    starboard = tws * math.sin(twa)
    aws = math.hypot(forward, starboard)
    if aws < 1e-9:
        return wrap_pi(twa), 0.0
    return wrap_pi(math.atan2(starboard, forward)), aws


def twa_for_awa(target_awa: float, tws: float, boat_speed: float) -> float:
    """The true wind angle at which the apparent wind would be target_awa.

    With the current wind triangle (TWS, boat speed) fixed, the apparent wind lies on the
    ray at target_awa; its length s solves |s*(cos A, sin A) - (V, 0)| = TWS. Only a boat
    faster than the wind can miss: its apparent wind stays within asin(TWS / V) of the bow,
    so a wider target is taken as that widest AWA, on the target's side (never a dead run).
    """
    if boat_speed > tws:
        widest = math.asin(tws / boat_speed)
        target_awa = max(-widest, min(widest, target_awa))
    c = math.cos(target_awa)
    disc = (boat_speed * c) ** 2 - boat_speed**2 + tws**2
    s = max(0.0, boat_speed * c + math.sqrt(max(0.0, disc)))
    forward = s * c - boat_speed
    starboard = s * math.sin(target_awa)
    if math.hypot(forward, starboard) < 1e-9:
        return wrap_pi(target_awa)
    return wrap_pi(math.atan2(starboard, forward))


def quaternion_to_roll_pitch(x: float, y: float, z: float, w: float) -> tuple[float, float]:
    """Roll (about x, forward) and pitch (about y, left) from a REP-103 orientation.

    REP-103 roll > 0 is a right-handed rotation about the forward axis: starboard side
    down. Pitch > 0 about the left axis: bow down.
    """
    sinr = 2.0 * (w * x + y * z)
    cosr = 1.0 - 2.0 * (x * x + y * y)
    roll = math.atan2(sinr, cosr)
    sinp = max(-1.0, min(1.0, 2.0 * (w * y - z * x)))
    return roll, math.asin(sinp)


def roll_pitch_to_quaternion(roll: float, pitch: float, yaw: float = 0.0) -> tuple[float, ...]:
    """Inverse of quaternion_to_roll_pitch (ZYX order), returned as (x, y, z, w)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    )


def validate_mode(mode: str, target: float) -> None:
    """Raise ValueError for an unknown mode or a target outside its mode's range."""
    if mode not in MODES:
        raise ValueError(f"mode '{mode}' is not one of {', '.join(MODES)}")
    if not math.isfinite(target):
        raise ValueError('target must be finite')
    if mode == 'compass' and not 0.0 <= target < TWO_PI:
        raise ValueError(f'compass target {target} rad not in [0, 2*pi)')
    if mode in WIND_MODES and not -math.pi < target <= math.pi:
        raise ValueError(f'wind angle target {target} rad not in (-pi, pi]')


def wind_target_heading(mode: str, target: float, heading: float, twa: float, tws: float,
                        boat_speed: float) -> float:
    """The compass heading that meets a wind-mode target with this wind triangle.

    TWA mode: heading + (TWA - target TWA), so a boat sailing too far off the wind (TWA
    larger than the target, wind from starboard) turns to starboard. AWA mode first turns
    the target AWA into a target TWA with the current TWS and boat speed.
    """
    target_twa = twa_for_awa(target, tws, boat_speed) if mode == 'wind_awa' else target
    return wrap_2pi(heading + wrap_pi(twa - target_twa))
