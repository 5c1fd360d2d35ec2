"""The crash-safe split MCAP writer the recorder node uses (see the package docstring)."""

from __future__ import annotations

import errno
import os
import struct
import time
import zlib
from dataclasses import dataclass
from io import BytesIO, StringIO
from pathlib import Path


from .types import MCAP_MAGIC, BagError, UnknownMessageTypeError, typestore


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

        def close_chunk(self):
            """rosbags writes chunks without a CRC; this one sets the chunk's uncompressed_crc
            (as rosbag2's own MCAP writer does), so readers detect payload damage."""
            crc = zlib.crc32(self.chunk.bio.getbuffer())
            start = self.bio.tell()
            super().close_chunk()
            end = self.bio.tell()
            self.bio.seek(start + 1 + 8 + 24)  # opcode, record length, start/end time, size
            self.bio.write(struct.pack("<I", crc))
            self.bio.seek(end)

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
