"""Recordings -> training windows, through the node's own Pilot, on the control-rate grid.

Each recording is replayed into a `Pilot` (no model) exactly as the node would receive it:
every sample up to a tick goes into the Pilot, then the Pilot ticks. The feature row the
Pilot pushes into its window at that tick is the row stored here, so training sees the
very windows the node would hand to ONNX Runtime (test_training's parity test replays a
recording through a Pilot and checks it). The label is the measured rudder angle
`label_lead_s` after the tick: where the helmsman was putting the helm.

Only stretches that teach steering are kept. Every dropped tick is counted under the
first reason that applies, so the user sees what their recording gave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
import math

import numpy as np

from autopilot_ros.conventions import STEERING_MODES, validate_mode
from autopilot_ros.features import NUM_FEATURES, WINDOW_LENGTH
from autopilot_ros.inputs import INPUT_NAMES
from autopilot_ros.pilot import Pilot, PilotConfig
from autopilot_ros.training.bags import REQUIRED_INPUTS, Recording


class DatasetError(ValueError):
    """The recordings give no usable training data; the message says why."""


# Why a tick was not kept, in the order the checks run.
DROP_REASONS = (
    'no mode/target yet',
    'standby (no target set)',
    'pilot engaged (not hand steering)',
    'inputs stale or missing',
    'window filling',
    'settling after a mode/target change',
    'not underway',
    'no rudder reading for the label',
)


@dataclass(frozen=True)
class DatasetConfig:
    """How recordings become windows; stored with every model for reproducibility."""

    rate_hz: float = 10.0
    label_lead_s: float = 0.3  # label = measured rudder this long after the tick
    settle_s: float = 5.0  # skip this long after a mode/target change (window refilled)
    min_speed: float = 0.5  # m/s through the water to count as underway
    label_max_gap_s: float = 0.5  # rudder readings around the label time must be this close
    val_fraction: float = 0.2
    block_s: float = 60.0  # time-block length for the split when recordings are few
    fixed_mode: str | None = None  # for bags without autopilot/status: mode for the bag ...
    fixed_target: float | None = None  # ... and target, rad (as in AutopilotStatus)

    def validate(self) -> None:
        if not 1.0 <= self.rate_hz <= 100.0:
            raise DatasetError(f'rate_hz {self.rate_hz} not in [1, 100]')
        if not 0.0 <= self.label_lead_s <= 2.0:
            raise DatasetError(f'label lead {self.label_lead_s} s not in [0, 2]')
        if not 0.0 < self.val_fraction < 1.0:
            raise DatasetError(f'validation fraction {self.val_fraction} not in (0, 1)')
        if (self.fixed_mode is None) != (self.fixed_target is None):
            raise DatasetError('give both a mode and a target for bags without status')
        if self.fixed_mode is not None:
            if self.fixed_mode not in STEERING_MODES:
                raise DatasetError(f"mode '{self.fixed_mode}' is not one of "
                                   f"{', '.join(STEERING_MODES)}")
            try:
                validate_mode(self.fixed_mode, self.fixed_target)
            except ValueError as exc:
                raise DatasetError(str(exc)) from None


@dataclass
class RecordingReport:
    name: str
    duration_s: float
    ticks: int
    kept: int
    dropped: Counter = field(default_factory=Counter)

    def line(self) -> str:
        why = ', '.join(f'{n} {r}' for r, n in self.dropped.most_common()) or 'none dropped'
        return (f'{self.name}: {self.duration_s:.0f} s, {self.ticks} ticks, kept {self.kept} '
                f'({100.0 * self.kept / max(1, self.ticks):.0f}%); dropped: {why}')


@dataclass
class Dataset:
    """Windows as rows + end indices (a window is rows[end-19 : end+1]), to save memory."""

    rows: np.ndarray  # (M, 25) float32, every feature row the Pilot pushed
    ends: np.ndarray  # (N,) int64, index into rows of each kept window's newest row
    labels: np.ndarray  # (N,) float32, rudder in [-1, 1]
    groups: np.ndarray  # (N,) int32, recording index
    stamps: np.ndarray  # (N,) float64, tick time in the recording's clock
    reports: list[RecordingReport] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ends)

    def windows(self, index: np.ndarray | slice | None = None) -> np.ndarray:
        """(n, 20, 25) float32 windows for the given kept-window indices (all if None)."""
        ends = self.ends if index is None else self.ends[index]
        offsets = np.arange(-WINDOW_LENGTH + 1, 1)
        return self.rows[ends[:, None] + offsets]

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.rows, self.ends[index], self.labels[index], self.groups[index],
                       self.stamps[index], self.reports)

    @staticmethod
    def concat(parts: list[Dataset]) -> Dataset:
        """One dataset from several (group numbers are kept as they are)."""
        rows, ends, offset = [], [], 0
        for p in parts:
            rows.append(p.rows)
            ends.append(p.ends + offset)
            offset += len(p.rows)
        return Dataset(
            np.concatenate(rows) if rows else np.zeros((0, NUM_FEATURES), np.float32),
            np.concatenate(ends) if ends else np.zeros(0, np.int64),
            np.concatenate([p.labels for p in parts]) if parts else np.zeros(0, np.float32),
            np.concatenate([p.groups for p in parts]) if parts else np.zeros(0, np.int32),
            np.concatenate([p.stamps for p in parts]) if parts else np.zeros(0),
            [r for p in parts for r in p.reports])

    def summary(self) -> dict:
        """Sizes and kept/dropped counts, for logs, model metadata and the model card."""
        dropped: Counter = Counter()
        for r in self.reports:
            dropped.update(r.dropped)
        return {
            'recordings': len(self.reports),
            'hours': round(sum(r.duration_s for r in self.reports) / 3600.0, 3),
            'ticks': sum(r.ticks for r in self.reports),
            'windows': len(self),
            'dropped': dict(dropped.most_common()),
        }


# The longest recording replayed. The tick grid spans a recording's stamps, so a corrupt
# stamp or two clocks in one bag (the reader drops isolated bad stamps, not a topic on
# another clock) would make it years long: billions of ticks, tens of GiB and hours of
# replay. A day is more than any one recording session (ros2 bag record
# --max-bag-duration splits longer passages), and its replay stays small: ticks are made
# one at a time and feature rows are stored only as the Pilot pushes them (a few tens of
# MB for a day at 10 Hz).
MAX_RECORDING_S = 24 * 3600.0
_ROWS_CHUNK = 4096  # feature rows allocated at a time


def _tick_count(rec: Recording, rate_hz: float, name: str) -> int:
    """Ticks of the control grid; DatasetError for a recording longer than a day."""
    span = rec.end_time - rec.start_time
    if not math.isfinite(span) or span > MAX_RECORDING_S:
        raise DatasetError(
            f'{name}: its samples span {span:.0f} s ({span / 86400.0:.3g} days), more than '
            f'the {MAX_RECORDING_S / 3600.0:g} h a recording may last (stamps from '
            f'{rec.start_time:.9g} to {rec.end_time:.9g} s): the sensors stamp on different '
            'clocks, or the bag holds corrupt stamps. Fix the clocks or leave the bag out; '
            'split long passages (ros2 bag record --max-bag-duration).')
    return max(0, int(math.floor(span * rate_hz + 1e-9)) + 1)


def _tick_times(rec: Recording, rate_hz: float, n: int | None = None) -> Iterator[float]:
    """The control grid: from the first sample, every 1/rate, to the last sample.

    Made one tick at a time (the same floats as start + np.arange(n) / rate).
    """
    start = rec.start_time
    if n is None:
        n = _tick_count(rec, rate_hz, str(rec.path))
    return (start + k / rate_hz for k in range(n))


def _merged_samples(rec: Recording) -> list:
    """Sensor samples of all inputs in stamp order (stable: ties keep topic order)."""
    merged = []
    for key in INPUT_NAMES:
        merged.extend(rec.samples.get(key, ()))
    merged.sort(key=lambda s: s.stamp)
    return merged


def _label_fn(rec: Recording, config: DatasetConfig):
    """label(t): measured rudder at t + lead, linearly interpolated; None if no reading."""
    rudder = rec.samples.get('rudder_angle', [])
    ts = np.array([s.stamp for s in rudder], dtype=np.float64)
    vs = np.array([s.angle for s in rudder], dtype=np.float64)
    finite = np.isfinite(vs)
    ts, vs = ts[finite], vs[finite]

    def label(t: float) -> float | None:
        q = t + config.label_lead_s
        i = int(np.searchsorted(ts, q, side='right'))
        if i == 0:
            return None
        if i == len(ts):
            return float(vs[-1]) if q - ts[-1] < 1e-9 else None
        t0, t1 = ts[i - 1], ts[i]
        if q - t0 > config.label_max_gap_s or t1 - q > config.label_max_gap_s:
            return None
        w = 0.0 if t1 <= t0 else (q - t0) / (t1 - t0)
        return float(np.clip(vs[i - 1] + w * (vs[i] - vs[i - 1]), -1.0, 1.0))
    return label


LabelFn = Callable[[float], 'float | None']


def build_recording(rec: Recording, config: DatasetConfig, *, group: int = 0,
                    name: str | None = None, labels: LabelFn | None = None) -> Dataset:
    """Replay one recording through a Pilot; keep the windows worth learning from.

    `labels(t)` overrides the label (DAgger: what the expert would have done at tick t).
    """
    config.validate()
    name = name or str(rec.path)
    status = rec.samples.get('autopilot/status', [])
    if not status and config.fixed_mode is None:
        raise DatasetError(
            f'{name}: no autopilot/status messages, so the mode and target the helmsman '
            'steered to are unknown. Record autopilot/status (set the mode and target with '
            'the pilot in hand_steering), or give --mode and --target-deg for this bag.')
    status_stamps = np.array([s.stamp for s in status], dtype=np.float64)
    pilot = Pilot(PilotConfig(rate_hz=config.rate_hz))
    samples = _merged_samples(rec)
    label = labels or _label_fn(rec, config)
    n_ticks = _tick_count(rec, config.rate_hz, name)
    report = RecordingReport(name, rec.duration, n_ticks, 0)

    # Rows grow in chunks as the Pilot pushes them (at most one per tick, none while the
    # inputs are stale), so memory follows the data, not the length of the recording.
    rows = np.zeros((min(n_ticks, _ROWS_CHUNK), NUM_FEATURES), dtype=np.float32)
    n_rows = 0
    ends, ys, stamps = [], [], []
    pushes = pilot.window.pushes
    current: tuple[str, float] | None = None
    changed_at = -math.inf
    si = 0
    for t in _tick_times(rec, config.rate_hz, n_ticks):
        while si < len(samples) and samples[si].stamp <= t + 1e-9:
            pilot.update(samples[si])
            si += 1
        if config.fixed_mode is not None:
            mode, target, engaged = config.fixed_mode, float(config.fixed_target), False
        else:
            k = int(np.searchsorted(status_stamps, t + 1e-9, side='right')) - 1
            if k < 0:
                mode, target, engaged = 'none', 0.0, False
            else:
                st = status[k]
                mode, target, engaged = st.mode, float(st.target), st.engaged
            if mode not in STEERING_MODES:
                mode, target = ('standby' if k >= 0 else 'none'), 0.0
        if (mode, target) != current:
            try:
                pilot.set_mode('standby' if mode == 'none' else mode, target)
            except ValueError:  # a target out of range in the status: nothing to learn
                pilot.set_mode('standby', 0.0)
                mode = 'standby'
            current = (mode, target)
            changed_at = t
        out = pilot.step(t)
        if pilot.window.pushes != pushes:
            pushes = pilot.window.pushes
            if n_rows == len(rows):
                grow = min(max(len(rows), _ROWS_CHUNK), n_ticks - len(rows))
                rows = np.concatenate([rows, np.zeros((max(1, grow), NUM_FEATURES),
                                                      dtype=np.float32)])
            rows[n_rows] = pilot.window.array()[0, -1]
            n_rows += 1
        reason = _drop_reason(config, pilot, out, mode, engaged, t, changed_at)
        y = None
        if reason is None:
            y = label(t)
            if y is None:
                reason = 'no rudder reading for the label'
        if reason is not None:
            report.dropped[reason] += 1
            continue
        ends.append(n_rows - 1)
        ys.append(y)
        stamps.append(t)
    report.kept = len(ends)
    return Dataset(rows[:n_rows].copy(), np.array(ends, dtype=np.int64),
                   np.array(ys, dtype=np.float32), np.full(len(ends), group, np.int32),
                   np.array(stamps, dtype=np.float64), [report])


def _drop_reason(config: DatasetConfig, pilot: Pilot, out, mode: str, engaged: bool,
                 t: float, changed_at: float) -> str | None:
    if mode == 'none':
        return 'no mode/target yet'
    if mode == 'standby':
        return 'standby (no target set)'
    if engaged:
        return 'pilot engaged (not hand steering)'
    # What a window needs fresh to teach steering: the pilot's required inputs and the label.
    if set(out.stale_inputs) & set(REQUIRED_INPUTS) or not out.engaged:
        return 'inputs stale or missing'
    if not pilot.window.full:
        return 'window filling'
    if t - changed_at < config.settle_s:
        return 'settling after a mode/target change'
    speed = pilot.inputs.speed
    if speed is not None and 'speed' not in out.stale_inputs and speed.stw < config.min_speed:
        return 'not underway'
    return None


def build_dataset(recordings: list[Recording], config: DatasetConfig | None = None,
                  progress=None) -> Dataset:
    """All recordings, one group per recording; DatasetError if nothing is kept."""
    config = config or DatasetConfig()
    parts = []
    for i, rec in enumerate(recordings):
        parts.append(build_recording(rec, config, group=i))
        if progress:
            progress(i + 1, len(recordings), parts[-1].reports[0])
    data = Dataset.concat(parts)
    if len(data) == 0:
        lines = '\n  '.join(r.line() for r in data.reports)
        raise DatasetError(f'no training windows were kept from {len(recordings)} '
                           f'recording(s):\n  {lines}')
    return data


def split(data: Dataset, config: DatasetConfig | None = None) -> tuple[Dataset, Dataset, str]:
    """Train / validation, never by random window: neighbouring windows share 19 rows.

    With 5 or more recordings, whole recordings go to validation (every 5th, so it spans
    the conditions). With fewer, each recording is cut into time blocks and every 5th
    block validates; windows that reach back across a block boundary are dropped.
    Returns (train, validation, a sentence saying how).
    """
    config = config or DatasetConfig()
    groups = np.unique(data.groups)
    every = max(2, int(round(1.0 / config.val_fraction)))
    if len(groups) >= 5:
        val_groups = groups[every - 1::every]
        is_val = np.isin(data.groups, val_groups)
        how = (f'by recording: {len(val_groups)} of {len(groups)} recordings validate '
               f'({", ".join(data.reports[g].name for g in val_groups[:4])}'
               f'{", ..." if len(val_groups) > 4 else ""})')
        return data.subset(np.nonzero(~is_val)[0]), data.subset(np.nonzero(is_val)[0]), how
    block = np.zeros(len(data), dtype=np.int64)
    since_boundary = np.zeros(len(data))
    for g in groups:
        idx = np.nonzero(data.groups == g)[0]
        t = data.stamps[idx] - data.stamps[idx].min()
        # Short recordings get shorter blocks, so each one still has a validation block.
        block_s = min(config.block_s, max(float(t.max()), 1e-3) / every)
        block[idx] = (t // block_s).astype(np.int64)
        since_boundary[idx] = t - block[idx] * block_s
    is_val = block % every == every - 1
    window_s = WINDOW_LENGTH / config.rate_hz
    gap = (since_boundary < window_s) & (block > 0)
    keep_train = ~is_val & ~gap
    keep_val = is_val & ~gap
    how = (f'by time blocks of up to {config.block_s:g} s: every {every}th block validates; '
           f'{int(gap.sum())} windows reaching across a block boundary dropped')
    if not keep_val.any():
        raise DatasetError(f'too little data to validate: {len(data)} windows in '
                           f'{len(groups)} recording(s)')
    return data.subset(np.nonzero(keep_train)[0]), data.subset(np.nonzero(keep_val)[0]), how
