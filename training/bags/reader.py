"""Reading bags into Recordings: the steps from a path to samples per logical input.

`read_bag` opens the storages (storage.py), chooses a bag topic per logical input
(topics.py), decodes only those topics, and says in `Recording.warnings` what it
recovered, skipped or guessed; anything it cannot use is one `BagError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
import dataclasses
from dataclasses import dataclass, field
import math
import numbers
from operator import attrgetter
import os
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.typesys.store import Typestore

from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SpeedSample,
    WindSample,
)
from autopilot_ros.status import StatusSample
from autopilot_ros.training.bags.errors import (
    BagError,
    TopicMapError,
    _one_line,
    _os_error,
)
from autopilot_ros.training.bags.storage import (
    _NS,
    Counts,
    _bag_topics,
    _check_total,
    _open_bag,
    _Source,
    _Topic,
    find_bags,
)
from autopilot_ros.training.bags.topics import (
    _INPUTS,
    LOGICAL_INPUTS,
    REQUIRED_INPUTS,
    TopicMap,
    Unresolved,
    _as_topic_map,
    _resolve,
)
from autopilot_ros.training.bags.typestore import _shared_store, _typestore_for


@dataclass
class Recording:
    """Everything training needs from one bag: samples per logical input, sorted by stamp.

    `samples` has every logical input as a key (an empty list when the bag lacks an
    optional one). Stamps are header stamps in seconds (bag receive time when a header
    stamp is zero). `message_counts` is per bag topic: the messages actually read for the
    topics used, the stored count for the others. `warnings` says what was recovered,
    skipped or guessed, in words for the user.
    """

    path: Path
    storage_id: str
    samples: dict[str, list[Any]]
    topics: dict[str, str] = field(default_factory=dict)
    message_counts: dict[str, int] = field(default_factory=dict)
    start_time: float = 0.0
    end_time: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Seconds between the first and the last sample stamp."""
        return max(0.0, self.end_time - self.start_time)

    @property
    def imu(self) -> list[ImuSample]:
        return self.samples['imu']

    @property
    def heading(self) -> list[HeadingSample]:
        return self.samples['heading']

    @property
    def wind(self) -> list[WindSample]:
        return self.samples['wind']

    @property
    def speed(self) -> list[SpeedSample]:
        return self.samples['speed']

    @property
    def rudder_angle(self) -> list[RudderSample]:
        return self.samples['rudder_angle']

    @property
    def rudder_command(self) -> list[RudderSample]:
        return self.samples['rudder_command']

    @property
    def status(self) -> list[StatusSample]:
        return self.samples['autopilot/status']

    def summary(self) -> str:
        """One line for logs and model cards."""
        counts = ', '.join(f'{k} {len(v)}' for k, v in self.samples.items() if v)
        note = f'; {len(self.warnings)} warning(s)' if self.warnings else ''
        return f'{self.path} ({self.storage_id}, {self.duration:.1f} s): {counts}{note}'


# --------------------------------------------------------------------------- read_bag steps

_RECORD_HINT = '. Record the topic while steering, or map the input to another topic.'


def _required_inputs(tmap: TopicMap, required: Iterable[str]) -> tuple[str, ...]:
    """The required inputs; TopicMapError if the map switches one of them off."""
    required = tuple(required)
    for key in required:
        if not tmap.topic(key):
            raise TopicMapError(f'topic map: {key!r} is required but switched off')
    return required


def _describe(topics: Mapping[str, _Topic]) -> str:
    if not topics:
        return 'The bag has no topics at all'
    return 'The bag has: ' + ', '.join(
        f'{t.name} ({t.msgtype}, {t.count} msgs)' for t in sorted(topics.values(),
                                                                  key=attrgetter('name'))
    )


def _choose_topics(bag: Path, tmap: TopicMap, required: tuple[str, ...],
                   topics: Mapping[str, _Topic], warnings: list[str]) -> dict[str, _Topic]:
    """The bag topic of each logical input the map names; BagError if a required one has none.

    An optional input is left out silently when the bag has no topic for it, and with a
    warning when its topic is ambiguous or of the wrong type (the map is likely wrong).
    """
    chosen: dict[str, _Topic] = {}
    problems: list[str] = []
    for key, name in tmap.items():
        if not name:
            continue
        found = _resolve(key, name, topics)
        if found.topic is not None:
            chosen[key] = found.topic
        elif key in required:
            problems.append(found.why)
        elif found.reason is not Unresolved.MISSING:
            warnings.append(f'ignored optional input: {found.why}.')
    if problems:
        raise BagError(f'{bag}: ' + '; '.join(problems) + f'. {_describe(topics)}.')
    for key in required:
        topic = chosen[key]
        if topic.count == 0 and all(s.counts is Counts.STORAGE for s, _ in topic.conns):
            problems.append(f'topic {topic.name} (for {key!r}) has no messages')
    if problems:
        raise BagError(f'{bag}: ' + '; '.join(problems) + _RECORD_HINT)
    return chosen


def _warn_unknown_types(topics: Mapping[str, _Topic], chosen: Mapping[str, _Topic],
                        store: Typestore, warnings: list[str]) -> None:
    """Name the other topics whose type this package does not know (left unread)."""
    used = {t.name for t in chosen.values()}
    unknown = sorted(f'{t.name} ({t.msgtype})' for t in topics.values()
                     if t.name not in used and t.msgtype not in store.types)
    if unknown:
        warnings.append('ignored topic(s) of unknown type: ' + ', '.join(unknown) + '.')


@dataclass
class _Decoded:
    """What decoding one logical input's topic gave: its samples and what went wrong."""

    samples: list[Any] = field(default_factory=list)
    failed: int = 0  # messages that could not be decoded or converted
    zero_stamp: int = 0  # samples given the receive time for a zero header stamp
    first_error: str = ''  # the first failure, for the warning
    received: list[int] = field(default_factory=list)  # receive time (ns) of each sample
    implausible: int = 0  # samples dropped for a header stamp far off the recording
    first_implausible: float = 0.0  # the first such stamp, for the warning

    @property
    def read(self) -> int:
        """Messages read from the storage, decoded or not."""
        return len(self.samples) + self.failed


def _receive_ns(stamp_ns: object) -> int:
    """A storage's receive time as an int of nanoseconds; ValueError if it is none."""
    if isinstance(stamp_ns, int):
        return stamp_ns
    if isinstance(stamp_ns, numbers.Integral):
        return int(stamp_ns)
    if isinstance(stamp_ns, float) and math.isfinite(stamp_ns):
        return int(stamp_ns)
    raise ValueError(f'the storage holds no valid receive time for it ({stamp_ns!r:.40})')


def _decode(sources: list[_Source], chosen: Mapping[str, _Topic], store: Typestore,
            warnings: list[str]) -> dict[str, _Decoded]:
    """Deserialise and convert the chosen topics' messages, one storage after the other.

    A message that does not decode is skipped; a storage that fails part-way keeps the
    messages read before the failure. Nothing else in the bag is deserialised.
    """
    decoded = {key: _Decoded() for key in chosen}
    alt_stores: dict[str, Typestore] = {}
    for source in sources:
        # connection id -> (ROS type, deserialiser, converter, where the samples go)
        plan: dict[int, tuple[str, Callable[..., Any], Callable[[Any], Any], _Decoded]] = {}
        for key, topic in chosen.items():
            msgtype, convert = _INPUTS[key]
            for src, conn in topic.conns:
                if src is source:
                    ts = _typestore_for(conn, store, warnings, alt_stores)
                    plan[conn.id] = (msgtype, ts.deserialize_cdr, convert, decoded[key])
        conns = [c for c in source.connections if c.id in plan]
        for conn, stamp_ns, raw in source.messages(conns):
            msgtype, deserialize, convert, out = plan[conn.id]
            try:
                # A damaged .db3 can hold anything in the timestamp column (SQLite is typed
                # per value); without a receive time the message cannot be placed.
                stamp_ns = _receive_ns(stamp_ns)
                sample = convert(deserialize(raw, msgtype))
            except Exception as exc:  # noqa: BLE001 - one bad message is skipped
                out.failed += 1
                if not out.first_error:
                    out.first_error = f'{type(exc).__name__}: {_one_line(exc)}'
                continue
            if sample.stamp == 0.0:
                sample = dataclasses.replace(sample, stamp=stamp_ns / _NS)
                out.zero_stamp += 1
            out.samples.append(sample)
            out.received.append(stamp_ns)
        if source.read_error:
            warnings.append(f'{source.label.name}: reading stopped early '
                            f'({source.read_error}); kept the messages read before it.')
        _check_total(source, warnings)
    return decoded


def _count_warnings(topics: Mapping[str, _Topic], chosen: Mapping[str, _Topic],
                    decoded: Mapping[str, _Decoded], warnings: list[str]) -> dict[str, int]:
    """Messages per bag topic, with a warning where messages were lost or patched up."""
    message_counts = {t.name: t.count for t in topics.values()}
    for key, topic in chosen.items():
        got = decoded[key]
        read = got.read
        kinds = {s.counts for s, _ in topic.conns}
        if read != topic.count and Counts.UNKNOWN not in kinds:
            where = ('metadata.yaml says' if Counts.METADATA in kinds
                     else 'the storage index says')
            warnings.append(f'{topic.name}: {where} {topic.count} messages but {read} were '
                            'read (the bag was probably not closed cleanly); using the '
                            f'{read} found.')
        message_counts[topic.name] = read
        if got.failed:
            warnings.append(f'{topic.name}: skipped {got.failed} of {read} messages that '
                            f'could not be decoded (first: {got.first_error}).')
        if got.zero_stamp:
            warnings.append(f'{topic.name}: {got.zero_stamp} messages had a zero header '
                            'stamp; used the time the bag received them.')
    return message_counts


# A header stamp is corrupt (a flipped bit in its sec field moves it by years) when it is
# far from the recording on two independent clocks:
#  - the receive clock: the storage's message timestamps, which the recorder writes. A stamp
#    within _STAMP_MARGIN_S of the span over which the bag received the topics used is
#    plausible, however it sits among its neighbours (a late sensor, a short gap).
#  - the topic's own series: a stamp within a tolerance of the median of the 2k+1 stamps
#    around it in receive order (itself included; k = _NEIGHBOURS) is plausible, however
#    far from the receive clock (a bag recorded with use_sim_time on the nodes but not on
#    the recorder, a sensor with its own unsynchronised clock: a constant offset or a
#    different rate moves every stamp of the topic alike). The tolerance is the margin
#    plus k typical intervals of the topic, so a sparse topic's first and last stamps (whose
#    windows are one-sided) are not mistaken. A topic with fewer than 3 samples has no
#    series: its stamps are compared with the stamps the other topics kept, +- the margin.
# Only a stamp off both is dropped, so an odd clock alone loses nothing, and a kept stamp
# lies within the margin of the receive span or of its neighbours: one bad stamp can no
# longer stretch a recording over years. The receive span itself is robust to a corrupt
# receive timestamp (the same neighbour test on the receive times, in storage order).
# The margin: header stamps lag the receive time by transport latency (milliseconds to a
# second); a minute is far beyond that and still catches a flip of bit 36 (68 s) or above.
_STAMP_MARGIN_S = 60.0
_NEIGHBOURS = 5
_CHUNK = 1 << 16  # windows per numpy step (bounds the median's temporary memory)


def _window_deviation(x: np.ndarray) -> np.ndarray:
    """|x[i] - median(x[i-k] .. x[i+k])|, each window cut at the ends of the series."""
    k, n = _NEIGHBOURS, len(x)
    dev = np.empty(n)
    width = 2 * k + 1
    if n >= width:
        view = np.lib.stride_tricks.sliding_window_view(x, width)
        for lo in range(0, len(view), _CHUNK):
            part = view[lo:lo + _CHUNK]
            dev[k + lo:k + lo + len(part)] = np.abs(x[k + lo:k + lo + len(part)]
                                                    - np.median(part, axis=1))
        ends = [*range(min(k, n)), *range(max(n - k, k), n)]
    else:
        ends = range(n)
    for i in ends:
        dev[i] = abs(x[i] - np.median(x[max(0, i - k):i + k + 1]))
    return dev


def _typical_interval(x: np.ndarray) -> float:
    """The median step of a series (robust to a few corrupt values), 0 when too short."""
    if len(x) < 2:
        return 0.0
    return float(np.median(np.abs(np.diff(x))))


def _received_span(decoded: Mapping[str, _Decoded]) -> tuple[float, float] | None:
    """(first, last) receive time in s over the topics used, ignoring corrupt ones."""
    lo, hi = math.inf, -math.inf
    for got in decoded.values():
        if not got.received:
            continue
        rx = np.array(got.received, dtype=np.float64) / _NS
        rx = rx[np.isfinite(rx)]
        if len(rx) >= 3:
            tol = _STAMP_MARGIN_S + _NEIGHBOURS * _typical_interval(rx)
            rx = rx[_window_deviation(rx) <= tol]
        if len(rx):
            lo, hi = min(lo, float(rx.min())), max(hi, float(rx.max()))
    return (lo, hi) if lo <= hi else None


def _drop_implausible_stamps(chosen: Mapping[str, _Topic], decoded: Mapping[str, _Decoded],
                             warnings: list[str]) -> None:
    """Drop the samples whose header stamp is far off the recording (see the rule above)."""
    span = _received_span(decoded)
    lo = span[0] - _STAMP_MARGIN_S if span else math.inf
    hi = span[1] + _STAMP_MARGIN_S if span else -math.inf
    stamps = {key: np.array([s.stamp for s in got.samples], dtype=np.float64)
              for key, got in decoded.items()}
    outside = {key: ~((x >= lo) & (x <= hi)) for key, x in stamps.items()}
    drop: dict[str, np.ndarray] = {}
    few = []
    for key, x in stamps.items():
        if not outside[key].any():
            continue
        if len(x) < 3:
            few.append(key)
            continue
        finite = np.where(np.isfinite(x), x, np.inf)
        tol = _STAMP_MARGIN_S + _NEIGHBOURS * _typical_interval(x[np.isfinite(x)])
        with np.errstate(invalid='ignore'):
            drop[key] = outside[key] & ~(_window_deviation(finite) <= tol)
    for key in few:  # no series of their own: beside what the other topics kept
        x = stamps[key]
        kept = [stamps[o][~drop[o]] if o in drop else stamps[o]
                for o in stamps if o != key and len(stamps[o]) >= 3]
        kept = [k[np.isfinite(k)] for k in kept]
        kept = [k for k in kept if len(k)]
        near = np.zeros(len(x), dtype=bool)
        if kept:
            k_lo = min(float(k.min()) for k in kept) - _STAMP_MARGIN_S
            k_hi = max(float(k.max()) for k in kept) + _STAMP_MARGIN_S
            near = (x >= k_lo) & (x <= k_hi)
        elif np.isfinite(x).all() and len(x) and np.ptp(x) <= _STAMP_MARGIN_S:
            near[:] = True  # nothing to compare with: a consistent pair is kept
        drop[key] = outside[key] & ~near
    for key, mask in drop.items():
        n = int(mask.sum())
        if not n:
            continue
        got = decoded[key]
        read = got.read
        got.implausible = n
        got.first_implausible = float(stamps[key][mask][0])
        keep = np.nonzero(~mask)[0].tolist()
        got.samples = [got.samples[i] for i in keep]
        got.received = [got.received[i] for i in keep]
        warnings.append(
            f'{chosen[key].name}: dropped {n} of {read} messages whose header stamp is '
            f'implausible (e.g. {got.first_implausible:.3f} s: more than '
            f'{_STAMP_MARGIN_S:g} s outside the time the bag received the topic and far '
            'from the neighbouring stamps; a corrupt stamp or sensor clock).')


def _check_required(bag: Path, required: tuple[str, ...], chosen: Mapping[str, _Topic],
                    decoded: Mapping[str, _Decoded]) -> None:
    """BagError when a required input's topic gave no sample at all, saying why."""
    empty = []
    for key in required:
        got = decoded[key]
        if not got.samples:
            topic = chosen[key]
            why = (f'none of its {got.read} messages could be decoded ({got.first_error})'
                   if got.read else 'it has no messages')
            if got.implausible:
                why = (f'all {got.implausible} of its decoded messages have implausible '
                       f'header stamps (e.g. {got.first_implausible:.3f} s)')
            errors = {s.read_error for s, _ in topic.conns if s.read_error}
            if errors:
                why += f'; reading failed: {"; ".join(sorted(errors))}'
            empty.append(f'topic {topic.name} (for {key!r}): {why}')
    if empty:
        raise BagError(f'{bag}: ' + '; '.join(empty) + _RECORD_HINT)


def _recording(bag: Path, sources: list[_Source], chosen: Mapping[str, _Topic],
               decoded: Mapping[str, _Decoded], message_counts: dict[str, int],
               warnings: list[str]) -> Recording:
    """The Recording: every logical input's samples sorted by stamp, and the time span."""
    samples: dict[str, list[Any]] = {
        key: decoded[key].samples if key in decoded else [] for key in LOGICAL_INPUTS}
    stamps: list[float] = []
    for lst in samples.values():
        lst.sort(key=attrgetter('stamp'))
        if lst:
            stamps += [lst[0].stamp, lst[-1].stamp]
    finite = [x for x in stamps if math.isfinite(x)]
    storage_ids = {s.storage_id for s in sources}
    return Recording(
        path=bag,
        storage_id=storage_ids.pop() if len(storage_ids) == 1 else 'mixed',
        samples=samples,
        topics={key: topic.name for key, topic in chosen.items()},
        message_counts=message_counts,
        start_time=min(finite, default=0.0),
        end_time=max(finite, default=0.0),
        warnings=warnings,
    )


# --------------------------------------------------------------------------- reading


def read_bag(
    path: str | os.PathLike[str],
    topic_map: TopicMap | Mapping[str, str] | Iterable[str] | None = None,
    *,
    required: Iterable[str] = REQUIRED_INPUTS,
) -> Recording:
    """Read one bag (directory or .db3/.mcap file) into a Recording; BagError if unusable.

    Only the topics of the topic map are deserialised, so large bags with cameras or
    lidars cost little more than their sensor topics.
    """
    bag = Path(path).expanduser()
    tmap = _as_topic_map(topic_map)
    needed = _required_inputs(tmap, required)
    store = _shared_store()
    warnings: list[str] = []
    try:
        with ExitStack() as stack:
            sources = _open_bag(bag, stack, warnings)
            topics = _bag_topics(sources)
            chosen = _choose_topics(bag, tmap, needed, topics, warnings)
            _warn_unknown_types(topics, chosen, store, warnings)
            decoded = _decode(sources, chosen, store, warnings)
            message_counts = _count_warnings(topics, chosen, decoded, warnings)
            _drop_implausible_stamps(chosen, decoded, warnings)
            _check_required(bag, needed, chosen, decoded)
    except OSError as exc:  # permissions, a vanished file, a bad path: one clear line
        raise BagError(_os_error(bag, exc)) from None
    return _recording(bag, sources, chosen, decoded, message_counts, warnings)


def read_bags(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    topic_map: TopicMap | Mapping[str, str] | Iterable[str] | None = None,
    *,
    required: Iterable[str] = REQUIRED_INPUTS,
    skip_bad: bool = False,
) -> list[Recording]:
    """Read every bag under the given paths (see find_bags), in path order.

    With skip_bad, bags that raise BagError are left out and the reason is put in the
    warnings of the first recording read; without it the first BagError is raised.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    unreadable: list[str] = []
    bags = find_bags(paths, unreadable=unreadable)
    folders = ('; could not read folder(s): ' + ', '.join(unreadable) +
               '. Check their permissions.') if unreadable else ''
    if not bags:
        raise BagError(f'no rosbag2 bags found under {", ".join(str(x) for x in paths)} '
                       '(looked for folders with metadata.yaml and .db3/.mcap files)'
                       + (folders or '.'))
    recordings: list[Recording] = []
    skipped: list[str] = []
    for bag in bags:
        try:
            recordings.append(read_bag(bag, topic_map, required=required))
        except BagError as exc:
            if not skip_bad:
                raise
            skipped.append(f'skipped bag: {exc}')
    if not recordings:
        raise BagError('no usable bag: ' + ' | '.join(skipped) + folders)
    recordings[0].warnings.extend(skipped)
    recordings[0].warnings.extend(f'skipped an unreadable folder: {x}; bags in it were not '
                                  'read. Check its permissions.' for x in unreadable)
    return recordings
