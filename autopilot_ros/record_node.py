"""The ROS layer of `autopilot-record`: raw DDS subscriptions feeding a BagRecorder.

Subscriptions are `raw=True`, so the CDR bytes go into the bag exactly as they arrived,
never deserialised. The executor thread only queues them with their receive time; one
writer thread owns the BagRecorder (writes, timed flush and fsync, splits, the live line),
so a slow SD card delays the disk, not DDS. The QoS asked for on each topic follows the
publishers it sees (bag_recorder.adapt_request) and is asked again when a publisher that
would not match appears.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import importlib
import queue
import sys
import threading
import time
from typing import Any, TextIO

from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from autopilot_ros.bag_recorder import (
    NS,
    BagRecorder,
    Offer,
    RateMeter,
    RecordError,
    Request,
    TopicInfo,
    adapt_request,
    live_line,
    matches,
    message_definition,
    type_hash,
)

DISCOVERY_PERIOD = 0.5  # s between looks at the graph for publishers and types
# RMW_DURATION_INFINITE as rmw (Jazzy and newer) and so rosbag2 write it.
_INFINITE = {'sec': 9223372036, 'nsec': 854775807}


@dataclass
class RecordTopic:
    """One topic to record: its name, its type if known beforehand, its QoS contract."""

    name: str  # absolute
    msgtype: str | None = None  # None: learnt from the first publisher seen
    reliable: bool = False  # the contract when no publisher is seen yet


def message_class(msgtype: str) -> Any:
    """The Python class of 'pkg/msg/Type' (it must be installed to subscribe at all)."""
    package, _, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{package}.msg'), name)
    except (ImportError, AttributeError) as exc:
        raise RecordError(f'{msgtype}: the message type is not installed here ({exc})'
                          ) from None


def _duration(value: Any) -> dict[str, int]:
    ns = int(getattr(value, 'nanoseconds', 0))
    if ns >= 9223372036854775807 or ns < 0:
        return dict(_INFINITE)
    return {'sec': ns // NS, 'nsec': ns % NS}


def offered_qos(profile: QoSProfile) -> dict[str, Any]:
    """A publisher's QoS as rosbag2 (metadata version 9) stores it."""
    return {
        'history': profile.history.name.lower(),
        'depth': int(profile.depth),
        'reliability': profile.reliability.name.lower(),
        'durability': profile.durability.name.lower(),
        'deadline': _duration(profile.deadline),
        'lifespan': _duration(profile.lifespan),
        'liveliness': profile.liveliness.name.lower(),
        'liveliness_lease_duration': _duration(profile.liveliness_lease_duration),
        'avoid_ros_namespace_conventions': bool(profile.avoid_ros_namespace_conventions),
    }


def _offer(profile: QoSProfile) -> Offer:
    return Offer(profile.reliability == ReliabilityPolicy.RELIABLE,
                 profile.durability == DurabilityPolicy.TRANSIENT_LOCAL)


class RecorderNode(Node):
    """Subscribes to the topics as their publishers appear and queues what arrives."""

    def __init__(self, topics: Sequence[RecordTopic], sink: Callable[[tuple], None], *,
                 depth: int = 100, **kwargs: Any) -> None:
        super().__init__('autopilot_record', **kwargs)
        self.topics = {t.name: t for t in topics}
        self.sink = sink
        self.depth = depth
        self._subs: dict[str, tuple[Any, Request]] = {}
        self._declared: dict[str, tuple[str, int]] = {}  # topic -> (type, publishers seen)
        self._warned: set[str] = set()
        self._sim_time = bool(self.get_parameter('use_sim_time').value)
        self._discover()
        self.create_timer(DISCOVERY_PERIOD, self._discover)

    def _discover(self) -> None:
        for topic in self.topics.values():
            try:
                self._discover_topic(topic)
            except RecordError as exc:
                if topic.name not in self._warned:
                    self._warned.add(topic.name)
                    self.get_logger().error(f'not recording {topic.name}: {exc}')

    def _discover_topic(self, topic: RecordTopic) -> None:
        infos = self.get_publishers_info_by_topic(topic.name)
        msgtype = topic.msgtype
        types = {i.topic_type for i in infos}
        if msgtype is None:
            if not types:
                return  # wait for a publisher to tell the type
            if len(types) > 1:
                raise RecordError(f'publishers disagree on the type ({", ".join(types)})')
            msgtype = topic.msgtype = types.pop()
        infos = [i for i in infos if i.topic_type == msgtype]
        # Declared to the writer before any message can arrive, and again when the
        # publishers change (metadata.yaml lists what they offer).
        self._declare(topic.name, msgtype, infos)
        offers = [_offer(i.qos_profile) for i in infos]
        current = self._subs.get(topic.name)
        if current is None or not all(matches(current[1], o) for o in offers):
            request = adapt_request(offers, topic.reliable)
            if current is not None:
                self.destroy_subscription(current[0])
                self.get_logger().warning(f'{topic.name}: a publisher does not match the QoS '
                                       f'asked for; subscribing again ({request.reason})')
            self._subscribe(topic.name, msgtype, request)

    def _declare(self, name: str, msgtype: str, infos: Sequence[Any]) -> None:
        infos = [i for i in infos if i.topic_type == msgtype]
        if self._declared.get(name) != (msgtype, len(infos)):
            self.sink(('topic', TopicInfo(name, msgtype, message_definition(msgtype),
                                          type_hash(msgtype),
                                          [offered_qos(i.qos_profile) for i in infos])))
            self._declared[name] = (msgtype, len(infos))

    def _subscribe(self, name: str, msgtype: str, request: Request) -> None:
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=self.depth,
            reliability=(ReliabilityPolicy.RELIABLE if request.reliable
                         else ReliabilityPolicy.BEST_EFFORT),
            durability=(DurabilityPolicy.TRANSIENT_LOCAL if request.transient_local
                        else DurabilityPolicy.VOLATILE))
        sim_time = self._sim_time
        clock = self.get_clock()
        sink = self.sink
        first = [True]

        def on_message(data: bytes, info: dict[str, Any]) -> None:
            if first[0]:  # the publishers as they are now: their QoS goes into the bag
                first[0] = False
                self._declare(name, msgtype, self.get_publishers_info_by_topic(name))
            # The middleware's receive time: the executor's delay does not skew it. Under
            # use_sim_time the node's clock, like `ros2 bag record --use-sim-time`.
            received = clock.now().nanoseconds if sim_time else \
                (info.get('received_timestamp') or time.time_ns())
            sink(('msg', name, data, received, info.get('source_timestamp') or 0,
                  info.get('publication_sequence_number') or 0))

        sub = self.create_subscription(message_class(msgtype), name, on_message, qos, raw=True)
        self._subs[name] = (sub, request)
        self.get_logger().info(f'recording {name} [{msgtype}] ({request.reason})')


class WriterThread(threading.Thread):
    """Owns the BagRecorder: writes the queue, flushes on time, prints the live line."""

    def __init__(self, recorder: BagRecorder, *, max_queue: int = 100_000,
                 status_interval: float = 1.0, out: TextIO | None = None,
                 tty: bool | None = None) -> None:
        super().__init__(name='autopilot-record writer', daemon=True)
        self.recorder = recorder
        self.queue: queue.Queue[tuple] = queue.Queue(maxsize=max_queue)
        self.dropped = 0  # messages the queue had no room for (the disk stalled)
        self.errors: list[str] = []
        self.status_interval = status_interval
        self.out = out or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.meter = RateMeter()
        self._stop_event = threading.Event()
        self._began = time.monotonic()

    def put(self, item: tuple) -> None:
        if item[0] != 'msg':
            self.queue.put(item)  # a topic's declaration is never dropped
            return
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def stop(self) -> None:
        """Write what is queued, finish the bag; returns once metadata.yaml is final."""
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        next_status = time.monotonic() + self.status_interval
        try:
            while True:
                try:
                    item = self.queue.get(timeout=0.05)
                except queue.Empty:
                    item = None
                    if self._stop_event.is_set():
                        break
                if item is not None:
                    try:
                        self._handle(item)
                    except (RecordError, KeyError) as exc:  # one topic's problem: go on
                        self._error(f'{type(exc).__name__}: {exc}')
                now = time.monotonic()
                self.recorder.tick(now)
                if self.status_interval > 0 and now >= next_status:
                    next_status = now + self.status_interval
                    self._print_status(now)
        except Exception as exc:  # noqa: BLE001 - a full disk must still close the bag
            self.errors.append(f'{type(exc).__name__}: {exc}')
        finally:
            try:
                self.recorder.close()
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f'closing the bag: {type(exc).__name__}: {exc}')
            if self.tty and self.status_interval > 0:
                self.out.write('\n')
                self.out.flush()

    def _error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)
            self.out.write(f'\nautopilot-record: {message}\n')

    def _handle(self, item: tuple) -> None:
        if item[0] == 'msg':
            _, topic, data, received, sent, sequence = item
            self.recorder.write(topic, data, received, sent, sequence)
            self.meter.add(topic, time.monotonic())
        else:
            self.recorder.add_topic(item[1])

    def status(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        rec = self.recorder
        return live_line(now - self._began, self.meter.rates(now), rec.topics, rec.size,
                         len(rec.files), self.dropped)

    def _print_status(self, now: float) -> None:
        line = self.status(now)
        if self.tty:
            self.out.write('\r\x1b[K' + line)
        else:
            self.out.write(line + '\n')
        self.out.flush()
