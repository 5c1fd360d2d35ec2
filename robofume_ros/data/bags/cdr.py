"""Fast CDR parsing of the hot message types (the converter reads thousands per second): the
layouts of msg/Observation.msg, ArmCommand.msg and Reward.msg; test_data_bags checks them against
rosbags' generic deserializer."""

from __future__ import annotations

import struct

import numpy as np


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
