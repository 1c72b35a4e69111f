"""rosbag2 input and output for training: recordings in, sample lists out.

A sailor records the sensor topics with `ros2 bag record` while steering by hand; training
reads those bags here, without ROS, through the pure-Python `rosbags` library. Every input
becomes the same plain samples the node builds (autopilot_ros.samples), so training and
serving see one conversion. Bags from a boat are often imperfect (power cut mid-recording,
metadata.yaml lost, a sensor on another topic name), so the reader recovers what it can,
says what it did in `Recording.warnings`, and reports anything it cannot use as one
`BagError` whose message names the path, the problem and what to do.

`BagWriter` writes real rosbag2 bags (sqlite3 or mcap) of the same messages, for tests,
the simulator and synthetic training data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, suppress
import dataclasses
from dataclasses import dataclass, field
import math
from operator import attrgetter
import os
from pathlib import Path
import re
import shutil
import sqlite3
import tempfile
from types import TracebackType
from typing import Any, ClassVar

import numpy as np
from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    MessageDefinition,
    MessageDefinitionFormat,
    Nodetype,
)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from autopilot_ros.samples import (
    INPUT_TOPICS,
    SAMPLE_MESSAGES,
    HeadingSample,
    ImuSample,
    RudderSample,
    SensorSample,
    SpeedSample,
    WindSample,
    stamp_seconds,
)

__all__ = [
    'LOGICAL_INPUTS',
    'PACKAGE_TYPES',
    'REQUIRED_INPUTS',
    'BagError',
    'BagWriter',
    'Recording',
    'StatusSample',
    'TopicMap',
    'TopicMapError',
    'find_bags',
    'make_typestore',
    'msg_definitions_dir',
    'read_bag',
    'read_bags',
]

PACKAGE = 'autopilot_ros'
# The package's own message types, by .msg file stem.
PACKAGE_TYPES = ('Heading', 'Wind', 'RudderAngle', 'RudderCommand', 'AutopilotStatus')

# Logical inputs in DESIGN.md order; the names are the relative topic names of DESIGN.md.
LOGICAL_INPUTS = (
    'imu', 'heading', 'wind', 'speed', 'rudder_angle', 'rudder_command', 'autopilot/status'
)
# What training cannot do without: the sensors the features need and the label.
REQUIRED_INPUTS = ('imu', 'heading', 'wind', 'rudder_angle')

STORAGE_IDS = ('sqlite3', 'mcap')
_SUFFIX_STORAGE = {'.db3': 'sqlite3', '.mcap': 'mcap'}
_MCAP_MAGIC = b'\x89MCAP0\r\n'
_SQLITE_MAGIC = b'SQLite format 3\x00'
_NS = 1_000_000_000
# ROS numeric base types -> numpy: rosbags (de)serialises numeric arrays as numpy arrays.
_NUMPY = {name: getattr(np, name) for name in (
    'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64',
    'uint64')} | {'byte': np.uint8, 'octet': np.uint8, 'char': np.uint8}
# (connection, receive time in ns, CDR bytes), as rosbags' readers yield them.
_Messages = Iterator[tuple[Connection, int, bytes]]


class BagError(Exception):
    """A bag that cannot be used, with one message: path, problem, what to do."""


class TopicMapError(BagError, ValueError):
    """A malformed topic mapping (bad key or 'key=topic' string)."""


# --------------------------------------------------------------------------- types


def msg_definitions_dir() -> Path:
    """The folder holding the package's .msg files, wherever the package was installed.

    The pip route copies them to autopilot_ros/msg_defs/, colcon installs them to the ament
    share folder, and a source checkout has them in <repo>/msg; all three must work.
    """
    candidates: list[Path] = []
    with suppress(Exception):
        import autopilot_ros

        candidates.append(Path(autopilot_ros.__file__).resolve().parent / 'msg_defs')
    candidates.append(Path(__file__).resolve().parents[1] / 'msg_defs')
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / 'msg')
    except Exception:  # noqa: BLE001 - no ament index (pip install) is a normal case
        pass
    candidates.append(Path(__file__).resolve().parents[1] / 'msg')
    for folder in candidates:
        if all((folder / f'{name}.msg').is_file() for name in PACKAGE_TYPES):
            return folder
    looked = ', '.join(dict.fromkeys(str(x) for x in candidates))
    raise BagError(
        f'cannot find the {PACKAGE} message definitions '
        f'({", ".join(x + ".msg" for x in PACKAGE_TYPES)}); '
        f'looked in: {looked}. Reinstall the package (pip install . or colcon build) or run '
        'from a source checkout that has msg/.'
    )


def _base_store() -> Typestore:
    """The rosbags store of the ROS 2 distribution this package targets (Kilted)."""
    for name in ('ROS2_KILTED', 'ROS2_JAZZY', 'LATEST'):
        store = getattr(Stores, name, None)
        if store is not None:
            return get_typestore(store)
    return get_typestore(Stores.LATEST)  # pragma: no cover


_PACKAGE_TYPEDEFS: dict[str, Any] = {}


def _package_typedefs() -> dict[str, Any]:
    """Parsed .msg files of the package, parsed once per process."""
    if not _PACKAGE_TYPEDEFS:
        folder = msg_definitions_dir()
        typedefs: dict[str, Any] = {}
        for name in PACKAGE_TYPES:
            text = (folder / f'{name}.msg').read_text(encoding='utf-8')
            typedefs.update(get_types_from_msg(text, f'{PACKAGE}/msg/{name}'))
        _PACKAGE_TYPEDEFS.update(typedefs)
    return dict(_PACKAGE_TYPEDEFS)


def make_typestore() -> Typestore:
    """A ROS 2 typestore that also knows autopilot_ros/msg/* (a new one on every call)."""
    store = _base_store()
    store.register(_package_typedefs())
    return store


_SHARED_STORE: list[Typestore] = []


def _shared_store() -> Typestore:
    """One typestore for all reads: rosbags caches its generated (de)serialisers in it."""
    if not _SHARED_STORE:
        _SHARED_STORE.append(make_typestore())
    return _SHARED_STORE[0]


def _normalise_type(msgtype: str) -> str:
    """'pkg/Type' (ROS 1 style) -> 'pkg/msg/Type'; full names unchanged."""
    parts = msgtype.strip().split('/')
    return f'{parts[0]}/msg/{parts[1]}' if len(parts) == 2 else msgtype.strip()


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True, slots=True)
class StatusSample:
    """What the pilot was doing (autopilot/status), to tell hand steering from pilot steering."""

    stamp: float
    mode: str
    engaged: bool
    target: float
    target_heading: float
    command: float
    policy: int


def _rudder_command_from_msg(msg: Any) -> RudderSample:
    """The command has the rudder's sign and scale, so it fits a RudderSample."""
    return RudderSample(stamp_seconds(msg.header), msg.command)


def _status_from_msg(msg: Any) -> StatusSample:
    return StatusSample(
        stamp_seconds(msg.header), msg.mode, bool(msg.engaged), msg.target,
        msg.target_heading, msg.command, int(msg.policy),
    )


# Logical input -> (ROS type, converter to a sample).
_INPUTS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    **INPUT_TOPICS,
    'rudder_command': (f'{PACKAGE}/msg/RudderCommand', _rudder_command_from_msg),
    'autopilot/status': (f'{PACKAGE}/msg/AutopilotStatus', _status_from_msg),
}


# --------------------------------------------------------------------------- topic map


@dataclass(frozen=True)
class TopicMap:
    """Which bag topic carries each logical input.

    Names as in DESIGN.md by default. A relative name ('imu') matches '/imu', or a
    namespaced '/boat/imu' when that is the only such topic of the right type; an absolute
    name ('/boat/compass') matches exactly that topic (with or without its leading '/').
    An empty name switches an optional input off.
    """

    imu: str = 'imu'
    heading: str = 'heading'
    wind: str = 'wind'
    speed: str = 'speed'
    rudder_angle: str = 'rudder_angle'
    rudder_command: str = 'rudder_command'
    status: str = 'autopilot/status'

    # Logical input name -> field name (the status topic's name is not an identifier).
    FIELDS: ClassVar[dict[str, str]] = {
        'imu': 'imu', 'heading': 'heading', 'wind': 'wind', 'speed': 'speed',
        'rudder_angle': 'rudder_angle', 'rudder_command': 'rudder_command',
        'autopilot/status': 'status',
    }

    def __post_init__(self) -> None:
        for key in LOGICAL_INPUTS:
            name = self.topic(key)
            if not isinstance(name, str) or re.search(r'\s', name) or name.endswith('/'):
                raise TopicMapError(f'topic map: {key!r} -> {name!r} is not a valid topic name')

    @classmethod
    def from_dict(cls, mapping: Mapping[str, str]) -> TopicMap:
        """From {'heading': '/boat/compass', ...}; keys are logical inputs (or 'status')."""
        kwargs: dict[str, str] = {}
        for key, topic in mapping.items():
            name = cls.FIELDS.get(key, key if key in cls.FIELDS.values() else None)
            if name is None:
                raise TopicMapError(
                    f'topic map: unknown input {key!r}; known inputs: {", ".join(LOGICAL_INPUTS)}'
                )
            kwargs[name] = '' if topic is None else str(topic).strip()
        return cls(**kwargs)

    @classmethod
    def from_strings(cls, items: Iterable[str]) -> TopicMap:
        """From CLI arguments like 'heading=/boat/compass' (repeatable)."""
        mapping: dict[str, str] = {}
        for item in items:
            key, sep, topic = item.partition('=')
            if not sep or not key.strip():
                raise TopicMapError(
                    f'topic map: {item!r} is not of the form input=topic '
                    f'(e.g. heading=/boat/compass); inputs: {", ".join(LOGICAL_INPUTS)}'
                )
            mapping[key.strip()] = topic.strip()
        return cls.from_dict(mapping)

    def topic(self, key: str) -> str:
        """The configured name for a logical input ('' when switched off)."""
        try:
            return getattr(self, self.FIELDS[key])
        except KeyError:
            raise TopicMapError(
                f'topic map: unknown input {key!r}; known inputs: {", ".join(LOGICAL_INPUTS)}'
            ) from None

    def absolute(self, key: str, namespace: str = '/') -> str:
        """The fully qualified topic name, as `ros2 bag record` stores it."""
        name = self.topic(key)
        if name.startswith('/'):
            return name
        return '/' + '/'.join(x for x in (namespace.strip('/'), name) if x)

    def items(self) -> list[tuple[str, str]]:
        """(logical input, configured name) pairs in DESIGN.md order."""
        return [(key, self.topic(key)) for key in LOGICAL_INPUTS]


def _as_topic_map(topic_map: TopicMap | Mapping[str, str] | Iterable[str] | None) -> TopicMap:
    if topic_map is None:
        return TopicMap()
    if isinstance(topic_map, TopicMap):
        return topic_map
    if isinstance(topic_map, Mapping):
        return TopicMap.from_dict(topic_map)
    if isinstance(topic_map, str):
        return TopicMap.from_strings([topic_map])
    return TopicMap.from_strings(topic_map)


def _abs(topic: str) -> str:
    return topic if topic.startswith('/') else '/' + topic


# --------------------------------------------------------------------------- recording


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


# --------------------------------------------------------------------------- storage access


class _McapSalvage:
    """Reads what an MCAP file without a usable footer or summary still holds.

    A recorder killed by a power cut leaves the data section without its summary and
    footer; rosbags refuses such a file. Records are read in file order until the first
    one that is cut off, and the cut-off tail of a chunk is used as far as it goes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections: list[Connection] = []
        self.size = 0
        self.stop_offset = 0
        self.stop_reason = ''
        self.complete = False
        self.message_count = 0

    def open(self) -> None:
        data = self.path.read_bytes()
        self.size = len(data)
        if not data.startswith(_MCAP_MAGIC):
            raise ValueError('it does not start with the MCAP magic bytes')
        schemas: dict[int, tuple[str, str, str]] = {}
        channels: dict[int, tuple[str, int, str]] = {}
        counts: dict[int, int] = {}
        for op, body in self._records(data):
            if op == 0x05:
                cid = int.from_bytes(body[0:2], 'little')
                counts[cid] = counts.get(cid, 0) + 1
            elif op == 0x03:
                sid = int.from_bytes(body[0:2], 'little')
                name, pos = _mcap_string(body, 2)
                encoding, pos = _mcap_string(body, pos)
                size = int.from_bytes(body[pos:pos + 4], 'little')
                schemas[sid] = (name, encoding, bytes(body[pos + 4:pos + 4 + size]).decode())
            elif op == 0x04:
                cid = int.from_bytes(body[0:2], 'little')
                sid = int.from_bytes(body[2:4], 'little')
                topic, pos = _mcap_string(body, 4)
                encoding, pos = _mcap_string(body, pos)
                channels[cid] = (topic, sid, encoding)
        fmts = {'ros2msg': MessageDefinitionFormat.MSG, 'ros2idl': MessageDefinitionFormat.IDL}
        for cid, (topic, sid, encoding) in sorted(channels.items()):
            name, schema_encoding, text = schemas.get(sid, ('', '', ''))
            msgdef = MessageDefinition(
                fmts.get(schema_encoding, MessageDefinitionFormat.NONE),
                text if schema_encoding in fmts else '',
            )
            self.connections.append(Connection(
                cid, topic, name, msgdef, '', counts.get(cid, 0),
                ConnectionExtRosbag2(encoding, []), self,
            ))
        self.message_count = sum(counts.values())

    def close(self) -> None:
        self.connections = []

    def messages(self, connections: Sequence[Connection]) -> _Messages:
        wanted = {x.id: x for x in connections}
        for op, body in self._records(self.path.read_bytes()):
            if op == 0x05:
                conn = wanted.get(int.from_bytes(body[0:2], 'little'))
                if conn is not None:
                    yield conn, int.from_bytes(body[6:14], 'little'), bytes(body[22:])

    def _records(self, data: bytes) -> Iterator[tuple[int, memoryview]]:
        """Top-level records and the records inside chunks, until the data runs out."""
        view = memoryview(data)
        pos, end = len(_MCAP_MAGIC), len(view)
        self.complete = False
        while pos < end:
            if pos + 9 > end:
                self._stop(pos, 'a record header is cut off')
                return
            op = view[pos]
            length = int.from_bytes(view[pos + 1:pos + 9], 'little')
            body_end = pos + 9 + length
            if body_end > end:
                if op == 0x06:
                    yield from self._chunk(view[pos + 9:end], partial=True)
                self._stop(pos, 'the last record is cut off')
                return
            body = view[pos + 9:body_end]
            if op == 0x06:
                yield from self._chunk(body, partial=False)
            elif op in (0x0F, 0x02):  # data end, footer: the rest is index and summary
                self.complete = op == 0x02 or body_end < end
                self.stop_offset = body_end
                return
            elif op in (0x03, 0x04, 0x05):
                yield op, body
            pos = body_end
        self._stop(pos, 'the file ends without a summary or footer')

    def _stop(self, offset: int, reason: str) -> None:
        self.stop_offset, self.stop_reason = offset, reason

    @staticmethod
    def _chunk(body: memoryview, *, partial: bool) -> Iterator[tuple[int, memoryview]]:
        if len(body) < 32:
            return
        compression, pos = _mcap_string(body, 28)
        size = int.from_bytes(body[pos:pos + 8], 'little')
        payload = bytes(body[pos + 8:pos + 8 + size])
        try:
            if compression == '':
                inner = payload
            elif compression == 'zstd':
                from backports.zstd import ZstdDecompressor  # rosbags' own dependency

                inner = ZstdDecompressor().decompress(payload)
            elif compression == 'lz4' and not partial:
                from lz4.frame import decompress  # rosbags' own dependency

                inner = decompress(payload)
            else:
                return
        except Exception:  # noqa: BLE001 - a chunk that does not decompress is lost data
            return
        inner_view = memoryview(inner)
        ipos, iend = 0, len(inner_view)
        while ipos + 9 <= iend:
            op = inner_view[ipos]
            length = int.from_bytes(inner_view[ipos + 1:ipos + 9], 'little')
            if ipos + 9 + length > iend:
                return
            if op in (0x03, 0x04, 0x05):
                yield op, inner_view[ipos + 9:ipos + 9 + length]
            ipos += 9 + length


def _mcap_string(body: memoryview, pos: int) -> tuple[str, int]:
    size = int.from_bytes(body[pos:pos + 4], 'little')
    return bytes(body[pos + 4:pos + 4 + size]).decode(errors='replace'), pos + 4 + size


class _Sqlite3Salvage:
    """Reads the message rows of a damaged .db3 in storage order, up to the damage.

    A file cut short (power cut before the file system wrote its tail) still claims its
    full size in its header, and SQLite then refuses even the schema. In a copy whose
    header claims only the pages present, SQLite walks the table until the first lost page.
    """

    def __init__(self, path: Path, workdir: Path) -> None:
        self.path = path
        self.workdir = workdir
        self.connections: list[Connection] = []
        self.stop_reason = ''
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        copy = self.workdir / self.path.name
        shutil.copyfile(self.path, copy)
        with copy.open('r+b') as fh:
            header = fh.read(100)
            page_size = int.from_bytes(header[16:18], 'big')
            page_size = 65536 if page_size == 1 else page_size
            if page_size >= 512 and page_size & (page_size - 1) == 0:
                pages = copy.stat().st_size // page_size
                fh.truncate(pages * page_size)
                fh.seek(28)
                fh.write(pages.to_bytes(4, 'big'))
        self._conn = sqlite3.connect(f'file:{copy}?immutable=1', uri=True)
        rows = self._conn.execute(
            'SELECT id, name, type, serialization_format FROM topics ORDER BY id'
        ).fetchall()
        self.connections = [
            Connection(int(cid), str(name), str(msgtype),
                       MessageDefinition(MessageDefinitionFormat.NONE, ''), '', 0,
                       ConnectionExtRosbag2(str(fmt), []), self)
            for cid, name, msgtype, fmt in rows
        ]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def messages(self, connections: Sequence[Connection]) -> _Messages:
        assert self._conn is not None
        wanted = {x.id: x for x in connections}
        try:
            for cid, stamp, data in self._conn.execute(
                'SELECT topic_id, timestamp, data FROM messages NOT INDEXED ORDER BY rowid'
            ):
                conn = wanted.get(cid)
                if conn is not None:
                    yield conn, int(stamp), bytes(data)
        except sqlite3.DatabaseError as exc:
            self.stop_reason = str(exc)


class _Source:
    """One readable storage (a rosbags Reader or a salvage reader) and how it was opened."""

    def __init__(self, label: Path, storage_id: str, reader: Any, counts: str) -> None:
        self.label = label
        self.storage_id = storage_id
        self.reader = reader
        # Where the connections' message counts come from: 'storage' (exact),
        # 'metadata' (metadata.yaml, wrong after a cut recording) or 'unknown' (salvage).
        self.counts = counts
        self.read_error = ''

    @property
    def connections(self) -> list[Connection]:
        return list(self.reader.connections)

    def messages(self, connections: Sequence[Connection]) -> _Messages:
        """Messages of the given connections; a read error ends the stream, kept for later."""
        if not connections:
            return
        try:
            yield from self.reader.messages(connections)
        except Exception as exc:  # noqa: BLE001 - damaged storage: keep what was read
            self.read_error = f'{type(exc).__name__}: {_one_line(exc)}'
        if isinstance(self.reader, _Sqlite3Salvage) and self.reader.stop_reason:
            self.read_error = self.reader.stop_reason


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (YAML and SQLite errors span several)."""
    return ' '.join(str(exc).split())


def _natural_key(path: Path) -> list[Any]:
    return [int(x) if x.isdigit() else x for x in re.split(r'(\d+)', path.name)]


def _storage_files(folder: Path) -> list[Path]:
    files = [x for x in folder.iterdir() if x.is_file() and x.suffix in _SUFFIX_STORAGE]
    return sorted(files, key=_natural_key)


def _merge_wal(db3: Path, stack: ExitStack, warnings: list[str]) -> Path:
    """A .db3 with a leftover write-ahead log (recorder not closed): fold it in a copy.

    rosbags opens databases as immutable, which ignores the WAL, and the user's files must
    not be modified, so the database and its log are checkpointed in a temporary copy.
    """
    wal = db3.with_name(db3.name + '-wal')
    if not wal.is_file() or wal.stat().st_size == 0:
        return db3
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix='autopilot_bag_')))
    copy = tmp / db3.name
    shutil.copyfile(db3, copy)
    shutil.copyfile(wal, tmp / wal.name)
    try:
        conn = sqlite3.connect(copy)
        try:
            conn.execute('PRAGMA wal_checkpoint(TRUNCATE)')
            conn.execute('PRAGMA journal_mode=DELETE')
        finally:
            conn.close()
    except sqlite3.Error as exc:
        warnings.append(f'{db3.name} has a write-ahead log that could not be merged '
                        f'({_one_line(exc)}); messages still in it are missing.')
        return db3
    warnings.append(f'{db3.name} has a leftover write-ahead log (the recorder did not close '
                    'the bag, e.g. a power cut); merged it into a temporary copy to read it.')
    return copy


def _open_file(path: Path, stack: ExitStack, warnings: list[str]) -> _Source:
    """One .db3 or .mcap file, salvaging a damaged one; BagError if nothing is readable."""
    storage_id = _SUFFIX_STORAGE[path.suffix]
    try:
        head = path.open('rb').read(16)
    except OSError as exc:
        raise BagError(f'{path}: cannot read the file ({exc.strerror}). Check its permissions.'
                       ) from None
    if storage_id == 'sqlite3':
        if head != _SQLITE_MAGIC:
            raise BagError(
                f'{path}: not an SQLite database (the file is corrupt, empty or not a rosbag2 '
                '.db3). Re-copy it from the recorder, or leave it out.'
            )
        real = _merge_wal(path, stack, warnings)
        try:
            reader = Reader(real)
            reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags gave up: try to salvage the rows
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix='autopilot_bag_')))
            salvage = _Sqlite3Salvage(real, workdir)
            stack.callback(salvage.close)
            try:
                salvage.open()
            except Exception:  # noqa: BLE001
                with suppress(Exception):
                    salvage.close()
                raise BagError(
                    f'{path}: the database is corrupt or not a rosbag2 database '
                    f'({_one_line(exc)}). Try `sqlite3 FILE .recover` into a new file, or '
                    'leave the bag out.'
                ) from None
            warnings.append(f'{path.name}: the database is damaged ({_one_line(exc)}); '
                            'reading its message rows up to the damage.')
            return _Source(path, storage_id, salvage, counts='unknown')
        stack.callback(reader.close)
        return _Source(path, storage_id, reader, counts='storage')

    if not head.startswith(_MCAP_MAGIC):
        raise BagError(
            f'{path}: not an MCAP file (the file is corrupt, empty or not a rosbag2 .mcap). '
            'Re-copy it from the recorder, or leave it out.'
        )
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - no footer/summary: read it record by record
        salvage = _McapSalvage(path)
        try:
            salvage.open()
        except Exception as exc2:  # noqa: BLE001
            raise BagError(f'{path}: the MCAP file is unreadable ({_one_line(exc)}; '
                           f'{_one_line(exc2)}). Re-copy it from the recorder, or leave it '
                           'out.') from None
        stack.callback(salvage.close)
        warnings.append(
            f'{path.name} is incomplete: {salvage.stop_reason} (rosbags: {_one_line(exc)}); '
            'the recording was cut short, e.g. by a power cut. Recovered '
            f'{salvage.message_count} messages from the first {salvage.stop_offset} of '
            f'{salvage.size} bytes.'
        )
        return _Source(path, storage_id, salvage, counts='storage')
    stack.callback(reader.close)
    return _Source(path, storage_id, reader, counts='storage')


def _open_files(folder: Path, files: list[Path], stack: ExitStack,
                warnings: list[str]) -> list[_Source]:
    """Every storage file of a bag read directly; damaged ones are skipped if others work."""
    sources: list[_Source] = []
    errors: list[str] = []
    for path in files:
        try:
            sources.append(_open_file(path, stack, warnings))
        except BagError as exc:
            errors.append(str(exc))
    if not sources:
        raise BagError(errors[0] if len(errors) == 1 else
                       f'{folder}: no storage file is readable: ' + ' | '.join(errors))
    warnings.extend(f'skipped an unreadable file: {x}' for x in errors)
    return sources


def _open_bag(path: Path, stack: ExitStack, warnings: list[str]) -> list[_Source]:
    """The readable storages of a bag directory or a single storage file."""
    if not path.exists():
        raise BagError(f'{path}: no such file or directory. Check the path to the bag.')
    if path.is_file():
        if path.name == 'metadata.yaml':
            return _open_bag(path.parent, stack, warnings)
        if path.suffix in _SUFFIX_STORAGE:
            return [_open_file(path, stack, warnings)]
        hint = (' ROS 1 bags are not supported: convert it with `rosbags-convert` first.'
                if path.suffix == '.bag' else '')
        raise BagError(f'{path}: not a rosbag2 bag (expected a bag directory with '
                       f'metadata.yaml, or a .db3 or .mcap file).{hint}')
    if not path.is_dir():
        raise BagError(f'{path}: not a regular file or directory.')

    files = _storage_files(path)
    if not (path / 'metadata.yaml').is_file():
        if not files:
            nested = find_bags([path]) if any(x.is_dir() for x in path.iterdir()) else []
            hint = (f' It contains {len(nested)} bag(s) in sub-folders: read them with '
                    'read_bags().' if nested else
                    ' Pass the folder `ros2 bag record` created (it holds metadata.yaml and a '
                    '.db3 or .mcap file) or one such file.')
            raise BagError(f'{path}: not a rosbag2 bag: no metadata.yaml and no .db3 or '
                           f'.mcap file in it.{hint}')
        warnings.append(f'{path} has no metadata.yaml (the recorder did not finish, or it '
                        'was lost); read the storage files directly.')
        return _open_files(path, files, stack, warnings)

    wal = [x for x in files if x.with_name(x.name + '-wal').is_file()
           and x.with_name(x.name + '-wal').stat().st_size > 0]
    if wal:
        return _open_files(path, files, stack, warnings)
    try:
        reader = Reader(path)
        reader.open()
    except PermissionError as exc:
        raise BagError(f'{path}: permission denied ({_one_line(exc)}).') from None
    except Exception as exc:  # noqa: BLE001 - metadata or storage unusable: read files
        if not files:
            raise BagError(f'{path}: the bag is unreadable ({_one_line(exc)}) and holds no '
                           'plain .db3 or .mcap file to fall back on.') from None
        before = len(warnings)
        sources = _open_files(path, files, stack, warnings)
        if len(warnings) == before:  # else the files' own warnings say what was wrong
            warnings.append(f'{path}: rosbags could not open the bag ({_one_line(exc)}); read the '
                            'storage files directly.')
        return sources
    stack.callback(reader.close)
    inner = getattr(reader.storage, 'storages', [])
    listed = {(x.topic, x.msgtype) for x in reader.connections}
    stored = {(x.topic, x.msgtype) for s in inner for x in s.connections}
    if stored - listed and files:
        warnings.append(f'{path}: metadata.yaml does not list every topic in the storage (the '
                        'recorder did not finish); read the storage files directly.')
        return _open_files(path, files, stack, warnings)
    storage_id = 'mcap' if inner and type(inner[0]).__name__.startswith('Mcap') else 'sqlite3'
    return [_Source(path, storage_id, reader, counts='metadata')]


# --------------------------------------------------------------------------- reading


def _check_total(source: _Source, warnings: list[str]) -> None:
    """Compare metadata.yaml's total with what the storage files hold (cut recordings)."""
    if source.counts != 'metadata':
        return
    with suppress(Exception):
        listed = source.reader.message_count
        stored = sum(x.metadata.message_count for x in source.reader.storage.storages)
        if listed != stored:
            warnings.append(f'{source.label}: metadata.yaml says {listed} messages in total '
                            f'but the storage holds {stored} (the bag was probably not closed '
                            'cleanly); read what the storage holds.')


@dataclass
class _Topic:
    """One bag topic across the storages that hold it."""

    name: str
    msgtype: str
    count: int = 0
    conns: list[tuple[_Source, Connection]] = field(default_factory=list)


def _bag_topics(sources: list[_Source]) -> dict[str, _Topic]:
    topics: dict[str, _Topic] = {}
    for source in sources:
        for conn in source.connections:
            topic = topics.setdefault(
                conn.topic, _Topic(conn.topic, _normalise_type(conn.msgtype)))
            topic.count += conn.msgcount
            topic.conns.append((source, conn))
    return topics


def _describe(topics: Mapping[str, _Topic]) -> str:
    if not topics:
        return 'The bag has no topics at all'
    return 'The bag has: ' + ', '.join(
        f'{t.name} ({t.msgtype}, {t.count} msgs)' for t in sorted(topics.values(),
                                                                  key=attrgetter('name'))
    )


def _resolve(key: str, name: str, topics: Mapping[str, _Topic]) -> tuple[_Topic | None, str]:
    """The bag topic for one logical input, or None and why not."""
    expected = _INPUTS[key][0]
    if name.startswith('/'):
        found = [t for t in topics.values() if _abs(t.name) == name]
        shown = name
    else:
        found = [t for t in topics.values() if _abs(t.name) == '/' + name]
        if not found:
            found = [t for t in topics.values() if _abs(t.name).endswith('/' + name)]
        shown = f'/{name} or */{name}'
    if len(found) > 1:
        typed = [t for t in found if t.msgtype == expected]
        if len(typed) == 1:
            found = typed
        else:
            names = ', '.join(sorted(t.name for t in found))
            return None, (f'{key!r} matches several topics ({names}); choose one with '
                          f'{key}=/the/topic')
    if not found:
        return None, f'no topic for {key!r} (looked for {shown}, type {expected})'
    topic = found[0]
    if topic.msgtype != expected:
        return None, (f'topic {topic.name} has type {topic.msgtype}, but {key!r} needs '
                      f'{expected}; map {key!r} to a topic of that type with {key}=/the/topic')
    return topic, ''


def _typestore_for(conn: Connection, store: Typestore, warnings: list[str],
                   cache: dict[str, Typestore]) -> Typestore:
    """Our typestore, or one with the bag's own definition when the bag's type differs.

    A bag recorded with an older autopilot_ros carries its message definition; decoding
    with it keeps such bags usable as long as the fields the converters read still exist.
    """
    digest, msgtype = conn.digest, _normalise_type(conn.msgtype)
    if (not digest.startswith('RIHS01_') or conn.msgdef.format != MessageDefinitionFormat.MSG
            or msgtype not in store.types or digest == store.hash_rihs01(msgtype)):
        return store
    if digest not in cache:
        try:
            other = _base_store()
            typedefs = get_types_from_msg(conn.msgdef.data, msgtype)
            other.types.pop(msgtype, None)
            other.fielddefs.pop(msgtype, None)
            other.register(typedefs)
            cache[digest] = other
            warnings.append(f'{conn.topic} was recorded with another definition of {msgtype} '
                            "than this package's; decoded it with the bag's own definition.")
        except Exception as exc:  # noqa: BLE001
            cache[digest] = store
            warnings.append(f'{conn.topic}: the bag carries a definition of {msgtype} that '
                            f"differs from this package's and cannot be parsed "
                            f"({_one_line(exc)}); decoding with this package's.")
    return cache[digest]


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
    required = tuple(required)
    for key in required:
        if not tmap.topic(key):
            raise TopicMapError(f'topic map: {key!r} is required but switched off')
    store = _shared_store()
    warnings: list[str] = []
    with ExitStack() as stack:
        sources = _open_bag(bag, stack, warnings)
        topics = _bag_topics(sources)

        chosen: dict[str, _Topic] = {}
        problems: list[str] = []
        for key, name in tmap.items():
            if not name:
                continue
            topic, why = _resolve(key, name, topics)
            if topic is not None:
                chosen[key] = topic
            elif key in required:
                problems.append(why)
            elif 'no topic for' not in why:
                warnings.append(f'ignored optional input: {why}.')
        if problems:
            raise BagError(f'{bag}: ' + '; '.join(problems) + f'. {_describe(topics)}.')
        for key in required:
            if chosen[key].count == 0 and all(s.counts == 'storage' for s, _ in chosen[key].conns):
                problems.append(f'topic {chosen[key].name} (for {key!r}) has no messages')
        if problems:
            raise BagError(f'{bag}: ' + '; '.join(problems) + '. Record the topic while '
                           'steering, or map the input to another topic.')

        used = {t.name for t in chosen.values()}
        unknown = sorted(f'{t.name} ({t.msgtype})' for t in topics.values()
                         if t.name not in used and t.msgtype not in store.types)
        if unknown:
            warnings.append('ignored topic(s) of unknown type: ' + ', '.join(unknown) + '.')

        samples: dict[str, list[Any]] = {key: [] for key in LOGICAL_INPUTS}
        got, failed, zero_stamp = dict.fromkeys(chosen, 0), dict.fromkeys(chosen, 0), {}
        first_error: dict[str, str] = {}
        alt_stores: dict[str, Typestore] = {}
        for source in sources:
            # connection id -> (input, ROS type, deserialiser, converter, output list)
            plan: dict[int, tuple[str, str, Callable[..., Any], Callable[[Any], Any],
                                  list[Any]]] = {}
            for key, topic in chosen.items():
                msgtype, convert = _INPUTS[key]
                for src, conn in topic.conns:
                    if src is source:
                        ts = _typestore_for(conn, store, warnings, alt_stores)
                        plan[conn.id] = (key, msgtype, ts.deserialize_cdr, convert, samples[key])
            conns = [c for c in source.connections if c.id in plan]
            for conn, stamp_ns, raw in source.messages(conns):
                key, msgtype, deserialize, convert, out = plan[conn.id]
                try:
                    sample = convert(deserialize(raw, msgtype))
                except Exception as exc:  # noqa: BLE001 - one bad message is skipped
                    failed[key] += 1
                    first_error.setdefault(key, f'{type(exc).__name__}: {_one_line(exc)}')
                    continue
                if sample.stamp == 0.0:
                    sample = dataclasses.replace(sample, stamp=stamp_ns / _NS)
                    zero_stamp[key] = zero_stamp.get(key, 0) + 1
                out.append(sample)
                got[key] += 1
            if source.read_error:
                warnings.append(f'{source.label.name}: reading stopped early '
                                f'({source.read_error}); kept the messages read before it.')
            _check_total(source, warnings)

        message_counts = {t.name: t.count for t in topics.values()}
        for key, topic in chosen.items():
            read = got[key] + failed[key]
            kinds = {s.counts for s, _ in topic.conns}
            if read != topic.count and 'unknown' not in kinds:
                where = 'metadata.yaml says' if 'metadata' in kinds else 'the storage index says'
                warnings.append(f'{topic.name}: {where} {topic.count} messages but {read} were '
                                'read (the bag was probably not closed cleanly); using the '
                                f'{read} found.')
            message_counts[topic.name] = read
            if failed[key]:
                warnings.append(f'{topic.name}: skipped {failed[key]} of {read} messages that '
                                f'could not be decoded (first: {first_error[key]}).')
            if zero_stamp.get(key):
                warnings.append(f'{topic.name}: {zero_stamp[key]} messages had a zero header '
                                'stamp; used the time the bag received them.')

        empty = []
        for key in required:
            if not samples[key]:
                topic = chosen[key]
                read = got[key] + failed[key]
                why = (f'none of its {read} messages could be decoded ({first_error[key]})'
                       if read else 'it has no messages')
                errors = {s.read_error for s, _ in topic.conns if s.read_error}
                if errors:
                    why += f'; reading failed: {"; ".join(sorted(errors))}'
                empty.append(f'topic {topic.name} (for {key!r}): {why}')
        if empty:
            raise BagError(f'{bag}: ' + '; '.join(empty) + '. Record the topic while steering, '
                           'or map the input to another topic.')

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


def _is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / 'metadata.yaml').is_file()) or \
        (path.is_file() and path.suffix in _SUFFIX_STORAGE)


def find_bags(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Bags under the given paths: bag directories, .db3/.mcap files, folders of them.

    A directory with metadata.yaml is one bag (its files are not listed again); other
    directories are walked, and each loose .db3/.mcap file found is a bag of its own.
    """
    found: list[Path] = []
    for item in paths:
        path = Path(item).expanduser()
        if not path.exists():
            raise BagError(f'{path}: no such file or directory. Check the path to the bags.')
        if _is_bag(path) or path.is_file():
            found.append(path)
            continue
        here_found: list[Path] = []
        for root, dirs, files in os.walk(path):
            here = Path(root)
            if 'metadata.yaml' in files:
                here_found.append(here)
                dirs.clear()
                continue
            here_found += (here / f for f in files if Path(f).suffix in _SUFFIX_STORAGE)
        found += sorted(here_found, key=lambda x: [_natural_key(Path(p)) for p in x.parts])
    return list(dict.fromkeys(found))


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


# --------------------------------------------------------------------------- writing


class BagWriter:
    """Writes a real rosbag2 bag (sqlite3 or mcap) of the pilot's input messages.

    Topics are the absolute names `ros2 bag record` would store under the given namespace
    (default '/': '/imu', '/heading', ...), or those of a topic map. Use as a context
    manager; on an exception the bag is left without metadata.yaml, like a cut recording.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        storage: str = 'mcap',
        *,
        topic_map: TopicMap | Mapping[str, str] | None = None,
        namespace: str = '/',
        frame_id: str = 'base_link',
        typestore: Typestore | None = None,
    ) -> None:
        if storage not in STORAGE_IDS:
            raise ValueError(f'storage must be one of {STORAGE_IDS}, not {storage!r}')
        self.path = Path(path).expanduser()
        if self.path.exists():
            raise BagError(f'{self.path}: exists already; BagWriter only creates new bags. '
                           'Choose another path or delete the old bag.')
        self.storage_id = storage
        self.topic_map = _as_topic_map(topic_map)
        self.namespace = namespace
        self.frame_id = frame_id
        self.typestore = typestore or _shared_store()
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        self._connections: dict[str, Connection] = {}
        self._makers: dict[tuple[Nodetype, Any], Callable[[], Any]] = {}
        self._open = False
        types = self.typestore.types
        self._time = types['builtin_interfaces/msg/Time']
        self._header = types['std_msgs/msg/Header']

    def open(self) -> BagWriter:
        self._writer.open()
        self._open = True
        return self

    def close(self) -> None:
        """Finish the storage file and write metadata.yaml."""
        if self._open:
            self._open = False
            self._writer.close()

    def abort(self) -> None:
        if self._open:
            self._open = False
            self._writer.abort()

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def topic(self, key: str) -> str:
        """The absolute topic name this writer uses for a logical input."""
        return self.topic_map.absolute(key, self.namespace)

    def add_topic(self, topic: str, msgtype: str) -> Connection:
        """Declare a topic (done on first write anyway); a topic may stay without messages."""
        if not self._open:
            raise BagError(f'{self.path}: the writer is not open; use it as a context manager.')
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise ValueError(f'topic {topic} already has type {conn.msgtype}, not {msgtype}')
        return conn

    def write(self, topic: str, msg: Any, stamp_ns: int, msgtype: str | None = None) -> None:
        """Any message object of the typestore, received at stamp_ns (bag time)."""
        msgtype = msgtype or msg.__msgtype__
        self.write_cdr(topic, msgtype, self.typestore.serialize_cdr(msg, msgtype), stamp_ns)

    def write_cdr(self, topic: str, msgtype: str, data: bytes, stamp_ns: int) -> None:
        """A message already serialised, as a DDS subscription hands it to `ros2 bag record`."""
        self._writer.write(self.add_topic(topic, msgtype), int(stamp_ns), data)

    def header(self, stamp: float) -> Any:
        """A std_msgs/Header at stamp seconds, in this writer's frame."""
        ns = round(stamp * _NS)
        return self._header(stamp=self._time(sec=ns // _NS, nanosec=ns % _NS),
                            frame_id=self.frame_id)

    def _write_sample(self, key: str, msg: Any, stamp: float, stamp_ns: int | None) -> None:
        self.write(self.topic(key), msg, round(stamp * _NS) if stamp_ns is None else stamp_ns)

    def blank(self, msgtype: str) -> Any:
        """A message of `msgtype` with every field zero, empty or blank, ready to fill."""
        return self._maker(Nodetype.NAME, msgtype)()

    def _maker(self, kind: Nodetype, detail: Any) -> Callable[[], Any]:
        """A builder of the zero value of one field type, made once per type (it is hot)."""
        key = (kind, detail)
        maker = self._makers.get(key)
        if maker is not None:
            return maker
        if kind == Nodetype.NAME:
            cls = self.typestore.types[detail]
            fields = [(name, self._maker(*spec)) for name, spec in
                      self.typestore.fielddefs[detail][1]]

            def maker() -> Any:
                return cls(**{name: make() for name, make in fields})
        elif kind == Nodetype.BASE:
            name = detail[0]
            zero = ('' if name in ('string', 'wstring') else False if name == 'bool'
                    else 0.0 if name.startswith('float') else 0)

            def maker() -> Any:
                return zero
        else:
            (sub_kind, sub_detail), length = detail
            count = length if kind == Nodetype.ARRAY else 0
            if sub_kind == Nodetype.BASE and sub_detail[0] in _NUMPY:
                dtype = _NUMPY[sub_detail[0]]

                def maker() -> Any:
                    return np.zeros(count, dtype=dtype)
            else:
                element = self._maker(sub_kind, sub_detail)

                def maker() -> Any:
                    return [element() for _ in range(count)]
        self._makers[key] = maker
        return maker

    def write_sample(self, sample: SensorSample | StatusSample,
                     stamp_ns: int | None = None) -> None:
        """A sample on its topic, as the simulator node publishes it (one shared mapping)."""
        if isinstance(sample, StatusSample):
            self.write_status(sample, stamp_ns)
            return
        entry = SAMPLE_MESSAGES.get(type(sample))
        if entry is None:
            raise TypeError(f'no topic for a {type(sample).__name__}')
        key, fill = entry
        msg = self.blank(INPUT_TOPICS[key][0])
        fill(msg, sample)
        msg.header = self.header(sample.stamp)
        self._write_sample(key, msg, sample.stamp, stamp_ns)

    def write_status(self, sample: StatusSample, stamp_ns: int | None = None) -> None:
        """An autopilot/status message: what the mode and target were (and who steered)."""
        msg = self.typestore.types[f'{PACKAGE}/msg/AutopilotStatus'](
            header=self.header(sample.stamp), mode=sample.mode, engaged=sample.engaged,
            target=sample.target, target_heading=sample.target_heading,
            heading_error=math.nan, command=sample.command, raw_command=math.nan,
            policy=sample.policy, reason='' if sample.engaged else 'hand steering',
            model_path='', model_sha256='', inference_time=math.nan, window_fill=0,
            stale_inputs=[])
        self._write_sample('autopilot/status', msg, sample.stamp, stamp_ns)
