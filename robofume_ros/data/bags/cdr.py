"""CDR parsers generated from the message definitions (msg/*.msg, as rosbags' typestore parses
them), for the message types the converter reads thousands of per second.

rosbags' generic deserializer builds a nested message object per message (Observation, Header,
Time, Image): ~11 us for a 100x100 observation. The bag -> dataset conversion then runs at ~45%
of the raw bag read speed (bench/bench_dataset.py: the fast parsers keep it at ~75%). Instead of
copying each layout by hand, `compile_parser` walks a type's field definitions and emits
straight-line Python (struct unpacks at offsets aligned as CDR says) that returns only the fields
asked for, as a flat tuple; uint8 arrays come back as zero-copy views. A layout change in msg/ is
picked up when the typestore is rebuilt; test_data_bags checks every parser against rosbags.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np

# CDR primitive -> (struct code, size); sizes are also the alignment
_PRIMS = {
    "bool": ("?", 1),
    "byte": ("B", 1),
    "char": ("B", 1),
    "int8": ("b", 1),
    "uint8": ("B", 1),
    "int16": ("h", 2),
    "uint16": ("H", 2),
    "int32": ("i", 4),
    "uint32": ("I", 4),
    "int64": ("q", 8),
    "uint64": ("Q", 8),
    "float32": ("f", 4),
    "float64": ("d", 8),
}
_TIME = "builtin_interfaces/msg/Time"
_BASE, _NAME, _ARRAY, _SEQUENCE = 1, 2, 3, 4  # rosbags' Nodetype values


class _Emitter:
    """Source of one parser. The read position is `p + off`: `off` is a constant folded at
    generation time, `p` advances only past variable-length fields (strings, sequences).
    Alignment is relative to the payload after the 4-byte encapsulation header; `known` is the
    alignment the position is known to have, so aligning code is emitted only where needed."""

    def __init__(self, store, wanted):
        self.store, self.wanted = store, set(wanted)
        self.lines, self.values, self.structs = [], {}, {}
        self.off, self.known = 0, 8

    @property
    def pos(self):
        return self.at(0)

    def at(self, extra):
        k = self.off + extra
        return f"p + {k}" if k > 0 else f"p - {-k}" if k < 0 else "p"

    def _align(self, n):
        if n > 1 and self.known < n:
            self.lines.append(f"p = 4 + (({self.at(n - 5)}) & ~{n - 1})")
            self.off, self.known = 0, n

    def _advance(self, size):
        self.off += size
        self.known = min(self.known, size & -size)

    def _variable(self, expr, unit):
        """p moves past `expr` bytes (a multiple of `unit`) that only the data knows."""
        self.lines.append(
            f"p = {self.at(expr[0])} + {expr[1]}" if isinstance(expr, tuple) else f"p = {self.pos} + {expr}"
        )
        self.off, self.known = 0, min(self.known, unit)

    def _struct(self, code):
        self.structs.setdefault(code, (f"_s{len(self.structs)}", struct.Struct("<" + code)))
        return self.structs[code][0]

    def _var(self, path):
        v = f"v{len(self.values)}"
        self.values[path] = v
        return v

    def base(self, path, typ):
        if typ == "string":
            self._align(4)
            self.lines.append(f"n = _u32(data, {self.pos})[0]")
            if path in self.wanted:
                self.lines.append(f"{self._var(path)} = bytes(data[{self.at(4)} : {self.at(3)} + n]).decode()")
            self._variable((4, "n"), 1)
            return
        code, size = _PRIMS[typ]
        self._align(size)
        if path in self.wanted:
            self.lines.append(f"{self._var(path)} = {self._struct(code)}.unpack_from(data, {self.pos})[0]")
        self._advance(size)

    def node(self, path, node):
        kind, arg = node
        if kind == _BASE:
            self.base(path, arg[0])
        elif kind == _NAME:
            self.message(path, arg)
        elif kind in (_ARRAY, _SEQUENCE):
            (sub_kind, sub_arg), count = arg
            if sub_kind != _BASE or sub_arg[0] == "string":
                raise NotImplementedError(f"{path}: arrays of {sub_arg} are not generated (use rosbags)")
            code, size = _PRIMS[sub_arg[0]]
            if kind == _SEQUENCE:
                self._align(4)
                self.lines.append(f"n = _u32(data, {self.pos})[0]")
                self._advance(4)
            else:
                self.lines.append(f"n = {int(count)}")
            self._align(size)
            if path in self.wanted:
                dtype = "np.bool_" if sub_arg[0] == "bool" else repr(np.dtype("<" + code).str)
                self.lines.append(f"{self._var(path)} = np.frombuffer(data, {dtype}, n, {self.pos})")
            self._variable(f"n * {size}" if size > 1 else "n", size)
        else:  # pragma: no cover - rosbags has no other node kinds
            raise NotImplementedError(f"{path}: node kind {kind}")

    def message(self, path, msgtype):
        if msgtype == _TIME and path in self.wanted:  # a stamp comes back as one int (ns)
            self._align(4)
            self.lines.append(f"s, ns = _time(data, {self.pos}); {self._var(path)} = s * 1_000_000_000 + ns")
            self._advance(8)
            return
        for name, node in self.store.fielddefs[msgtype][1]:
            self.node(f"{path}.{name}" if path else name, node)


@lru_cache(maxsize=None)
def _compile(store, msgtype: str, fields: tuple):
    em = _Emitter(store, fields)
    em.message("", msgtype)
    missing = [f for f in fields if f not in em.values]
    if missing:
        raise KeyError(f"{msgtype} has no field(s) {missing}")
    body = "\n    ".join(em.lines)
    src = (
        "def parse(data):\n"
        "    if len(data) < 4 or data[1] != 1:\n"
        "        raise ValueError('not little-endian XCDR1')\n"
        "    p = 4\n"
        f"    {body}\n"
        f"    if {em.pos} > len(data):\n"
        f"        raise ValueError(f'message ends at byte {{len(data)}}, its fields need {{{em.pos}}}')\n"
        f"    return ({', '.join(em.values[f] for f in fields)},)\n"
    )
    ns = {"np": np, "_u32": struct.Struct("<I").unpack_from, "_time": struct.Struct("<iI").unpack_from}
    ns.update({name: s for name, s in em.structs.values()})
    exec(compile(src, f"<cdr parser for {msgtype}>", "exec"), ns)  # our own generated source, above
    parse = ns["parse"]
    parse.source = src
    return parse


def compile_parser(store, msgtype: str, fields):
    """A function CDR bytes -> tuple of `fields` (dotted paths such as "image.height"; a
    builtin_interfaces/Time field gives its stamp in ns), generated from `msgtype`'s definition in
    `store`. Raises ValueError for bytes too short for the layout; uint8 arrays are views."""
    return _compile(store, msgtype, tuple(fields))


_OBS = ("header.stamp", "image.data", "image.height", "image.width", "image.step", "image.encoding")
_OBS += ("proprio", "instruction", "task", "phase", "episode_index")
_CMD = ("header.stamp", "translation.x", "translation.y", "translation.z", "rotation.x", "rotation.y")
_CMD += ("rotation.z", "gripper", "intervention")
_REW = ("header.stamp", "probability", "success", "episode_index")


_PARSERS: dict = {}


def _parser(kind, fields):
    f = _PARSERS.get(kind)
    if f is None:
        from .types import MSGTYPES, typestore

        f = _PARSERS[kind] = compile_parser(typestore(), MSGTYPES[kind], fields)
    return f


def parse_observation(data):
    """Observation CDR -> (stamp_ns, image view (n,) uint8, height, width, step, encoding,
    proprio, instruction, task, phase, episode_index). The image is a view into `data` (no copy)."""
    out = _parser("observation", _OBS)(data)
    if len(out[1]) != out[2] * out[4]:
        raise ValueError(f"image data has {len(out[1])} bytes, expected {out[2] * out[4]}")
    return out


def parse_command(data, action_dim: int = 4):
    """ArmCommand CDR -> (stamp_ns, action float32, intervention)."""
    stamp, tx, ty, tz, rx, ry, rz, g, iv = _parser("command", _CMD)(data)
    a = [tx, ty, tz, g] if action_dim == 4 else [tx, ty, tz, rx, ry, rz, g]
    return stamp, np.array(a, np.float32), bool(iv)


def parse_reward(data):
    """Reward CDR -> (stamp_ns, probability, success, episode_index)."""
    stamp, prob, ok, ep = _parser("reward", _REW)(data)
    return stamp, prob, bool(ok), ep
