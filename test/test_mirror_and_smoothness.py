"""The training augmentation and the smoothness term: they must respect the conventions.

Mirroring a boat (port and starboard swapped) must give exactly the feature row the mirror
boat's own sensors would give: derived here by feeding build_features mirrored readings,
never by restating MIRROR_SIGNS. The smoothness term must charge rudder the model moves
beyond the helmsman, and reversals, and nothing else.
"""

import math

import numpy as np
import pytest

from autopilot_ros.conventions import GRAVITY, wrap_2pi
from autopilot_ros.features import (
    FEATURE_NAMES,
    MIRROR_SIGNS,
    NUM_FEATURES,
    Fresh,
    InputState,
    build_features,
)
from autopilot_ros.samples import HeadingSample, ImuSample, RudderSample, SpeedSample, WindSample

DEG = math.pi / 180
ALL_FRESH = Fresh(imu=True, heading=True, wind=True, speed=True, rudder_angle=True)


def _row(mode: str, target: float, target_hdg: float, readings: list[tuple]) -> np.ndarray:
    """The feature row after two ticks of readings (so every derived rate is set)."""
    state = InputState()
    for t, (imu, heading, awa, aws, stw, rudder) in zip((1.0, 1.2), readings, strict=False):
        state.update(ImuSample(t, *imu))
        state.update(HeadingSample(t, heading))
        state.update(WindSample(t, awa, aws))
        state.update(SpeedSample(t, stw))
        state.update(RudderSample(t, rudder))
    return build_features(mode, target, target_hdg, state, ALL_FRESH, 0.0,
                          np.zeros(NUM_FEATURES, np.float32)).copy()


def _mirror(reading: tuple) -> tuple:
    """The same moment on the mirror-image boat: every across-the-boat quantity negated,
    the heading reflected about north (so a turn to starboard becomes one to port)."""
    (roll, pitch, roll_rate, pitch_rate, yaw_z, ax, ay, az), heading, awa, aws, stw, rud = \
        reading
    return ((-roll, pitch, -roll_rate, pitch_rate, -yaw_z, ax, -ay, az), wrap_2pi(-heading),
            -awa, aws, stw, -rud)


READINGS = [
    ((0.12, 0.03, 0.05, -0.02, -0.08, 0.4, 0.9, GRAVITY + 0.3), 80 * DEG, 50 * DEG, 9.0,
     3.1, 0.15),
    ((0.15, 0.01, 0.09, 0.01, -0.11, 0.2, 1.1, GRAVITY - 0.2), 82 * DEG, 47 * DEG, 9.5,
     3.2, 0.22),
]


@pytest.mark.parametrize('mode,target,target_hdg', [
    ('compass', 95 * DEG, 95 * DEG),
    ('wind_awa', 40 * DEG, 90 * DEG),
    ('wind_twa', -120 * DEG, 300 * DEG),
])
def test_a_mirrored_boat_gives_the_mirrored_feature_row(mode, target, target_hdg):
    row = _row(mode, target, target_hdg, READINGS)
    mirror_target = wrap_2pi(-target) if mode == 'compass' else -target
    mirrored = _row(mode, mirror_target, wrap_2pi(-target_hdg), [_mirror(r) for r in READINGS])
    np.testing.assert_allclose(row * MIRROR_SIGNS, mirrored, atol=1e-5)
    # The test has teeth: every feature that flips is non-zero here, or for the wind target
    # in the wind modes.
    flipped = [n for n, s in zip(FEATURE_NAMES, MIRROR_SIGNS, strict=False) if s < 0]
    quiet = [n for n in flipped if abs(row[FEATURE_NAMES.index(n)]) < 1e-6]
    assert quiet in ([], ['sin_wind_target']), quiet


def test_the_previous_tick_is_found_only_inside_a_recording():
    from autopilot_ros.training.train import previous_tick

    # Two recordings: rows 0..29 (windows end at 19..29) and 30..59 (windows at 49..59, the
    # tick at 52 dropped); shuffled, as a split leaves them.
    ends = np.array([*range(19, 30), *range(49, 52), *range(53, 60)])
    order = np.random.default_rng(0).permutation(len(ends))
    prev = previous_tick(ends[order])
    back = {int(e): (int(ends[order][p]) if p >= 0 else None)
            for e, p in zip(ends[order], prev, strict=False)}
    assert back[19] is None and back[49] is None  # a recording's first window
    assert back[53] is None  # the tick before was dropped
    assert back[20] == 19 and back[59] == 58 and back[51] == 50


def test_the_smoothness_term_charges_only_excess_travel_and_reversals():
    import torch

    from autopilot_ros.training.train import smoothness_penalty

    def pen(now, before, before2, label_now, label_before):
        t = [torch.tensor([[v]]) for v in (now, before, before2, label_now, label_before)]
        return float(smoothness_penalty(*t))

    # Following the helmsman's own movement costs nothing; holding still costs nothing.
    assert pen(0.3, 0.2, 0.1, 0.3, 0.2) == pytest.approx(0.0)
    assert pen(0.2, 0.2, 0.2, 0.5, 0.1) == pytest.approx(0.0)
    # Moving 0.1 more than the helmsman did costs that 0.1.
    assert pen(0.4, 0.2, 0.0, 0.3, 0.2) == pytest.approx(0.1)
    # Going back on the last step is charged on top: 10 x (0.1 x 0.1).
    assert pen(0.1, 0.2, 0.1, 0.1, 0.2) == pytest.approx(0.1)
    assert pen(0.1, 0.2, 0.1, 0.2, 0.2) == pytest.approx(0.1 + 0.1)
