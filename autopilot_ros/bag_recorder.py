"""Recording serialised messages into a rosbag2 mcap bag that survives a power cut.

The pure core of `autopilot-record` (no rclpy; the ROS layer is record_node.py): message
definitions as `ros2 bag record` stores them, the QoS a recorder must ask for to hear a
publisher, the bag writer and the live line. The bag is rosbag2's layout (a folder with
metadata.yaml and NAME_0.mcap, NAME_1.mcap, ...) so `ros2 bag info`, rosbags and the
training reader accept it. Why not `BagWriter` (training/bags/writer.py): it writes whole
bags through rosbags, whose mcap writer closes a chunk only every MiB and has no way to
flush on time, fsync or split; the `mcap` library (the format's reference writer, already
pinned) has `flush()`. Reading a bag back is the training reader's job, cut files included
(training/bags/salvage.py reads a file cut mid-chunk up to the last whole message).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
import datetime
import json
import os
from pathlib import Path
import re
import time
from typing import Any, BinaryIO

import yaml

# rosbag2's delimiter between the definitions of a type and its dependencies.
DEFINITION_SEPARATOR = '=' * 80 + '\n'
_PRIMITIVES = frozenset((
    'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16',
    'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring', 'time', 'duration'))
# A field line's type, as rosbag2's LocalMessageDefinitionSource finds it (comments and
# constants included: a constant's type is a primitive).
_FIELD_TYPE = re.compile(r'(?:^|\n)\s*([a-zA-Z0-9_/]+)(?:<=[0-9]+)?(?:\[(?:<=)?[0-9]*\])?\s+')
_TYPE_NAME = re.compile(r'^([a-zA-Z0-9_]+)/(?:msg/)?([a-zA-Z0-9_]+)$')
NS = 1_000_000_000
METADATA_VERSION = 9  # rosbag2's metadata version in Jazzy and Kilted
COMPRESSIONS = ('none', 'zstd', 'lz4')
# An mcap Message record around the data: opcode, length, channel, sequence, two times.
_MESSAGE_OVERHEAD = 1 + 8 + 2 + 4 + 8 + 8


class RecordError(Exception):
    """Something the user must fix before recording can start (one line, what to do)."""


# -- message definitions ------------------------------------------------------------------
def _share_dirs(prefixes: Sequence[str] | None = None) -> list[Path]:
    if prefixes is None:
        prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    return [Path(p) / 'share' for p in prefixes]


def _find_msg_file(package: str, name: str, suffix: str, shares: Sequence[Path]) -> Path:
    for share in shares:
        path = share / package / 'msg' / f'{name}{suffix}'
        if path.is_file():
            return path
    raise RecordError(f'{package}/msg/{name}{suffix} is not installed in any prefix of '
                      'AMENT_PREFIX_PATH (source the ROS setup file that has the package)')


def _split_type(msgtype: str) -> tuple[str, str]:
    match = _TYPE_NAME.match(msgtype.strip())
    if match is None:
        raise RecordError(f'{msgtype!r} is not a message type name (package/msg/Type)')
    return match.group(1), match.group(2)


def _dependencies(text: str, package: str) -> list[str]:
    deps = set()
    for found in _FIELD_TYPE.finditer(text):
        name = found.group(1)
        if name in _PRIMITIVES:
            continue
        deps.add(name if '/' in name else f'{package}/{name}')
    return sorted(deps)


def message_definition(msgtype: str, prefixes: Sequence[str] | None = None) -> str:
    """The full ros2msg definition of a type, byte for byte as `ros2 bag record` writes it.

    The type's .msg file as installed (comments kept), then every dependency once, depth
    first in sorted order, each after a line of 80 '=' and 'MSG: pkg/Type': rosbag2's
    LocalMessageDefinitionSource. A reader decodes a bag from other versions with it.
    """
    shares = _share_dirs(prefixes)
    seen: set[str] = set()

    def text_of(name: str, depth: int) -> str:
        if depth <= 0:
            raise RecordError(f'{msgtype}: message definitions nest too deep (a cycle?)')
        package, short = _split_type(name)
        text = _find_msg_file(package, short, '.msg', shares).read_text(encoding='utf-8')
        out = text
        for dep in _dependencies(text, package):
            key = '/'.join(_split_type(dep))
            if key not in seen:
                seen.add(key)
                out += f'\n{DEFINITION_SEPARATOR}MSG: {dep}\n' + text_of(dep, depth - 1)
        return out

    return text_of(msgtype, 50)


def type_hash(msgtype: str, prefixes: Sequence[str] | None = None) -> str:
    """The type's RIHS01 hash as rosidl computed it (the .json installed beside the .msg)."""
    package, short = _split_type(msgtype)
    path = _find_msg_file(package, short, '.json', _share_dirs(prefixes))
    try:
        hashes = json.loads(path.read_text(encoding='utf-8'))['type_hashes']
        full = f'{package}/msg/{short}'
        return next(h['hash_string'] for h in hashes if h['type_name'] == full)
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise RecordError(f'{path}: no type hash for {msgtype} in it ({exc!r})') from None


# -- QoS --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Offer:
    """What one publisher offers, as far as matching a recorder's request depends on it."""

    reliable: bool
    transient_local: bool = False


@dataclass(frozen=True)
class Request:
    """The subscription QoS the recorder asks for on one topic."""

    reliable: bool
    transient_local: bool
    reason: str


def adapt_request(offers: Sequence[Offer], default_reliable: bool) -> Request:
    """A request every publisher on the topic matches, as reliable as all of them allow.

    rosbag2's rule: a reliable request does not match a best-effort publisher, a
    transient-local one not a volatile publisher. With no publisher yet, the topic's
    contract decides (sensors best effort, status and commands reliable), and the ROS layer
    asks again when a publisher that would not match appears.
    """
    if not offers:
        return Request(default_reliable, False, "no publisher yet: the topic's contract")
    reliable = all(o.reliable for o in offers)
    durable = all(o.transient_local for o in offers)
    which = 'reliable' if reliable else 'best effort'
    return Request(reliable, durable, f'{len(offers)} publisher(s): {which}'
                   + (', transient local' if durable else ''))


def matches(request: Request, offer: Offer) -> bool:
    """Whether DDS matches this publisher with the request (reliability and durability)."""
    return (offer.reliable or not request.reliable) and \
        (offer.transient_local or not request.transient_local)


# -- the bag ------------------------------------------------------------------------------
@dataclass
class TopicInfo:
    """One recorded topic: what metadata.yaml and the mcap channel say about it."""

    name: str
    msgtype: str
    definition: str
    type_hash: str
    offered_qos: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0  # messages in the whole bag


@dataclass
class _File:
    path: str
    start_ns: int = 0
    end_ns: int = 0
    count: int = 0


def default_bag_name(now: float | None = None) -> str:
    """rosbag2's default name pattern, with this package's prefix."""
    stamp = datetime.datetime.fromtimestamp(time.time() if now is None else now)
    return stamp.strftime('autopilot_%Y_%m_%d-%H_%M_%S')


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _yaml_qos(profiles: list[dict[str, Any]]) -> str:
    return yaml.safe_dump(profiles, default_flow_style=False, sort_keys=False).strip() \
        if profiles else ''


class BagRecorder:
    """Writes serialised messages into a rosbag2 mcap bag, split and flushed as it goes.

    Chunks are closed, written and fsynced every `flush_interval` seconds of wall time, so
    a power cut loses at most that much; metadata.yaml is written (atomically) at the start
    and at every split and close, and lists every file, so the bag is a bag at any moment.
    A file reaching `max_bag_size` bytes or `max_bag_duration` seconds of messages is
    finished and the next one started. One thread only: the ROS layer feeds it from a queue.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bag_size: int = 0,
                 max_bag_duration: float = 0.0, flush_interval: float = 1.0,
                 compression: str = 'none', chunk_size: int = 1 << 20,
                 ros_distro: str | None = None) -> None:
        if compression not in COMPRESSIONS:
            raise RecordError(f'compression must be one of {", ".join(COMPRESSIONS)}')
        if max_bag_size < 0 or max_bag_duration < 0 or flush_interval <= 0:
            raise RecordError('--max-bag-size and --max-bag-duration must be >= 0 (0: no '
                              'limit), the flush interval > 0')
        self.path = Path(path).expanduser()
        if self.path.exists():
            raise RecordError(f'{self.path} exists already; choose another output folder')
        self.max_bag_size = int(max_bag_size)
        self.max_bag_duration_ns = round(max_bag_duration * NS)
        self.flush_interval = flush_interval
        self.compression = compression
        self.chunk_size = chunk_size
        self.ros_distro = ros_distro or os.environ.get('ROS_DISTRO', 'kilted')
        self.topics: dict[str, TopicInfo] = {}
        self.files: list[_File] = []
        self.bytes_closed = 0  # the size of the finished files
        self._writer: Any = None
        self._stream: BinaryIO | None = None
        self._channels: dict[str, int] = {}
        self._last_flush = 0.0
        self._pending = 0  # bytes of the messages in the chunk being filled
        self._open = False

    # -- life cycle ---------------------------------------------------------------------
    def open(self) -> BagRecorder:
        try:
            self.path.mkdir(parents=True)
        except OSError as exc:
            raise RecordError(f'{self.path}: cannot create the bag folder '
                              f'({exc.strerror or exc})') from None
        self._open = True
        self._start_file()
        return self

    def close(self) -> None:
        """Finish the current file (summary and footer) and write the final metadata.yaml."""
        if not self._open:
            return
        self._open = False
        self._finish_file()
        self.write_metadata()

    def __enter__(self) -> BagRecorder:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def file_size(self) -> int:
        """Bytes of the current file: on disk, and the chunk being filled (uncompressed)."""
        return (self._stream.tell() + self._pending) if self._stream is not None else 0

    @property
    def size(self) -> int:
        return self.bytes_closed + self.file_size

    @property
    def message_count(self) -> int:
        return sum(f.count for f in self.files)

    def _start_file(self) -> None:
        from mcap.writer import CompressionType, Writer

        index = len(self.files)
        name = f'{self.path.name}_{index}.mcap'
        self._stream = (self.path / name).open('xb')
        self._writer = Writer(self._stream, chunk_size=self.chunk_size,
                              compression=CompressionType[self.compression.upper()])
        self._writer.start(profile='ros2', library='autopilot_ros autopilot-record')
        self.files.append(_File(name))
        self._channels = {}
        self._schemas: dict[str, int] = {}
        for info in self.topics.values():
            if info.count:  # the others are registered with their first message
                self._register(info)
        self._sync()
        self.write_metadata()

    def _finish_file(self) -> None:
        assert self._writer is not None and self._stream is not None
        current = self.files[-1]
        for info in self.topics.values():  # so the file lists every topic, as metadata.yaml
            if info.name not in self._channels:
                self._register(info)
        self._writer.add_metadata('rosbag2', {
            'serialized_metadata': yaml.safe_dump(self._metadata([current]), sort_keys=False)})
        self._writer.finish()
        self._sync()
        self.bytes_closed += self._stream.tell()
        self._stream.close()
        self._writer = self._stream = None

    def _sync(self) -> None:
        """Everything written so far to the disk itself, not the page cache."""
        assert self._stream is not None
        self._pending = 0
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._last_flush = time.monotonic()

    # -- topics and messages ------------------------------------------------------------
    def add_topic(self, info: TopicInfo) -> None:
        """Declare a topic; it stays in metadata.yaml even if no message ever arrives.

        The publishers' offered QoS may be updated until the topic's first message; then
        it is written into the mcap channel, and metadata.yaml must say the same (readers
        match the two).
        """
        old = self.topics.get(info.name)
        if old is None:
            self.topics[info.name] = info
        elif old.msgtype != info.msgtype:
            raise RecordError(f'{info.name}: recorded as {old.msgtype}, now offered as '
                              f'{info.msgtype}')
        elif info.name not in self._channels and not old.count:
            old.offered_qos = info.offered_qos

    def _register(self, info: TopicInfo) -> None:
        schema = self._schemas.get(info.msgtype)
        if schema is None:
            schema = self._writer.register_schema(info.msgtype, 'ros2msg',
                                                  info.definition.encode())
            self._schemas[info.msgtype] = schema
        self._channels[info.name] = self._writer.register_channel(
            info.name, 'cdr', schema, {'offered_qos_profiles': _yaml_qos(info.offered_qos),
                                       'topic_type_hash': info.type_hash})

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int = 0,
              sequence: int = 0) -> None:
        """One message as received (its CDR bytes untouched), at receive time log_time_ns."""
        current = self.files[-1]
        if topic not in self._channels:
            self._register(self.topics[topic])  # its QoS is final from here on
        if (self.max_bag_duration_ns and current.count
                and log_time_ns - current.start_ns >= self.max_bag_duration_ns):
            self.split()
            current = self.files[-1]
        self._writer.add_message(self._channels[topic], log_time_ns, data,
                                 publish_time_ns or log_time_ns, sequence & 0xFFFFFFFF)
        if not current.count:
            current.start_ns = current.end_ns = log_time_ns
        current.start_ns = min(current.start_ns, log_time_ns)
        current.end_ns = max(current.end_ns, log_time_ns)
        current.count += 1
        self.topics[topic].count += 1
        self._pending += len(data) + _MESSAGE_OVERHEAD
        if self.max_bag_size and self.file_size >= self.max_bag_size:
            self.split()

    def tick(self, now: float | None = None) -> bool:
        """Flush and fsync when `flush_interval` has passed; True if it flushed."""
        now = time.monotonic() if now is None else now
        if not self._open or now - self._last_flush < self.flush_interval:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Close the chunk being filled, write it and fsync: on disk what was received."""
        if self._open:
            self._writer.flush()
            self._sync()

    def split(self) -> None:
        """Finish this file and start the next one (metadata.yaml lists both)."""
        self._finish_file()
        self._start_file()

    # -- metadata.yaml --------------------------------------------------------------------
    def _metadata(self, files: Iterable[_File]) -> dict[str, Any]:
        files = list(files)
        counted = [f for f in files if f.count]
        start = min((f.start_ns for f in counted), default=0)
        end = max((f.end_ns for f in counted), default=0)
        return {
            'version': METADATA_VERSION,
            'storage_identifier': 'mcap',
            'duration': {'nanoseconds': end - start},
            'starting_time': {'nanoseconds_since_epoch': start},
            'message_count': sum(f.count for f in files),
            'topics_with_message_count': [{
                'topic_metadata': {
                    'name': t.name,
                    'type': t.msgtype,
                    'serialization_format': 'cdr',
                    'offered_qos_profiles': t.offered_qos,
                    'type_description_hash': t.type_hash,
                },
                'message_count': t.count,
            } for t in self.topics.values()],
            'compression_format': '',
            'compression_mode': '',
            'relative_file_paths': [f.path for f in files],
            'files': [{
                'path': f.path,
                'starting_time': {'nanoseconds_since_epoch': f.start_ns},
                'duration': {'nanoseconds': f.end_ns - f.start_ns},
                'message_count': f.count,
            } for f in files],
            'custom_data': {'recorder': 'autopilot-record'},
            'ros_distro': self.ros_distro,
        }

    def write_metadata(self) -> None:
        """metadata.yaml for the whole bag so far, replaced atomically and fsynced."""
        text = yaml.safe_dump({'rosbag2_bagfile_information': self._metadata(self.files)},
                              default_flow_style=False, sort_keys=False)
        tmp = self.path / 'metadata.yaml.tmp'
        with tmp.open('w', encoding='utf-8') as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path / 'metadata.yaml')
        _fsync_dir(self.path)


# -- the live line ------------------------------------------------------------------------
class RateMeter:
    """Messages per second per topic over a sliding window, for the live line."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._times: dict[str, list[float]] = {}

    def add(self, topic: str, now: float) -> None:
        self._times.setdefault(topic, []).append(now)

    def rates(self, now: float) -> dict[str, float]:
        out = {}
        for topic, times in self._times.items():
            cut = now - self.window
            keep = [t for t in times if t > cut]
            self._times[topic] = keep
            out[topic] = len(keep) / self.window
        return out


def human_size(size: float) -> str:
    for unit in ('B', 'kB', 'MB', 'GB'):
        if size < 1000 or unit == 'GB':
            return f'{size:.0f} {unit}' if unit == 'B' else f'{size:.1f} {unit}'
        size /= 1000
    return f'{size:.1f} GB'  # pragma: no cover


def live_line(elapsed: float, rates: Mapping[str, float], topics: Iterable[str],
              size: int, files: int, dropped: int = 0) -> str:
    """One line: time, Hz per topic (0 for a silent one), size, files, queue drops."""
    minutes, seconds = divmod(int(elapsed), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f'{hours:d}:{minutes:02d}:{seconds:02d}']
    for topic in topics:
        parts.append(f'{topic.rsplit("/", 1)[-1] or topic} {rates.get(topic, 0.0):.0f} Hz')
    parts.append(human_size(size) + (f' in {files} files' if files > 1 else ''))
    if dropped:
        parts.append(f'{dropped} dropped')
    return '  '.join(parts)
