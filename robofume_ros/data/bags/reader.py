"""Reading bags: every file of a rosbag2 directory (or one .mcap / .db3), with clear errors for
truncated and corrupt files, and a fast MCAP scan of the topics asked for."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence


from .types import (
    MCAP_MAGIC,
    BagError,
    BagTruncatedError,
    BagCorruptError,
    MissingTopicError,
    UnknownMessageTypeError,
    typestore,
    bag_store,
    redefined_types,
    register_bag_types,
)
from .recovery import _file_index, _mcap_complete, recover_bag

_U32 = struct.Struct("<I")


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
        self.warnings: list[str] = []  # damage skipped in recover mode (chunks failing their CRC)
        self._stores: dict = {}  # bag path -> its own store, where it defines a type differently
        self.redefined: set[str] = set()  # types some bag defines differently from this package

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
            diff = redefined_types(self.store, r.connections)
            if diff:  # recorded with other versions of these messages: read them as recorded
                self.redefined |= diff
                self._stores[str(r.path)] = bag_store(r.connections, diff)
                if len(self.paths) == 1:
                    self.store = self._stores[str(r.path)]
                    self._own_store = True
            else:
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

    def check_type(self, msgtype: str, store=None) -> None:
        if msgtype not in (store or self.store).fielddefs:
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
                    scans = [_scan_mcap(f, topics, types, self.recover, self.warnings) for f in files]
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
        store = self._stores.get(m.bag, self.store)
        self.check_type(m.msgtype, store)
        try:
            return store.deserialize_cdr(m.data, m.msgtype)
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


def _scan_mcap(f: Path, topics, types: dict, skip_damaged: bool = False, warnings: Optional[list] = None):
    """Memory-map one MCAP file and list (topic, msgtype, data view, log_time) of the wanted
    topics, chunk by chunk (uncompressed chunks only, else _NotFast). Returns (mmap, list).
    A chunk whose records fail its CRC raises BagCorruptError naming the file, the byte offset
    and the time span; with `skip_damaged` it is left out and described in `warnings`."""
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
                t0, t1, usize, crc = chunk(b, q)
                (n,) = u32(b, q + 28)
                if n:  # compressed chunk
                    raise _NotFast()
                r = q + 32 + n
                (rl,) = struct.unpack_from("<Q", b, r)
                if crc and zlib.crc32(b[r + 8 : r + 8 + rl]) != crc:
                    what = (
                        f"bag file {f}: the chunk at byte {q - 9} (messages logged {t0}..{t1} ns) fails "
                        f"its CRC check: the file is damaged"
                    )
                    if not skip_damaged:
                        raise BagCorruptError(what + "; convert with --recover to skip damaged chunks")
                    if warnings is not None:
                        warnings.append(what + "; its messages were skipped")
                    continue
                records(b, r + 8, r + 8 + rl)
            elif op in (0x0F, 0x02):  # DataEnd / Footer: the summary follows
                return

    records(buf, 8, size)
    return mm, out


_HEADER_STAMP = struct.Struct("<iI")  # a std_msgs/Header's stamp, after the 4-byte CDR encapsulation


def header_stamp_ns(data) -> int:
    """The header stamp (ns) of CDR bytes of a message that starts with a std_msgs/Header."""
    sec, nsec = _HEADER_STAMP.unpack_from(data, 4)
    return sec * 1_000_000_000 + nsec


def recorded_since(files, types: dict, since_stamp_ns: int, logged_before_ns: Optional[int] = None) -> tuple:
    """What a live recorder's own MCAP `files` hold for a backfill: (topic, CDR bytes) of the
    topics in `types` (topic -> msgtype; each message starts with a std_msgs/Header) whose header
    stamp is >= `since_stamp_ns` and that were logged at or before `logged_before_ns` (None: any
    time; one logged at that very instant may be in memory too, and a learner drops duplicates), in
    file order, and the oldest header stamp seen on any of them (None: none). The file being
    written has no footer yet: it is read up to its last flushed chunk. Damaged chunks are
    skipped (the bag's own readers report them)."""
    out, oldest = [], None
    for f in files:
        try:
            mm, msgs = _scan_mcap(Path(f), list(types), types, skip_damaged=True)
        except _NotFast:  # compressed, or a record cut by the end of a file being written
            continue
        for topic, _msgtype, data, t in msgs:
            if len(data) < 12 or (logged_before_ns is not None and t > logged_before_ns):
                continue
            stamp = header_stamp_ns(data)
            oldest = stamp if oldest is None else min(oldest, stamp)
            if stamp >= since_stamp_ns:
                out.append((topic, bytes(data)))
        data = None
        del msgs, mm  # the views go first; the map closes with its last reference
    return out, oldest


def read_messages(paths, topics=None, store=None):
    """Convenience: list of (topic, msgtype, deserialized msg, bag stamp)."""
    with BagReader(paths, store=store) as r:
        if topics:
            r.require(topics)
        return [(m.topic, m.msgtype, r.deserialize(m), m.stamp) for m in r.messages(topics)]


def read_graph_messages(paths, keys, namespace=None, store=None, required=True):
    """The graph's topics `keys` (interfaces.TOPICS keys) from a recording, under the namespace
    its graph ran in (None: the one its observations name): a list of (key, msgtype, deserialized
    msg, bag stamp). required=False skips keys the recording does not hold; a collection of keys
    requires those only (one pass over the bag for required and optional topics alike)."""
    from robofume_ros.interfaces import bag_namespace, topic_name

    with BagReader(paths, store=store) as r:
        present = r.topics()
        ns = bag_namespace(present) if namespace is None else namespace
        names = {topic_name(k, ns): k for k in keys}
        if required:
            must = keys if required is True else required
            r.require([t for t, k in names.items() if k in must])
        wanted = [t for t in names if t in present]
        if not wanted:
            return []
        return [(names[m.topic], m.msgtype, r.deserialize(m), m.stamp) for m in r.messages(wanted)]


def transitions_per_episode(paths) -> dict:
    """Episode index -> the transitions the robot made in it, from a recorder's bag(s):
    consecutive observations the first of which it acted on (a command with the observation's
    stamp). A frame without a command (e.g. taken before the arm went home) starts the chain after
    it, as the learner and `robofume dataset from-bags` build episodes."""
    from .types import stamp_ns

    obs, commanded = {}, set()
    for key, _ty, m, _s in read_graph_messages(paths, ["observation", "command"]):
        if key == "observation":
            obs.setdefault(int(m.episode_index), []).append(stamp_ns(m.header.stamp))
        else:
            commanded.add(stamp_ns(m.header.stamp))
    out = {}
    for ep, stamps in obs.items():
        stamps.sort()
        holes = [i for i, s in enumerate(stamps[:-1]) if s not in commanded]
        out[ep] = len(stamps) - 1 - (holes[-1] + 1 if holes else 0)
    return out
