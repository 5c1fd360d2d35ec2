"""rosbag2 I/O without ROS: the typestore with robofume_ros interfaces, a crash-safe split MCAP
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

from __future__ import annotations

import errno
import os
import struct
import time
from dataclasses import dataclass, field
from io import BytesIO, StringIO
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from robofume_ros.interfaces import MSGTYPES, PACKAGE, TASK_PHASE, TOPICS, msg_dir

MCAP_MAGIC = b"\x89MCAP0\r\n"


class BagError(RuntimeError):
    """Any problem reading or writing a bag; the message says what and where."""


class BagTruncatedError(BagError):
    """A bag file ends early (recorder killed, disk full, copy interrupted)."""


class BagCorruptError(BagError):
    """A bag file is not a valid rosbag2/MCAP file."""


class MissingTopicError(BagError):
    """A topic the caller needs is not in the bag."""


class UnknownMessageTypeError(BagError):
    """A message type is neither in the typestore nor defined inside the bag."""


# --------------------------------------------------------------------------------------------
# typestore
# --------------------------------------------------------------------------------------------


_TYPESTORE = None


def _base_store():
    from rosbags.typesys import Stores, get_typestore

    for name in ("ROS2_KILTED", "ROS2_JAZZY"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    return get_typestore(Stores.LATEST)


def typestore(fresh: bool = False):
    """The standard ROS 2 types (kilted, else jazzy) plus robofume_ros/msg/* from msg_dir().
    Cached; pass fresh=True for a private copy you may register more types into."""
    global _TYPESTORE
    if _TYPESTORE is not None:
        if not fresh:
            return _TYPESTORE
        import copy

        return copy.deepcopy(_TYPESTORE)
    import copy
    from rosbags.typesys import get_types_from_msg

    store = _base_store()
    types = {}
    for f in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"{PACKAGE}/msg/{f.stem}"))
    store.register(types)
    _TYPESTORE = store
    return copy.deepcopy(store) if fresh else store


def register_bag_types(store, connections) -> None:
    """Register message types defined inside a bag (MCAP schemas) that the store lacks."""
    from rosbags.typesys import get_types_from_idl, get_types_from_msg
    from rosbags.interfaces import MessageDefinitionFormat

    for c in connections:
        if c.msgtype in store.fielddefs:
            continue
        md = c.msgdef
        if md is None or md.format == MessageDefinitionFormat.NONE or not md.data:
            continue
        try:
            if md.format == MessageDefinitionFormat.IDL:
                store.register(get_types_from_idl(md.data))
            else:
                store.register(get_types_from_msg(md.data, c.msgtype))
        except Exception as err:  # conflicting or unparsable definition
            raise UnknownMessageTypeError(
                f"cannot parse the definition of {c.msgtype} embedded in the bag: {err}"
            ) from err


# --------------------------------------------------------------------------------------------
# message builders (rosbags message objects; serialize with store.serialize_cdr)
# --------------------------------------------------------------------------------------------


def _time(store, ns: int):
    T = store.types["builtin_interfaces/msg/Time"]
    return T(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def _header(store, ns: int, frame_id: str = ""):
    return store.types["std_msgs/msg/Header"](stamp=_time(store, ns), frame_id=frame_id)


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_image(store, ns: int, image: np.ndarray, frame_id: str = "camera"):
    img = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = img.shape[:2]
    return store.types["sensor_msgs/msg/Image"](
        header=_header(store, ns, frame_id),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=img.reshape(-1),
    )


def make_observation(
    store,
    ns: int,
    image: np.ndarray,
    proprio,
    instruction: str,
    task: str,
    phase: int = 0,
    episode_index: int = 0,
    image_ns: Optional[int] = None,
):
    return store.types[MSGTYPES["observation"]](
        header=_header(store, ns),
        image=make_image(store, ns if image_ns is None else image_ns, image),
        proprio=np.asarray(proprio, dtype=np.float32).reshape(-1),
        instruction=instruction,
        task=task,
        phase=int(phase),
        episode_index=int(episode_index),
        image_stamp=_time(store, ns if image_ns is None else image_ns),
    )


def make_command(store, ns: int, action, source: str = "policy", intervention: bool = False):
    """ArmCommand from an action vector: 4-D [tx,ty,tz,g] or 7-D [tx,ty,tz,rx,ry,rz,g]."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    V = store.types["geometry_msgs/msg/Vector3"]
    if len(a) == 4:
        t, r, g = a[:3], (0.0, 0.0, 0.0), a[3]
    elif len(a) == 7:
        t, r, g = a[:3], a[3:6], a[6]
    else:
        raise ValueError(f"action must have 4 or 7 entries, got {len(a)}")
    return store.types[MSGTYPES["command"]](
        header=_header(store, ns),
        translation=V(x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=V(x=float(r[0]), y=float(r[1]), z=float(r[2])),
        gripper=float(g),
        source=source,
        intervention=bool(intervention),
    )


def make_reward(
    store,
    ns: int,
    probability: float,
    success: bool,
    threshold: float = 0.5,
    instruction: str = "",
    episode_index: int = 0,
    model_id: str = "",
    consecutive_positive: int = 0,
    latency_ms: float = 0.0,
):
    return store.types[MSGTYPES["reward"]](
        header=_header(store, ns),
        probability=float(probability),
        success=bool(success),
        threshold=float(threshold),
        consecutive_positive=int(consecutive_positive),
        model_id=model_id,
        instruction=instruction,
        episode_index=int(episode_index),
        latency_ms=float(latency_ms),
    )


def make_task_phase(
    store,
    ns: int,
    phase: int,
    task: str,
    instruction: str,
    episode_index: int,
    last_switch_reason: int,
    steps_in_episode: int = 0,
    paused: bool = False,
    counters=(0, 0, 0, 0),
):
    return store.types[MSGTYPES["task_phase"]](
        header=_header(store, ns),
        phase=int(phase),
        task=task,
        instruction=instruction,
        episode_index=int(episode_index),
        last_switch_reason=int(last_switch_reason),
        steps_in_episode=int(steps_in_episode),
        paused=bool(paused),
        forward_successes=int(counters[0]),
        backward_successes=int(counters[1]),
        forward_timeouts=int(counters[2]),
        backward_timeouts=int(counters[3]),
    )


def make_ground_truth(store, ns: int, task: str, success: bool, sim_step: int = 0):
    return store.types[MSGTYPES["ground_truth"]](
        header=_header(store, ns), task=task, success=bool(success), sim_step=int(sim_step)
    )


REASON_START, REASON_SUCCESS, REASON_TIMEOUT, REASON_FORCED, REASON_RESUMED = (
    TASK_PHASE[k] for k in ("REASON_START", "REASON_SUCCESS", "REASON_TIMEOUT", "REASON_FORCED", "REASON_RESUMED")
)
FORWARD, BACKWARD = TASK_PHASE["FORWARD"], TASK_PHASE["BACKWARD"]


# --------------------------------------------------------------------------------------------
# writer
# --------------------------------------------------------------------------------------------


def _mcap_writer_class():
    from rosbags.rosbag2.storage_mcap import McapWriter, PendingChunk, write_record, write_string
    from collections import defaultdict

    class StreamingMcapWriter(McapWriter):
        """rosbags' MCAP writer writing to an explicit file, with flush()."""

        def __init__(self, file: Path, chunk_bytes: int = 1 << 20):
            self.path = file
            self.bio = file.open("xb")
            self.bio.write(MCAP_MAGIC)
            rec = BytesIO()
            write_string(rec, "ros2")
            write_string(rec, "robofume_ros")
            write_record(self.bio, 0x01, rec)
            self.schemas, self.channels, self.chunks = [], [], []
            self.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), defaultdict(list))
            self.compression, self.compressor = "", (lambda x: x)
            self.message_start_time, self.message_end_time = 2**63 - 1, 0
            self.channel_stats = {}
            self.chunk_bytes = chunk_bytes

        def flush(self):
            if self.chunk.bio.tell():
                self.close_chunk()
            self.bio.flush()

        def close_file(self, metadata: str):
            self.close(9, metadata)  # writes summary + footer, closes bio

    return StreamingMcapWriter


@dataclass
class _Conn:
    topic: str
    msgtype: str
    msgdef: str
    rihs01: str
    qos: str
    id: int
    count: int = 0


class BagWriter:
    """Crash-safe rosbag2 writer (MCAP, definitions embedded, split into numbered files).

        w = BagWriter("run1")            # creates run1/ (must not exist)
        w.write("/observation", "robofume_ros/msg/Observation", msg_or_cdr_bytes, stamp_ns)
        w.close()

    `msg` may be a rosbags message object (serialized here) or raw CDR bytes (e.g. from
    rclpy.serialization.serialize_message in the recorder). Files split when larger than
    `max_bytes` or longer than `max_duration_s` (0 disables). Pending data is flushed every
    `flush_interval_s` of wall time (checked on write; call flush() from a timer too).
    """

    def __init__(
        self,
        path,
        store=None,
        max_bytes: int = 512 << 20,
        max_duration_s: float = 300.0,
        flush_interval_s: float = 0.5,
        qos: str = "",
    ):
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; BagWriter never overwrites a bag")
        self.store = store or typestore()
        self.max_bytes, self.max_duration_ns = int(max_bytes), int(max_duration_s * 1e9)
        self.flush_interval_s = float(flush_interval_s)
        self.qos = qos
        self.path.mkdir(parents=True)
        self._cls = _mcap_writer_class()
        self._conns: dict[tuple, _Conn] = {}
        self._files: list[dict] = []  # closed files: path, start, end, count
        self._cur = None
        self._cur_info = None
        self._last_flush = time.monotonic()
        self._closed = False
        self._open_file()

    # -- files
    def _open_file(self):
        i = len(self._files)
        f = self.path / f"{self.path.name}_{i}.mcap"
        self._cur = self._cls(f)
        self._cur_info = {"path": f.name, "start": None, "end": 0, "count": 0}
        for c in sorted(self._conns.values(), key=lambda c: c.id):
            self._add_to_storage(c)
        self._write_metadata()
        self._cur.flush()

    def _storage_conn(self, c: _Conn):
        from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat

        return Connection(
            id=c.id,
            topic=c.topic,
            msgtype=c.msgtype,
            msgdef=MessageDefinition(MessageDefinitionFormat.MSG, c.msgdef),
            digest=c.rihs01,
            msgcount=0,
            ext=ConnectionExtRosbag2(serialization_format="cdr", offered_qos_profiles=[]),
            owner=self,
        )

    def _add_to_storage(self, c: _Conn):
        sc = self._storage_conn(c)
        if c.msgtype not in {s.name for s in self._cur.schemas}:
            self._cur.add_msgtype(sc)
        self._cur.add_connection(sc, c.qos)
        c._sc = sc

    def _connection(self, topic: str, msgtype: str) -> _Conn:
        key = (topic, msgtype)
        c = self._conns.get(key)
        if c is None:
            if msgtype not in self.store.fielddefs:
                raise UnknownMessageTypeError(
                    f"message type {msgtype!r} (topic {topic}) is not in the typestore; register it first"
                )
            msgdef, _ = self.store.generate_msgdef(msgtype, ros_version=2)
            c = _Conn(topic, msgtype, msgdef, self.store.hash_rihs01(msgtype), self.qos, id=len(self._conns) + 1)
            self._conns[key] = c
            self._add_to_storage(c)
            self._write_metadata()
        return c

    def write(self, topic: str, msgtype: str, msg, stamp: int) -> None:
        if self._closed:
            raise BagError(f"bag {self.path} is closed")
        c = self._connection(topic, msgtype)
        data = msg if isinstance(msg, (bytes, bytearray, memoryview)) else self.store.serialize_cdr(msg, msgtype)
        info = self._cur_info
        if info["count"] and (
            (self.max_bytes and self._cur.bio.tell() + self._cur.chunk.bio.tell() > self.max_bytes)
            or (self.max_duration_ns and stamp - info["start"] > self.max_duration_ns)
        ):
            self._split()
            info = self._cur_info
        try:
            self._cur.write(c._sc, int(stamp), data)
        except OSError as err:
            raise self._oserror(err) from err
        c.count += 1
        info["count"] += 1
        info["start"] = stamp if info["start"] is None else min(info["start"], stamp)
        info["end"] = max(info["end"], stamp)
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def _oserror(self, err: OSError) -> BagError:
        if err.errno == errno.ENOSPC:
            return BagError(
                f"disk full while writing bag {self.path}; files closed so far are intact "
                f"(run recover_bag on it to make the last file readable)"
            )
        return BagError(f"I/O error writing bag {self.path}: {err}")

    def flush(self) -> None:
        try:
            self._cur.flush()
        except OSError as err:
            raise self._oserror(err) from err
        self._last_flush = time.monotonic()

    def _split(self):
        self._close_current()
        self._open_file()

    def _close_current(self):
        info = self._cur_info
        self._files.append(dict(info))
        self._cur.close_file(self._metadata_text(inner=True))
        self._write_metadata()

    def close(self) -> None:
        if self._closed:
            return
        self._close_current()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- metadata.yaml
    def _all_files(self):
        files = list(self._files)
        if not self._closed and self._cur_info is not None and self._cur_info not in files:
            if not files or files[-1]["path"] != self._cur_info["path"]:
                files.append(self._cur_info)
        return files

    def _metadata_dict(self):
        return _metadata_dict(self._all_files(), list(self._conns.values()))

    def _metadata_text(self, inner=False):
        from ruamel.yaml import YAML

        yaml = YAML(typ="safe")
        yaml.default_flow_style = False
        s = StringIO()
        d = self._metadata_dict()
        yaml.dump(d["rosbag2_bagfile_information"] if inner else d, s)
        return s.getvalue().strip() if inner else s.getvalue()

    def _write_metadata(self):
        tmp = self.path / "metadata.yaml.tmp"
        try:
            tmp.write_text(self._metadata_text(), "utf8")
            os.replace(tmp, self.path / "metadata.yaml")
        except OSError as err:
            raise self._oserror(err) from err


def _metadata_dict(files: list[dict], conns: list) -> dict:
    starts = [f["start"] for f in files if f.get("start") is not None]
    start = min(starts) if starts else 0
    end = max([f["end"] for f in files] or [0])
    count = sum(f["count"] for f in files)
    return {
        "rosbag2_bagfile_information": {
            "version": 9,
            "storage_identifier": "mcap",
            "relative_file_paths": [f["path"] for f in files],
            "duration": {"nanoseconds": max(0, end - start)},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": count,
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": c.topic,
                        "type": c.msgtype,
                        "serialization_format": "cdr",
                        "offered_qos_profiles": c.qos,
                        "type_description_hash": c.rihs01,
                    },
                    "message_count": c.count,
                }
                for c in conns
            ],
            "compression_format": "",
            "compression_mode": "",
            "files": [
                {
                    "path": f["path"],
                    "starting_time": {"nanoseconds_since_epoch": f["start"] or 0},
                    "duration": {"nanoseconds": max(0, f["end"] - (f["start"] or 0))},
                    "message_count": f["count"],
                }
                for f in files
            ],
            "custom_data": {"writer": "robofume_ros.data.bags.BagWriter"},
            "ros_distro": "rosbags",
        }
    }


# --------------------------------------------------------------------------------------------
# recovery
# --------------------------------------------------------------------------------------------


def _mcap_complete(f: Path) -> bool:
    size = f.stat().st_size
    if size < 8 + 37:
        return False
    with f.open("rb") as fh:
        fh.seek(-8, 2)
        return fh.read(8) == MCAP_MAGIC


def _repair_mcap(f: Path) -> int:
    """Cut a footerless MCAP file after its last complete record and append DataEnd + Footer
    (no summary: readers scan it). Returns the bytes cut off."""
    data = f.read_bytes()
    if not data.startswith(MCAP_MAGIC):
        raise BagCorruptError(f"{f} is not an MCAP file (bad magic)")
    pos, good = 8, 8
    n = len(data)
    while pos + 9 <= n:
        op = data[pos]
        (ln,) = struct.unpack_from("<Q", data, pos + 1)
        end = pos + 9 + ln
        if op == 0 or op > 0x0F or end > n:
            break
        if op in (0x0F, 0x02):  # DataEnd / Footer: stop before, we rewrite them
            break
        pos = good = end
    with f.open("r+b") as fh:
        fh.truncate(good)
        fh.seek(good)
        fh.write(b"\x0f" + struct.pack("<QI", 4, 0))  # DataEnd, crc 0
        fh.write(b"\x02" + struct.pack("<QQQI", 20, 0, 0, 0) + MCAP_MAGIC)  # Footer, no summary
    return n - good


@dataclass
class RecoveryReport:
    path: str
    repaired_files: list = field(default_factory=list)
    bytes_dropped: int = 0
    message_count: int = 0


def recover_bag(path) -> RecoveryReport:
    """Make a bag left by a killed recorder readable: repair footerless MCAP files and rebuild
    metadata.yaml from the files on disk. Idempotent; a complete bag is left as it is."""
    from rosbags.rosbag2.storage_mcap import McapReader

    path = Path(path)
    if not path.is_dir():
        raise BagError(f"{path} is not a bag directory")
    rep = RecoveryReport(str(path))
    files = sorted(path.glob("*.mcap"), key=lambda p: _file_index(p))
    if not files:
        raise BagCorruptError(f"{path} holds no .mcap files")
    finfo, conns = [], {}
    for f in files:
        if f.stat().st_size == 0:
            f.unlink()
            continue
        if not _mcap_complete(f):
            rep.bytes_dropped += _repair_mcap(f)
            rep.repaired_files.append(f.name)
        r = McapReader(f)
        try:
            r.open()
        except Exception as err:
            raise BagCorruptError(f"{f} cannot be read even after repair: {err}") from err
        try:
            n = r.metadata.message_count
            finfo.append(
                {
                    "path": f.name,
                    "start": r.metadata.start_time if n else None,
                    "end": r.metadata.end_time - 1 if n else 0,
                    "count": n,
                }
            )
            for c in r.connections:
                key = (c.topic, c.msgtype)
                if key not in conns:
                    conns[key] = _Conn(c.topic, c.msgtype, "", c.digest or "", "", len(conns) + 1)
                conns[key].count += c.msgcount
            rep.message_count += n
        finally:
            r.close()
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    s = StringIO()
    yaml.dump(_metadata_dict(finfo, list(conns.values())), s)
    tmp = path / "metadata.yaml.tmp"
    tmp.write_text(s.getvalue(), "utf8")
    os.replace(tmp, path / "metadata.yaml")
    return rep


def _file_index(p: Path) -> int:
    try:
        return int(p.stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return 0


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------


@dataclass
class RawMessage:
    topic: str
    msgtype: str
    data: bytes  # CDR bytes
    stamp: int  # bag (receive/log) timestamp, ns
    bag: str


class BagReader:
    """Read one or many bags (directories, or single .mcap/.db3 files) in time order.

        with BagReader(["run1", "run2"]) as r:
            for m in r.messages(topics=["/observation"]): ...
            obs = r.deserialize(m)

    Truncated/corrupt files and missing bags raise BagTruncatedError / BagCorruptError naming
    the file; unknown types raise UnknownMessageTypeError on deserialize.
    """

    def __init__(self, paths, store=None, recover: bool = False):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        # the shared store is copied only when a bag brings types it lacks (copying costs ~10 ms)
        self._own_store = store is not None
        self.store = store or typestore()
        self.recover = recover
        self.readers = []

    def open(self):
        from rosbags.rosbag2 import Reader

        for p in self.paths:
            if not p.exists():
                raise BagError(f"bag {p} does not exist")
            if self.recover and p.is_dir():
                recover_bag(p)
            if p.is_dir():
                if not (p / "metadata.yaml").exists():
                    if any(p.glob("*.mcap")):
                        raise BagTruncatedError(
                            f"bag {p} has no metadata.yaml (recorder killed before its first file "
                            f"closed?); run recover_bag('{p}') or convert with --recover"
                        )
                    raise BagCorruptError(f"{p} is not a rosbag2 directory (no metadata.yaml)")
                for f in p.glob("*.mcap"):
                    with f.open("rb") as fh:
                        head = fh.read(8)
                    if head and not MCAP_MAGIC.startswith(head[:8]):
                        raise BagCorruptError(f"bag file {f} is not an MCAP file (bad magic)")
                    if f.stat().st_size and not _mcap_complete(f):
                        raise BagTruncatedError(
                            f"bag file {f} is truncated (no MCAP footer: recorder killed, disk full "
                            f"or copy interrupted); run recover_bag('{p}') or convert with --recover"
                        )
            r = Reader(p)
            try:
                r.open()
            except Exception as err:
                msg = str(err)
                if "end magic" in msg or "seems to be empty" in msg or "Invalid MCAP footer" in msg:
                    raise BagTruncatedError(f"bag {p} is truncated: {msg}") from err
                raise BagCorruptError(f"bag {p} cannot be opened: {msg}") from err
            if not self._own_store and any(c.msgtype not in self.store.fielddefs for c in r.connections):
                self.store = typestore(fresh=True)
                self._own_store = True
            register_bag_types(self.store, r.connections)
            self.readers.append(r)
        return self

    def close(self):
        for r in self.readers:
            r.close()
        self.readers = []
        self._maps = []  # memory maps of raw_tuples(): freed when their views are gone

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    @property
    def connections(self):
        return [c for r in self.readers for c in r.connections]

    def topics(self) -> dict[str, str]:
        return {c.topic: c.msgtype for c in self.connections}

    def message_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.connections:
            out[c.topic] = out.get(c.topic, 0) + c.msgcount
        return out

    def require(self, topics: Iterable[str], what: str = "") -> None:
        have = self.topics()
        missing = [t for t in topics if t not in have]
        if missing:
            raise MissingTopicError(
                f"topic(s) {missing} not in bag(s) {[str(p) for p in self.paths]}{what}; available: {sorted(have)}"
            )

    def check_type(self, msgtype: str) -> None:
        if msgtype not in self.store.fielddefs:
            raise UnknownMessageTypeError(
                f"message type {msgtype!r} is not known (not a standard ROS 2 type, not in "
                f"robofume_ros/msg and no definition embedded in the bag)"
            )

    def messages(
        self, topics: Optional[Sequence[str]] = None, start: Optional[int] = None, stop: Optional[int] = None
    ) -> Iterator[RawMessage]:
        """Raw messages of all bags in bag-timestamp order (bags are merged)."""
        import heapq

        def one(r):
            conns = [c for c in r.connections if topics is None or c.topic in topics]
            if not conns:
                return
            try:
                for c, t, data in r.messages(connections=conns, start=start, stop=stop):
                    yield t, c.topic, c.msgtype, data
            except Exception as err:
                if isinstance(err, BagError):
                    raise
                raise BagCorruptError(f"error reading bag {r.path}: {err}") from err

        streams = [((t, i, tp, mt, d, str(r.path)) for t, tp, mt, d in one(r)) for i, r in enumerate(self.readers)]
        it = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda x: (x[0], x[1]))
        for t, _, tp, mt, d, bp in it:
            yield RawMessage(tp, mt, d, t, bp)

    def raw_tuples(self, topics: Optional[Sequence[str]] = None) -> Iterator[tuple]:
        """(topic, msgtype, data, stamp) for the converter's single pass, in FILE order (not
        merged by time: callers sort). Uncompressed MCAP files are scanned straight from a
        memory map (data are zero-copy memoryviews into it, valid while the reader is open);
        anything else (compressed chunks, sqlite3, several bags) goes through rosbags."""
        if len(self.readers) == 1 and not getattr(self, "_no_fast", False):
            files = _mcap_files(self.paths[0])
            if files:
                types = self.topics()
                try:
                    scans = [_scan_mcap(f, topics, types) for f in files]
                except _NotFast:
                    scans = None
                if scans is not None:
                    self._maps = [m for m, _ in scans]
                    for _, msgs in scans:
                        yield from msgs
                    return
        for m in self.messages(topics):
            yield m.topic, m.msgtype, m.data, m.stamp

    def deserialize(self, m: RawMessage):
        self.check_type(m.msgtype)
        try:
            return self.store.deserialize_cdr(m.data, m.msgtype)
        except Exception as err:
            raise BagCorruptError(
                f"cannot deserialize a {m.msgtype} message on {m.topic} at t={m.stamp} in {m.bag}: {err}"
            ) from err


class _NotFast(Exception):
    """This file needs rosbags' general reader (compression, unknown layout)."""


def _mcap_files(path: Path) -> list:
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.mcap"), key=_file_index)
        if not files or any(path.glob("*.db3")):
            return []
        return files
    return [path] if path.suffix == ".mcap" else []


_REC = struct.Struct("<BQ")
_MSG = struct.Struct("<HIQQ")
_CHUNK = struct.Struct("<QQQI")


def _scan_mcap(f: Path, topics, types: dict):
    """Memory-map one MCAP file and list (topic, msgtype, data view, log_time) of the wanted
    topics, chunk by chunk (uncompressed chunks only, else _NotFast). Returns (mmap, list)."""
    import mmap

    with f.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 16:
            raise _NotFast()
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mm = mmap.mmap(fh.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    buf = memoryview(mm)
    if bytes(buf[:8]) != MCAP_MAGIC:
        raise _NotFast()
    want = None if topics is None else set(topics)
    chan: dict = {}  # channel id -> (topic, msgtype) or None (not wanted)
    out = []
    append = out.append
    rec, msgs, chunk = _REC.unpack_from, _MSG.unpack_from, _CHUNK.unpack_from
    u16, u32 = struct.Struct("<H").unpack_from, _U32.unpack_from

    def channel(b, p):
        (cid,) = u16(b, p)
        (n,) = u32(b, p + 4)
        topic = bytes(b[p + 8 : p + 8 + n]).decode()
        if want is not None and topic not in want:
            chan[cid] = None
        elif topic in types:
            chan[cid] = (topic, types[topic])
        else:
            raise _NotFast()

    def records(b, p, end):
        while p + 9 <= end:
            op, ln = rec(b, p)
            q = p + 9
            p = q + ln
            if p > end:
                raise _NotFast()
            if op == 0x05:
                cid, _seq, t, _pt = msgs(b, q)
                c = chan.get(cid, 0)
                if c:
                    append((c[0], c[1], b[q + 22 : p], t))
                elif c == 0:
                    raise _NotFast()  # message before its channel record
            elif op == 0x04:
                channel(b, q)
            elif op == 0x06:
                _s, _e, usize, _crc = chunk(b, q)
                (n,) = u32(b, q + 28)
                if n:  # compressed chunk
                    raise _NotFast()
                r = q + 32 + n
                (rl,) = struct.unpack_from("<Q", b, r)
                records(b, r + 8, r + 8 + rl)
            elif op in (0x0F, 0x02):  # DataEnd / Footer: the summary follows
                return

    records(buf, 8, size)
    return mm, out


def read_messages(paths, topics=None, store=None):
    """Convenience: list of (topic, msgtype, deserialized msg, bag stamp)."""
    with BagReader(paths, store=store) as r:
        if topics:
            r.require(topics)
        return [(m.topic, m.msgtype, r.deserialize(m), m.stamp) for m in r.messages(topics)]


# --------------------------------------------------------------------------------------------
# episodes -> bag (the recorder's layout), for tests, generation and demos
# --------------------------------------------------------------------------------------------


def write_episodes_bag(
    episodes,
    path,
    rate_hz: float = 5.0,
    t0_ns: int = 1_700_000_000_000_000_000,
    store=None,
    with_rewards: bool = True,
    with_ground_truth: bool = True,
    phases=None,
    writer_kwargs=None,
) -> Path:
    """Write episodes as one continuous reset-free stream in the recorder's layout:
    Observation + ArmCommand (same stamp) per step, TaskPhase at each episode start (reason
    SUCCESS/TIMEOUT from the previous episode), Reward per observation (probability 1 where the
    episode's reward says done), GroundTruth from success_gt. Where episode k+1 starts exactly
    where episode k ended (same image and proprio) they share that boundary observation: it is
    written once, as obs 0 of episode k+1. Where they differ (the arm went home in between, as the
    simulator does with home_on_switch) episode k's last observation is written with index k and
    episode k+1 starts with its own. Returns the bag path."""
    store = store or typestore()
    dt = int(round(1e9 / rate_hz))
    w = BagWriter(path, store=store, **(writer_kwargs or {}))
    t = t0_ns
    try:
        prev_success = None
        n = len(episodes)
        shared = []  # shared[k]: episode k's last observation is episode k+1's first
        for k, ep in enumerate(episodes):
            phase = phases[k] if phases is not None else k % 2
            reason = REASON_START if prev_success is None else (REASON_SUCCESS if prev_success else REASON_TIMEOUT)
            w.write(
                TOPICS["task_phase"],
                MSGTYPES["task_phase"],
                make_task_phase(store, t, phase, ep.task, ep.instruction, k, reason),
                t,
            )
            T = len(ep)
            nxt = episodes[k + 1] if k + 1 < n else None
            shares_next = (
                nxt is not None
                and np.array_equal(ep.images[-1], nxt.images[0])
                and np.array_equal(ep.proprio[-1], nxt.proprio[0])
            )
            shared_start = k > 0 and shared[k - 1]
            shared.append(shares_next)
            for i in range(T if shares_next else T + 1):
                if i == 0 and shared_start:  # boundary obs: scored for the episode that ended on it
                    prev = episodes[k - 1]
                    done, r_k, r_instr = bool(prev.rewards[-1] == 0), k - 1, prev.instruction
                else:
                    done, r_k, r_instr = bool(i > 0 and ep.rewards[i - 1] == 0), k, ep.instruction
                w.write(
                    TOPICS["observation"],
                    MSGTYPES["observation"],
                    make_observation(store, t, ep.images[i], ep.proprio[i], ep.instruction, ep.task, phase, k),
                    t,
                )
                if i < T:
                    w.write(TOPICS["command"], MSGTYPES["command"], make_command(store, t, ep.actions[i]), t)
                if with_rewards:
                    w.write(
                        TOPICS["reward"],
                        MSGTYPES["reward"],
                        make_reward(store, t, 1.0 if done else 0.0, done, 0.5, r_instr, r_k),
                        t,
                    )
                if (
                    with_ground_truth
                    and i == 0
                    and shared_start
                    and episodes[k - 1].success_gt is not None
                    and episodes[k - 1].task != ep.task
                ):  # the finished task's flag too
                    w.write(
                        TOPICS["ground_truth"],
                        MSGTYPES["ground_truth"],
                        make_ground_truth(store, t, episodes[k - 1].task, bool(episodes[k - 1].success_gt[-1])),
                        t,
                    )
                if with_ground_truth and ep.success_gt is not None:
                    w.write(
                        TOPICS["ground_truth"],
                        MSGTYPES["ground_truth"],
                        make_ground_truth(store, t, ep.task, bool(ep.success_gt[i])),
                        t,
                    )
                t += dt
            prev_success = ep.success
    finally:
        w.close()
    return Path(path)


# --------------------------------------------------------------------------------------------
# fast CDR parsing of the hot message types (the converter reads thousands per second)
# --------------------------------------------------------------------------------------------

_U32 = struct.Struct("<I")
_TIME = struct.Struct("<iI")
_V3x2 = struct.Struct("<6d")


class _Cur:
    __slots__ = ("b", "p")

    def __init__(self, b):
        if len(b) < 4 or b[1] != 1:
            raise ValueError("not little-endian XCDR1")
        self.b, self.p = b, 4

    def u32(self):
        p = (self.p + 3) & ~3
        self.p = p + 4
        return _U32.unpack_from(self.b, p)[0]

    def time(self):
        p = (self.p + 3) & ~3
        self.p = p + 8
        s, n = _TIME.unpack_from(self.b, p)
        return s * 1_000_000_000 + n

    def string(self):
        n = self.u32()
        s = bytes(self.b[self.p : self.p + n - 1]).decode()
        self.p += n
        return s

    def skip_string(self):
        p = (self.p + 3) & ~3
        self.p = p + 4 + _U32.unpack_from(self.b, p)[0]

    def u8(self):
        v = self.b[self.p]
        self.p += 1
        return v


_I = struct.Struct("<i")
_II = struct.Struct("<II")


def parse_observation(data):
    """Observation CDR -> (stamp_ns, image view (n,) uint8, height, width, step, encoding,
    proprio, instruction, task, phase, episode_index). The image is a view into `data` (no copy).
    Straight-line code: this runs once per frame and dominates conversion time."""
    if len(data) < 4 or data[1] != 1:
        raise ValueError("not little-endian XCDR1")
    u32 = _U32.unpack_from
    s, ns = _TIME.unpack_from(data, 4)
    stamp = s * 1_000_000_000 + ns
    p = 12
    p = (p + 4 + u32(data, p)[0] + 3) & ~3  # skip header.frame_id, align
    p += 8  # image header stamp
    p = (p + 4 + u32(data, p)[0] + 3) & ~3  # skip image frame_id
    h, w = _II.unpack_from(data, p)
    p += 8
    n = u32(data, p)[0]
    enc = bytes(data[p + 4 : p + 3 + n]).decode()
    p += 4 + n + 1  # + is_bigendian
    p = (p + 3) & ~3
    step, n = _II.unpack_from(data, p)
    p += 8
    img = np.frombuffer(data, np.uint8, n, p)
    p = (p + n + 3) & ~3
    k = u32(data, p)[0]
    p += 4
    proprio = np.frombuffer(data, "<f4", k, p) if k else np.zeros(0, np.float32)
    p += 4 * k
    n = u32(data, p)[0]
    instruction = bytes(data[p + 4 : p + 3 + n]).decode()
    p = (p + 4 + n + 3) & ~3
    n = u32(data, p)[0]
    task = bytes(data[p + 4 : p + 3 + n]).decode()
    p += 4 + n
    phase = data[p]
    p = (p + 1 + 3) & ~3
    ep = u32(data, p)[0]
    if len(img) != h * step:
        raise ValueError(f"image data has {len(img)} bytes, expected {h * step}")
    return stamp, img, h, w, step, enc, proprio, instruction, task, phase, ep


def parse_command(data, action_dim: int = 4):
    """ArmCommand CDR -> (stamp_ns, action float32, intervention)."""
    c = _Cur(data)
    stamp = c.time()
    c.skip_string()
    p = 4 + ((c.p - 4 + 7) & ~7)  # CDR aligns relative to the end of the 4-byte encapsulation
    tx, ty, tz, rx, ry, rz = _V3x2.unpack_from(data, p)
    p += 48
    (g,) = struct.unpack_from("<f", data, p)
    c.p = p + 4
    c.skip_string()
    iv = bool(c.u8())
    if action_dim == 4:
        a = np.array([tx, ty, tz, g], np.float32)
    else:
        a = np.array([tx, ty, tz, rx, ry, rz, g], np.float32)
    return stamp, a, iv


def parse_reward(data):
    """Reward CDR -> (stamp_ns, probability, success, episode_index)."""
    c = _Cur(data)
    stamp = c.time()
    c.skip_string()
    p = (c.p + 3) & ~3
    (prob,) = struct.unpack_from("<f", data, p)
    c.p = p + 4
    ok = bool(c.u8())
    c.u32()  # threshold (float32; only skipped)
    c.u32()  # consecutive_positive
    c.skip_string()
    c.skip_string()
    ep = c.u32()
    return stamp, prob, ok, ep
