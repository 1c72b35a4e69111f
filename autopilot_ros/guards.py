"""Knowing when not to trust the model: the training envelope and the closed-loop watchdog.

A learned pilot is only as good as the situations it was trained in, and nothing in its
output says when it has left them. Two guards decide, each tick, whether the model may
steer; when either says no, the PID steers and the reason names the guard:

- Envelope: export writes, per feature, the span the training data covered (robust
  quantiles with a margin) into the model's metadata. When the newest feature row leaves
  it for longer than a grace period, the PID takes the helm ("outside training envelope:
  roll, accel_sway"); the model gets it back only after the row has been inside for a
  re-arm period (hysteresis: a boat on the edge does not flip between pilots).
- Watchdog: while the model steers, the PID's request is computed anyway. Over a sliding
  window (60 s) the model's rudder travel is compared with what the PID would have used
  (both smoothed over a second first, so gyro noise in the PID's request is not counted
  as work), and the heading error is watched. A model that works the rudder far harder
  than the PID would, or lets the error RMS pass 10 deg, loses the helm for a hold-off
  (120 s) and then gets another chance; one that trips again straight away waits twice
  as long each time (up to an hour), and a full window of good steering forgives it. The
  watch starts afresh, 30 s on, after a new course (a mode change or a target moved over
  10 deg, whose transient is no fault of the model's; a nudge is not one), after the model
  takes the helm, after any pause, and after its clock steps back.
"""

from collections import deque
from dataclasses import dataclass
import json
import math

import numpy as np

from autopilot_ros.bounds import Bounds, check_bounds
from autopilot_ros.features import FEATURE_NAMES, NUM_FEATURES

ENVELOPE_KEY = 'feature_envelope'  # the model metadata entry export writes
ENVELOPE_QUANTILES = (0.001, 0.999)  # robust: a few wild rows do not widen it
ENVELOPE_MARGIN = 0.1  # x the quantile span, added on both sides
TRAVEL_SMOOTHING_S = 1.0  # requests are low-passed over this long before travel counts
WATCH_GAP_S = 1.0  # a longer pause in the model's steering restarts the watch
MAX_HOLDOFF_S = 3600.0  # repeated trips double the hold-off up to this


@dataclass(frozen=True)
class GuardConfig:
    """Both guards' settings (node parameters guard.*; ranges in GUARD_RANGES)."""

    envelope: bool = True
    envelope_grace_s: float = 1.0
    envelope_rearm_s: float = 10.0
    watchdog: bool = True
    watchdog_window_s: float = 60.0
    watchdog_settle_s: float = 30.0
    watchdog_travel_ratio: float = 3.0
    watchdog_min_travel: float = 2.0
    watchdog_max_error_deg: float = 10.0
    watchdog_holdoff_s: float = 120.0

    def validate(self) -> None:
        check_bounds(self, GUARD_RANGES, 'guard')


GUARD_SWITCHES = {
    'envelope': 'hand the helm to the PID when the inputs leave the training envelope',
    'watchdog': 'hand the helm to the PID when the model steers far worse than it would',
}
GUARD_RANGES: Bounds = {
    'envelope_grace_s': (0.0, 30.0, 's the inputs may be outside the envelope before the '
                                    'PID takes the helm'),
    'envelope_rearm_s': (0.0, 600.0, 's the inputs must be back inside before the model '
                                     'steers again'),
    'watchdog_window_s': (10.0, 600.0, 's of steering the watchdog judges'),
    'watchdog_settle_s': (0.0, 300.0, 's after a new course, the model taking the helm or a '
                                      'pause before the watch starts'),
    'watchdog_travel_ratio': (1.0, 100.0, "model rudder travel beyond this many times the "
                                          "PID's request's (over the window) hands over"),
    'watchdog_min_travel': (0.0, 60.0, 'rudder travel per minute (normalised) below which '
                                       'the model is never judged too busy'),
    'watchdog_max_error_deg': (1.0, 180.0, 'heading-error RMS over the window, deg, that '
                                           'hands over'),
    'watchdog_holdoff_s': (0.0, 3600.0, 's the PID keeps the helm after the watchdog '
                                        'trips'),
}


class EnvelopeError(ValueError):
    """A model's envelope metadata is malformed."""


@dataclass(frozen=True)
class Envelope:
    """Per feature, [low, high] in the model's (scaled) units."""

    low: np.ndarray
    high: np.ndarray

    @staticmethod
    def from_rows(rows: np.ndarray) -> 'Envelope':
        """The span the training rows cover: quantiles widened by a margin."""
        if rows.ndim != 2 or rows.shape[1] != NUM_FEATURES or len(rows) == 0:
            raise EnvelopeError(f'need (n, {NUM_FEATURES}) rows, got {rows.shape}')
        lo, hi = np.quantile(rows.astype(np.float64), ENVELOPE_QUANTILES, axis=0)
        margin = ENVELOPE_MARGIN * (hi - lo) + 1e-3
        return Envelope((lo - margin).astype(np.float32), (hi + margin).astype(np.float32))

    def to_json(self) -> str:
        return json.dumps({'features': list(FEATURE_NAMES),
                           'low': [round(float(v), 6) for v in self.low],
                           'high': [round(float(v), 6) for v in self.high]})

    @staticmethod
    def from_json(text: str) -> 'Envelope':
        """EnvelopeError for anything but this spec's features with finite, ordered spans."""
        try:
            data = json.loads(text)
            names, low, high = data['features'], data['low'], data['high']
            low = np.asarray(low, dtype=np.float32)
            high = np.asarray(high, dtype=np.float32)
        except (ValueError, TypeError, KeyError) as exc:
            raise EnvelopeError(f'{ENVELOPE_KEY} is not an envelope: {exc}') from None
        if list(names) != list(FEATURE_NAMES) or low.shape != (NUM_FEATURES,) or \
                high.shape != (NUM_FEATURES,):
            raise EnvelopeError(f"{ENVELOPE_KEY} does not cover this feature spec's "
                                f'{NUM_FEATURES} features in order')
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (low <= high).all()):
            raise EnvelopeError(f'{ENVELOPE_KEY} has non-finite or reversed spans')
        return Envelope(low, high)

    def outside(self, row: np.ndarray) -> list[str]:
        """The features of `row` outside their span, by name."""
        out = (row < self.low) | (row > self.high)
        return [FEATURE_NAMES[i] for i in np.flatnonzero(out)]


class ModelGuard:
    """Per tick: may the model steer? '' if so, else why not (the status reason)."""

    def __init__(self, config: GuardConfig | None = None,
                 envelope: Envelope | None = None) -> None:
        self.config = config or GuardConfig()
        self.envelope = envelope
        self.trips = {'envelope': 0, 'watchdog': 0}  # hand-overs since the model loaded
        self._outside_since: float | None = None
        self._inside_since: float | None = None
        self._envelope_reason = ''  # set while the envelope holds the helm
        self._held_until = -math.inf  # watchdog hold-off
        self._watchdog_reason = ''
        self._trips_in_a_row = 0  # watchdog trips without a good window between them
        self._history: deque = deque()
        self.restart_watch()

    @property
    def holding(self) -> str:
        """Why a guard holds the helm now ('' if none)."""
        return self._envelope_reason or self._watchdog_reason

    def restart_watch(self) -> None:
        """Start the watch afresh (a new course, a trip, a gap), after the settle time."""
        self._history.clear()
        self._sums = [0.0, 0.0, 0.0]
        self._last_requests: tuple[float, float] | None = None
        self._smoothed = None
        self._watch_from = None

    def before_model(self, now: float, row: np.ndarray | None) -> str:
        """Check the inputs before running the model: '' or why the PID steers."""
        c = self.config
        if self._watchdog_reason and now >= self._held_until:
            self._watchdog_reason = ''
        if not c.watchdog:
            self._watchdog_reason = ''
        if c.envelope and self.envelope is not None and row is not None:
            self._check_envelope(now, row)
        else:
            self._envelope_reason, self._outside_since, self._inside_since = '', None, None
        return self.holding

    def _check_envelope(self, now: float, row: np.ndarray) -> None:
        c = self.config
        names = self.envelope.outside(row)
        if names:
            self._inside_since = None
            if self._outside_since is None:
                self._outside_since = now
            if self._envelope_reason or now - self._outside_since >= c.envelope_grace_s:
                if not self._envelope_reason:
                    self.trips['envelope'] += 1
                    self._history.clear()
                self._envelope_reason = 'outside training envelope: ' + ', '.join(names)
        else:
            self._outside_since = None
            if self._envelope_reason:
                if self._inside_since is None:
                    self._inside_since = now
                if now - self._inside_since >= c.envelope_rearm_s:
                    self._envelope_reason, self._inside_since = '', None

    def after_model(self, now: float, model_request: float, pid_request: float,
                    heading_error: float) -> str:
        """Judge the model's steering so far (it steered this tick): '' or why it stops."""
        c = self.config
        if not c.watchdog:
            return ''
        h = self._history
        if h and not 0.0 <= now - h[-1][0] <= WATCH_GAP_S:  # a pause, or a clock set back
            self.restart_watch()
        if self._watch_from is None:
            self._watch_from = now + c.watchdog_settle_s
        model_request, pid_request = self._smooth(now, model_request, pid_request)
        if now < self._watch_from:
            return ''

        # Running sums over the window: (t, |d model|, |d PID|, error^2) per tick.
        prev = self._last_requests
        self._last_requests = (model_request, pid_request)
        if prev is None:
            return ''
        entry = (now, abs(model_request - prev[0]), abs(pid_request - prev[1]),
                 heading_error * heading_error)
        h.append(entry)
        self._sums = [a + b for a, b in zip(self._sums, entry[1:], strict=True)]
        while h[0][0] < now - c.watchdog_window_s:
            old = h.popleft()
            self._sums = [a - b for a, b in zip(self._sums, old[1:], strict=True)]
        if h[-1][0] - h[0][0] < 0.95 * c.watchdog_window_s:
            return ''
        minutes = (h[-1][0] - h[0][0]) / 60.0
        model_travel, pid_travel = self._sums[0] / minutes, self._sums[1] / minutes
        rms_deg = math.degrees(math.sqrt(max(0.0, self._sums[2]) / len(h)))
        reason = ''
        if model_travel > max(c.watchdog_min_travel, c.watchdog_travel_ratio * pid_travel):
            reason = (f"watchdog: rudder travel {model_travel:.1f}/min against the PID's "
                      f'{pid_travel:.1f}/min over {c.watchdog_window_s:g} s')
        elif rms_deg > c.watchdog_max_error_deg:
            reason = (f'watchdog: heading error RMS {rms_deg:.1f} deg over '
                      f'{c.watchdog_window_s:g} s')
        if not reason:
            self._trips_in_a_row = 0  # a whole window of steering the PID could not fault
            return ''
        self.trips['watchdog'] += 1
        self._trips_in_a_row += 1
        holdoff = min(MAX_HOLDOFF_S, c.watchdog_holdoff_s * 2 ** (self._trips_in_a_row - 1))
        self._watchdog_reason = f'{reason}; the PID steers for {holdoff:g} s'
        self._held_until = now + holdoff
        self.restart_watch()
        return self._watchdog_reason

    def _smooth(self, now: float, model: float, pid: float) -> tuple[float, float]:
        """Both requests low-passed over TRAVEL_SMOOTHING_S (first-order, by elapsed time)."""
        if self._smoothed is None or not now > self._smoothed[0]:
            self._smoothed = (now, model, pid)
        else:
            t0, m0, p0 = self._smoothed
            a = 1.0 - math.exp(-(now - t0) / TRAVEL_SMOOTHING_S)
            self._smoothed = (now, m0 + a * (model - m0), p0 + a * (pid - p0))
        return self._smoothed[1], self._smoothed[2]
