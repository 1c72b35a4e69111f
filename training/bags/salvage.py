"""Reading damaged storage files that rosbags refuses, up to the damage.

A power cut mid-recording leaves an MCAP file without its summary and footer, or a .db3
cut short or with its write-ahead log beside it. Each storage format has its own salvage
reader; the rest of the package sees them only through the `SalvageReader` protocol.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
import shutil
import sqlite3
import tempfile
from typing import Protocol

from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    MessageDefinition,
    MessageDefinitionFormat,
)

from autopilot_ros.training.bags.errors import _one_line

_MCAP_MAGIC = b'\x89MCAP0\r\n'
# (connection, receive time in ns, CDR bytes), as rosbags' readers yield them.
_Messages = Iterator[tuple[Connection, int, bytes]]


class SalvageReader(Protocol):
    """What reading a damaged storage file needs: the part of rosbags' reader API it uses.

    `stop_reason` says why the last `messages()` ended before the data `open()` found
    ('' when it read all of it), so that the reader can warn that messages are missing.
    """

    connections: list[Connection]
    stop_reason: str

    def open(self) -> None:
        """Find the connections; raise if the file holds nothing readable."""

    def close(self) -> None:
        """Release the file; safe to call again, and after a failed open."""

    def messages(self, connections: Sequence[Connection]) -> _Messages:
        """The messages of the given connections in storage order, up to the damage."""


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
        # Where and why the readable data ends (the cut open() reports in its warning).
        self.cut_offset = 0
        self.cut_reason = ''
        # messages() yields exactly the records open() found: it never stops short of them.
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
                self.cut_offset = body_end
                return
            elif op in (0x03, 0x04, 0x05):
                yield op, body
            pos = body_end
        self._stop(pos, 'the file ends without a summary or footer')

    def _stop(self, offset: int, reason: str) -> None:
        self.cut_offset, self.cut_reason = offset, reason

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

