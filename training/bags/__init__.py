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

The modules, after the layout of `rosbags.rosbag2`: errors (BagError), typestore (message
types), topics (logical inputs and the topic map), salvage (damaged storage files),
storage (opening a bag's storages), reader (read_bag) and writer (BagWriter).
"""

from autopilot_ros.status import StatusSample
from autopilot_ros.training.bags.errors import BagError, TopicMapError
from autopilot_ros.training.bags.reader import Recording, read_bag, read_bags
from autopilot_ros.training.bags.storage import STORAGE_IDS as STORAGE_IDS
from autopilot_ros.training.bags.storage import find_bags
from autopilot_ros.training.bags.topics import (
    LOGICAL_INPUTS,
    REQUIRED_INPUTS,
    TopicMap,
)
from autopilot_ros.training.bags.typestore import (
    PACKAGE_TYPES,
    make_typestore,
    msg_definitions_dir,
)
from autopilot_ros.training.bags.typestore import _base_store as _base_store
from autopilot_ros.training.bags.typestore import _package_typedefs as _package_typedefs
from autopilot_ros.training.bags.writer import BagWriter

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
# Importable besides __all__ (the `X as X` imports above): STORAGE_IDS for the CLI, and
# _base_store and _package_typedefs for the tests.
