"""Opening a bag's storage: a bag directory or loose .db3/.mcap files, damaged or not.

Bags from a boat are often imperfect (power cut mid-recording, metadata.yaml lost, a
write-ahead log left beside the database). Here a path becomes the list of readable
storages (`_Source`), through rosbags where it can and a salvage reader where it cannot,
with a warning for every fallback; and the storages' connections become bag topics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
import enum
import os
from pathlib import Path
import re
import stat
import tempfile
from typing import Any

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.storage_mcap import McapReader

from autopilot_ros.training.bags.errors import BagError, _one_line, _os_error
from autopilot_ros.training.bags.salvage import (
    _MCAP_MAGIC,
    SalvageReader,
    _McapSalvage,
    _merge_wal,
    _Messages,
    _Sqlite3Salvage,
)
from autopilot_ros.training.bags.typestore import _normalise_type

STORAGE_IDS = ('sqlite3', 'mcap')
_SUFFIX_STORAGE = {'.db3': 'sqlite3', '.mcap': 'mcap'}
_SQLITE_MAGIC = b'SQLite format 3\x00'
# Bag time is in nanoseconds.
_NS = 1_000_000_000


class Counts(enum.Enum):
    """Where a storage's per-connection message counts come from."""

    STORAGE = 'storage'    # the storage's own index: exact
    METADATA = 'metadata'  # metadata.yaml: wrong after a cut recording
    UNKNOWN = 'unknown'    # a salvaged database: not counted


class _Source:
    """One readable storage (a rosbags Reader or a salvage reader) and how it was opened."""

    def __init__(self, label: Path, storage_id: str, reader: Reader | SalvageReader,
                 counts: Counts) -> None:
        self.label = label
        self.storage_id = storage_id
        self.reader = reader
        # Where the connections' message counts come from.
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


class _SalvagedSource(_Source):
    """A damaged storage read by a salvage reader, which may stop early at the damage."""

    reader: SalvageReader

    def messages(self, connections: Sequence[Connection]) -> _Messages:
        yield from super().messages(connections)
        if connections and self.reader.stop_reason:
            self.read_error = self.reader.stop_reason


def _natural_key(path: Path) -> list[Any]:
    return [int(x) if x.isdigit() else x for x in re.split(r'(\d+)', path.name)]


def _storage_files(folder: Path) -> list[Path]:
    files = [x for x in folder.iterdir() if x.is_file() and x.suffix in _SUFFIX_STORAGE]
    return sorted(files, key=_natural_key)


def _is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / 'metadata.yaml').is_file()) or \
        (path.is_file() and path.suffix in _SUFFIX_STORAGE)


def find_bags(paths: Iterable[str | os.PathLike[str]], *,
              unreadable: list[str] | None = None) -> list[Path]:
    """Bags under the given paths: bag directories, .db3/.mcap files, folders of them.

    A directory with metadata.yaml is one bag (its files are not listed again); other
    directories are walked, and each loose .db3/.mcap file found is a bag of its own.
    Folders the walk cannot read are left out; pass a list as `unreadable` to get them
    ('path (reason)'). A given path that cannot be examined at all is a BagError.
    """
    found: list[Path] = []

    def walk_error(exc: OSError) -> None:
        if unreadable is not None:
            where = exc.filename if exc.filename is not None else '?'
            unreadable.append(f'{where} ({exc.strerror or _one_line(exc)})')

    for item in paths:
        path = Path(item).expanduser()
        try:
            exists = path.exists()
            is_bag = exists and (_is_bag(path) or path.is_file())
        except OSError as exc:
            raise BagError(_os_error(path, exc)) from None
        if not exists:
            raise BagError(f'{path}: no such file or directory. Check the path to the bags.')
        if is_bag:
            found.append(path)
            continue
        here_found: list[Path] = []
        for root, dirs, files in os.walk(path, onerror=walk_error):
            here = Path(root)
            if 'metadata.yaml' in files:
                here_found.append(here)
                dirs.clear()
                continue
            here_found += (here / f for f in files if Path(f).suffix in _SUFFIX_STORAGE)
        found += sorted(here_found, key=lambda x: [_natural_key(Path(p)) for p in x.parts])
    return list(dict.fromkeys(found))


def _check_connections(reader: Reader) -> None:
    """Raise (closing the reader) when what rosbags read has fields of the wrong type.

    rosbags takes metadata.yaml and a database's topics table as they are; a damaged one
    can give a message count that is a string or a type hash that is a mapping. The caller
    then reads the storage files directly, as for any bag rosbags cannot open.
    """
    bad = [repr(c.topic)[:60] for c in reader.connections
           if not (isinstance(c.topic, str) and isinstance(c.msgtype, str)
                   and isinstance(c.digest, str) and isinstance(c.msgcount, int)
                   and not isinstance(c.msgcount, bool) and c.msgcount >= 0)]
    if bad:
        with suppress(Exception):
            reader.close()
        raise ValueError(f'invalid fields for topic(s) {", ".join(bad)}')


def _special_files(folder: Path) -> list[str]:
    """Names in a bag folder that are pipes, sockets or devices (links followed)."""
    names = []
    for entry in folder.iterdir():
        with suppress(OSError):  # a broken link is not special: opening it fails at once
            mode = entry.stat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                names.append(entry.name)
    return sorted(names)


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
            _check_connections(reader)
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
            return _SalvagedSource(path, storage_id, salvage, Counts.UNKNOWN)
        stack.callback(reader.close)
        return _Source(path, storage_id, reader, Counts.STORAGE)

    if not head.startswith(_MCAP_MAGIC):
        raise BagError(
            f'{path}: not an MCAP file (the file is corrupt, empty or not a rosbag2 .mcap). '
            'Re-copy it from the recorder, or leave it out.'
        )
    try:
        reader = Reader(path)
        reader.open()
        _check_connections(reader)
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
            f'{path.name} is incomplete: {salvage.cut_reason} (rosbags: {_one_line(exc)}); '
            'the recording was cut short, e.g. by a power cut. Recovered '
            f'{salvage.message_count} messages from the first {salvage.cut_offset} of '
            f'{salvage.size} bytes.'
        )
        return _SalvagedSource(path, storage_id, salvage, Counts.STORAGE)
    stack.callback(reader.close)
    return _Source(path, storage_id, reader, Counts.STORAGE)


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

    special = _special_files(path)
    if special:
        # rosbags would open what metadata.yaml names, and opening a pipe waits forever.
        names = ', '.join(special)
        if not files:
            raise BagError(f'{path}: {names} is not a regular file (a pipe, socket or '
                           'device) and the bag holds no plain .db3 or .mcap file. Copy the '
                           "bag's files themselves into the folder.")
        warnings.append(f'{path}: {names} is not a regular file (a pipe, socket or device); '
                        'read the plain storage files directly.')
        return _open_files(path, files, stack, warnings)
    wal = [x for x in files if x.with_name(x.name + '-wal').is_file()
           and x.with_name(x.name + '-wal').stat().st_size > 0]
    if wal:
        return _open_files(path, files, stack, warnings)
    try:
        reader = Reader(path)
        reader.open()
        _check_connections(reader)
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
    storage_id = 'mcap' if inner and isinstance(inner[0], McapReader) else 'sqlite3'
    return [_Source(path, storage_id, reader, Counts.METADATA)]


def _check_total(source: _Source, warnings: list[str]) -> None:
    """Compare metadata.yaml's total with what the storage files hold (cut recordings)."""
    if source.counts is not Counts.METADATA:
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

