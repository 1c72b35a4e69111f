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
from operator import attrgetter
import os
from pathlib import Path
from typing import Any

from rosbags.typesys.store import Typestore

from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SpeedSample,
    WindSample,
)
from autopilot_ros.status import StatusSample
from autopilot_ros.training.bags.errors import BagError, TopicMapError, _one_line
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

    @property
    def read(self) -> int:
        """Messages read from the storage, decoded or not."""
        return len(self.samples) + self.failed


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
    with ExitStack() as stack:
        sources = _open_bag(bag, stack, warnings)
        topics = _bag_topics(sources)
        chosen = _choose_topics(bag, tmap, needed, topics, warnings)
        _warn_unknown_types(topics, chosen, store, warnings)
        decoded = _decode(sources, chosen, store, warnings)
        message_counts = _count_warnings(topics, chosen, decoded, warnings)
        _check_required(bag, needed, chosen, decoded)
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
    bags = find_bags(paths)
    if not bags:
        raise BagError(f'no rosbag2 bags found under {", ".join(str(x) for x in paths)} '
                       '(looked for folders with metadata.yaml and .db3/.mcap files).')
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
        raise BagError('no usable bag: ' + ' | '.join(skipped))
    recordings[0].warnings.extend(skipped)
    return recordings
