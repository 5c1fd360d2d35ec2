"""Recovery of a bag whose recorder was killed: cut the last file at its last complete record,
append a footer, rebuild metadata.yaml."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path


from .types import MCAP_MAGIC, BagError, BagCorruptError
from .writer import _Conn, _metadata_dict


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
