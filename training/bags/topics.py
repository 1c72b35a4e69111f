"""Logical inputs and which bag topic carries each: the table, the topic map, resolution.

Training thinks in logical inputs ('imu', 'heading', ...); a bag has topic names chosen
by whoever recorded it. The table of logical inputs (their ROS types and converters to
samples) stays in one place here, and `_resolve` finds the bag topic of one input, saying
with a reason code why none fits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, make_dataclass
import enum
import re
from typing import TYPE_CHECKING, Any, ClassVar

from autopilot_ros.inputs import INPUTS
from autopilot_ros.inputs import REQUIRED_INPUTS as PILOT_REQUIRED_INPUTS
from autopilot_ros.status import OUTPUTS
from autopilot_ros.training.bags.errors import TopicMapError

if TYPE_CHECKING:
    from autopilot_ros.training.bags.storage import _Topic

# --------------------------------------------------------------------------- logical inputs

# Logical inputs: the pilot's sensor inputs, then the outputs training reads back, each named
# by its relative topic (docs/design.md, "Topics"). Both tables live in the pure core.
_TABLE = (*INPUTS, *OUTPUTS)
LOGICAL_INPUTS = tuple(t.name for t in _TABLE)
# What training cannot do without: the inputs the features need and the label.
REQUIRED_INPUTS = (*PILOT_REQUIRED_INPUTS, 'rudder_angle')
# Logical input -> (ROS type, converter to a sample).
_INPUTS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    t.name: (t.msg_type, t.from_msg) for t in _TABLE}


# --------------------------------------------------------------------------- topic map


def _field_name(key: str) -> str:
    """A logical input's field in TopicMap: the last part of its topic name."""
    return key.rsplit('/', 1)[-1]


# One field per logical input (imu, heading, wind, speed, rudder_angle, rudder_command,
# status), defaulting to the input's own relative topic name.
_TopicMapFields = make_dataclass(
    '_TopicMapFields', [(_field_name(key), str, field(default=key)) for key in LOGICAL_INPUTS],
    frozen=True)


@dataclass(frozen=True)
class TopicMap(_TopicMapFields):
    """Which bag topic carries each logical input: TopicMap(heading='/boat/compass').

    Names as in docs/design.md by default. A relative name ('imu') matches '/imu', or a
    namespaced '/boat/imu' when that is the only such topic of the right type; an absolute
    name ('/boat/compass') matches exactly that topic (with or without its leading '/').
    An empty name switches an optional input off.
    """

    # Logical input name -> field name (the status topic's name is not an identifier).
    FIELDS: ClassVar[dict[str, str]] = {key: _field_name(key) for key in LOGICAL_INPUTS}

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
        """(logical input, configured name) pairs in docs/design.md order."""
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


# --------------------------------------------------------------------------- resolution


class Unresolved(enum.Enum):
    """Why no bag topic was chosen for a logical input."""

    MISSING = 'missing'          # no topic of that name
    AMBIGUOUS = 'ambiguous'      # several topics fit the name
    WRONG_TYPE = 'wrong type'    # the topic of that name has another message type


@dataclass(frozen=True)
class Resolution:
    """The bag topic for one logical input, or the reason code and words for its absence."""

    topic: _Topic | None
    reason: Unresolved | None = None
    why: str = ''


def _resolve(key: str, name: str, topics: Mapping[str, _Topic]) -> Resolution:
    """The bag topic for one logical input, or the reason code and words for why none fits."""
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
            return Resolution(None, Unresolved.AMBIGUOUS,
                              f'{key!r} matches several topics ({names}); choose one with '
                              f'{key}=/the/topic')
    if not found:
        return Resolution(None, Unresolved.MISSING,
                          f'no topic for {key!r} (looked for {shown}, type {expected})')
    topic = found[0]
    if topic.msgtype != expected:
        return Resolution(None, Unresolved.WRONG_TYPE,
                          f'topic {topic.name} has type {topic.msgtype}, but {key!r} needs '
                          f'{expected}; map {key!r} to a topic of that type with {key}=/the/topic')
    return Resolution(topic)
