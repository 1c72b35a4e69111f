"""Message types: the ROS 2 typestore extended with the package's own .msg files.

Reading and writing share one typestore (rosbags caches its generated (de)serialisers in
it); a bag recorded with another definition of one of our types is decoded with the
definition the bag carries.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from autopilot_ros.training.bags.errors import BagError, _one_line

PACKAGE = 'autopilot_ros'
# The package's own message types, by .msg file stem.
PACKAGE_TYPES = ('Heading', 'Wind', 'RudderAngle', 'RudderCommand', 'AutopilotStatus')


def msg_definitions_dir() -> Path:
    """The folder holding the package's .msg files, wherever the package was installed.

    The pip route copies them to autopilot_ros/msg_defs/, colcon installs them to the ament
    share folder, and a source checkout has them in <repo>/msg; all three must work.
    """
    # This file is autopilot_ros/training/bags/typestore.py (<repo>/training/bags/ in a
    # source checkout), so parents[2] is the package (or the repository) folder.
    candidates: list[Path] = []
    with suppress(Exception):
        import autopilot_ros

        candidates.append(Path(autopilot_ros.__file__).resolve().parent / 'msg_defs')
    candidates.append(Path(__file__).resolve().parents[2] / 'msg_defs')
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / 'msg')
    except Exception:  # noqa: BLE001 - no ament index (pip install) is a normal case
        pass
    candidates.append(Path(__file__).resolve().parents[2] / 'msg')
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
