"""Writing real rosbag2 bags (sqlite3 or mcap) of the pilot's input messages.

Tests, the simulator and synthetic training data need bags that look like those
`ros2 bag record` makes on the boat, written without ROS; demonstration bags are compared
byte for byte, so what this writes must not change by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.interfaces import Connection, Nodetype
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from autopilot_ros.inputs import input_of
from autopilot_ros.samples import SensorSample
from autopilot_ros.status import OUTPUTS, StatusSample, fill_status_msg, output_of_status
from autopilot_ros.training.bags.errors import BagError
from autopilot_ros.training.bags.storage import _NS, STORAGE_IDS
from autopilot_ros.training.bags.topics import TopicMap, _as_topic_map
from autopilot_ros.training.bags.typestore import _shared_store

STATUS = next(o for o in OUTPUTS if o.name == 'autopilot/status')
# ROS numeric base types -> numpy: rosbags (de)serialises numeric arrays as numpy arrays.
_NUMPY = {name: getattr(np, name) for name in (
    'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64',
    'uint64')} | {'byte': np.uint8, 'octet': np.uint8, 'char': np.uint8}


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
        spec = input_of(sample)
        msg = self.blank(spec.msg_type)
        spec.fill_msg(msg, sample)
        msg.header = self.header(sample.stamp)
        self._write_sample(spec.name, msg, sample.stamp, stamp_ns)

    def write_status(self, sample: StatusSample, stamp_ns: int | None = None) -> None:
        """An autopilot/status message: what the mode and target were (and who steered)."""
        msg = self.blank(STATUS.msg_type)
        fill_status_msg(msg, output_of_status(sample))  # the node's own mapping
        msg.header = self.header(sample.stamp)
        self._write_sample(STATUS.name, msg, sample.stamp, stamp_ns)
