"""Checkpoint files: a magic header, a SHA-256 of the payload, then a torch.save payload.

save_checkpoint writes atomically (temp file + rename). load_checkpoint raises CheckpointError
naming the file and the problem for a missing file, a file that is not a checkpoint, a corrupt or
truncated file (checksum), an unreadable payload, or a payload of the wrong kind/version. The
payload is loaded with weights_only=True (only tensors, dicts, lists, strings and numbers).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

MAGIC = b"ROBOFUME-RL-CKPT\n"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint could not be used; the message names the file and the problem."""


def to_bytes(payload: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def encode(payload: dict) -> bytes:
    """A payload as the bytes of a checkpoint file (header + checksum + body): what a policy
    checkpoint file holds and what the learner sends to the policy node."""
    body = to_bytes(payload)
    return MAGIC + hashlib.sha256(body).digest() + body


def from_bytes(data: bytes, name: str = "<bytes>") -> dict:
    """Payload from raw torch bytes or from checkpoint-file bytes (header verified)."""
    if data.startswith(MAGIC):
        digest, data = data[len(MAGIC) : len(MAGIC) + 32], data[len(MAGIC) + 32 :]
        if len(digest) < 32 or hashlib.sha256(data).digest() != digest:
            raise CheckpointError(f"{name}: checksum mismatch - the weights are corrupt or truncated")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{name}: payload could not be read ({type(e).__name__}: {e})") from e


def save_checkpoint(path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(encode(payload))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def check_feature_encoder(obs_spec: dict | None, name: str) -> None:
    """Refuse a checkpoint trained on frozen features of another encoder than the one this code
    computes online: its policy would see features it never saw in training."""
    from robofume_ros.vision import FEATURE_ENCODER_ID

    enc = (obs_spec or {}).get("feature_encoder")
    if enc and enc != FEATURE_ENCODER_ID:
        raise CheckpointError(
            f"{name}: trained on image features of {enc!r}, but this code computes {FEATURE_ENCODER_ID!r}; "
            "pre-train it again on this version (robofume pretrain)"
        )


def load_checkpoint(path, kind: str | None = None) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.is_dir():
        cand = path / "checkpoint.pt"
        if not cand.exists():
            raise CheckpointError(f"{path}: is a directory without checkpoint.pt")
        path = cand
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path}: not a robofume_ros RL checkpoint (bad header)")
    digest, body = data[len(MAGIC) : len(MAGIC) + 32], data[len(MAGIC) + 32 :]
    if len(digest) < 32 or hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path}: checksum mismatch - the file is corrupt or truncated")
    payload = from_bytes(body, str(path))
    if not isinstance(payload, dict) or "kind" not in payload:
        raise CheckpointError(f"{path}: payload is not a checkpoint dict")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')} but this code reads version {VERSION}"
        )
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"{path}: holds a {payload['kind']!r}, expected a {kind!r}")
    return payload
