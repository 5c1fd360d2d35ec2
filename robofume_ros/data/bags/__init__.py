"""rosbag2 I/O without ROS (one module per part: types, writer, recovery, reader, synthetic, cdr): the typestore with robofume_ros interfaces, a crash-safe split MCAP
writer for the recorder node, readers with clear errors, and message builders.

Nothing here imports rclpy. Bags written here are ordinary rosbag2 directories (metadata.yaml +
numbered MCAP files with the message definitions embedded as ros2msg schemas), readable by
rosbags, the mcap tools and rosbag2.

Crash safety: rosbags' own MCAP writer keeps the current chunk (up to 1 MiB) in memory and only
writes the footer and metadata.yaml at close, so a killed recorder leaves an unreadable file.
`BagWriter` instead closes the pending chunk and flushes it to the OS every `flush_interval_s`
(default 0.5 s) and rewrites metadata.yaml atomically whenever a new file starts. A process
killed with SIGKILL therefore loses at most the messages of the last flush interval. The last
file of such a bag has no footer; `recover_bag()` cuts it at the last complete record and
appends a footer, and rebuilds metadata.yaml from what is on disk.
"""

from robofume_ros.interfaces import MSGTYPES, PACKAGE, TOPICS, msg_dir

from .types import (
    BACKWARD,
    BagCorruptError,
    BagError,
    BagTruncatedError,
    FORWARD,
    MCAP_MAGIC,
    MissingTopicError,
    REASON_FORCED,
    REASON_RESUMED,
    REASON_START,
    REASON_SUCCESS,
    REASON_TIMEOUT,
    UnknownMessageTypeError,
    _header,
    _time,
    make_command,
    make_ground_truth,
    make_image,
    make_observation,
    make_reward,
    make_task_phase,
    register_bag_types,
    stamp_ns,
    typestore,
)
from .writer import BagWriter
from .recovery import RecoveryReport, recover_bag
from .reader import BagReader, RawMessage, read_graph_messages, read_messages, transitions_per_episode
from .synthetic import write_episodes_bag
from .cdr import parse_command, parse_observation, parse_reward

__all__ = [
    'BACKWARD',
    'BagCorruptError',
    'BagError',
    'BagReader',
    'BagTruncatedError',
    'BagWriter',
    'FORWARD',
    'MCAP_MAGIC',
    'MSGTYPES',
    'MissingTopicError',
    'PACKAGE',
    'REASON_FORCED',
    'REASON_RESUMED',
    'REASON_START',
    'REASON_SUCCESS',
    'REASON_TIMEOUT',
    'RawMessage',
    'RecoveryReport',
    'TOPICS',
    'UnknownMessageTypeError',
    '_header',
    '_time',
    'make_command',
    'make_ground_truth',
    'make_image',
    'make_observation',
    'make_reward',
    'make_task_phase',
    'read_graph_messages',
    'msg_dir',
    'parse_command',
    'parse_observation',
    'parse_reward',
    'read_messages',
    'transitions_per_episode',
    'recover_bag',
    'register_bag_types',
    'stamp_ns',
    'typestore',
    'write_episodes_bag',
]
