"""Episode datasets on disk: one directory per episode with .npy arrays (images memory-mappable).

Layout (format "robofume-dataset", version 1):

    DIR/meta.json                    {"format": "robofume-dataset", "version": 1, "created": ..., ...}
    DIR/episodes/ep_000000/          one finished episode (appears atomically by rename)
        meta.json                    instruction, task, source, success, provenance, T, shapes
        images.npy                   (T+1, H, W, 3) uint8    (np.load(..., mmap_mode="r"))
        proprio.npy                  (T+1, P) float32
        actions.npy                  (T, A) float32
        rewards.npy                  (T,) float32
        terminals.npy                (T,) bool
        features.npy                 (T+1, F) float32, optional
        success_gt.npy               (T+1,) bool, optional
    DIR/episodes/.tmp-*              an episode being written (ignored by readers, swept later)

Each episode is written into a temp directory, fsynced, then renamed into place, so a crash or
a full disk never leaves half an episode and everything written before stays readable.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from .episode import SOURCES, Episode

FORMAT = "robofume-dataset"
VERSION = 1
_ARRAYS = ("images", "proprio", "actions", "rewards", "terminals")
_OPTIONAL = ("features", "success_gt")
_DTYPES = {
    "images": np.uint8,
    "proprio": np.float32,
    "actions": np.float32,
    "rewards": np.float32,
    "terminals": np.bool_,
    "features": np.float32,
    "success_gt": np.bool_,
}


class DatasetError(RuntimeError):
    """Invalid dataset directory, version mismatch, ..."""


class DatasetVersionError(DatasetError):
    pass


class DatasetFullError(DatasetError, OSError):
    """The disk filled up while writing an episode. Earlier episodes are intact."""

    def __init__(self, err_no, message):
        super().__init__(message)
        self.errno, self.strerror = err_no, message


def _read_meta(path: Path) -> dict:
    mp = path / "meta.json"
    if not mp.exists():
        raise DatasetError(f"{path} is not a robofume dataset (no meta.json)")
    try:
        meta = json.loads(mp.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {mp}: {err}") from err
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise DatasetVersionError(
            f"dataset {path} has format version {meta.get('version')!r}, but this robofume_ros "
            f"reads version {VERSION}; convert it again from the bags (robofume dataset from-bags) "
            f"or use the robofume_ros release that wrote it"
        )
    return meta


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DatasetWriter:
    """Append episodes to a dataset directory (created if missing, appended to if present).

    with DatasetWriter("data/run1") as w:
        w.append(ep)
    """

    def __init__(self, path, fsync: bool = True, extra_meta: Optional[dict] = None):
        self.path = Path(path)
        self.fsync = fsync
        self.ep_dir = self.path / "episodes"
        if (self.path / "meta.json").exists():
            _read_meta(self.path)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            meta = {"format": FORMAT, "version": VERSION, "created": time.time(), **(extra_meta or {})}
            self._atomic_write_text(self.path / "meta.json", json.dumps(meta, indent=1))
        self.ep_dir.mkdir(exist_ok=True)
        for stale in self.ep_dir.glob(".tmp-*"):  # half episodes of a crashed writer
            shutil.rmtree(stale, ignore_errors=True)
        self._next = 1 + max([_ep_number(p) for p in self.ep_dir.glob("ep_*")] or [-1])
        self.written = 0

    def _atomic_write_text(self, dst: Path, text: str):
        tmp = dst.with_name(dst.name + f".tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "w") as fh:
                fh.write(text)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp, dst)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise self._wrap(err, dst) from err

    def _wrap(self, err: OSError, where) -> Exception:
        if err.errno == errno.ENOSPC:
            return DatasetFullError(
                errno.ENOSPC,
                f"disk full while writing {where}; the {self._next if hasattr(self, '_next') else 0} "
                f"episodes already in {self.path} are intact, the partial episode was removed. "
                f"Free space and append again.",
            )
        return DatasetError(f"I/O error writing {where}: {err}")

    def _save(self, file: Path, arr):
        """Write one array, or a FrameList as one .npy (separate method so tests can simulate a
        full disk)."""
        with open(file, "wb") as fh:
            if isinstance(arr, FrameList):
                arr.write_npy(fh)
            else:
                np.save(fh, arr, allow_pickle=False)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())

    def append(self, ep: Episode, frames: Optional["FrameList"] = None) -> Path:
        """Write one episode atomically; returns its directory. `frames` (optional) supplies the
        images as a list of per-frame arrays written straight to images.npy (no stacking copy);
        ep.images is then not read (the converter passes a zero-stride placeholder)."""
        tmp = self.ep_dir / f".tmp-{uuid.uuid4().hex}"
        final = self.ep_dir / f"ep_{self._next:06d}"
        try:
            tmp.mkdir()
            for name in _ARRAYS + _OPTIONAL:
                if name == "images" and frames is not None:
                    self._save(tmp / "images.npy", frames)
                    continue
                arr = getattr(ep, name)
                if arr is None:
                    continue
                self._save(tmp / f"{name}.npy", np.ascontiguousarray(arr, dtype=_DTYPES[name]))
            if ep.features is not None:
                tag = {"encoder": ep.feature_encoder, "dim": int(np.shape(ep.features)[1])}
                (tmp / "features.json").write_text(json.dumps(tag))
            meta = {
                "instruction": ep.instruction,
                "task": ep.task,
                "source": ep.source,
                "success": bool(ep.success),
                "provenance": _jsonable(ep.provenance),
                "length": len(ep),
                "image_shape": list(ep.images.shape[1:]),
                "proprio_dim": int(ep.proprio.shape[1]) if ep.proprio.ndim == 2 else 0,
                "action_dim": int(ep.actions.shape[1]) if ep.actions.ndim == 2 else 0,
                "return": float(np.sum(ep.rewards)),
                "written": time.time(),
            }
            with open(tmp / "meta.json", "w") as fh:
                json.dump(meta, fh, indent=1)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            if self.fsync:
                _fsync_dir(tmp)
            os.rename(tmp, final)
            if self.fsync:
                _fsync_dir(self.ep_dir)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise self._wrap(err, final) from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._next += 1
        self.written += 1
        return final

    def extend(self, episodes: Iterable[Episode]) -> int:
        n = 0
        for ep in episodes:
            self.append(ep)
            n += 1
        return n

    def sync(self):
        """Flush everything written so far to disk (needed only with fsync=False)."""
        if not self.fsync and self.written:
            try:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    _syncfs(fd)
                finally:
                    os.close(fd)
            except OSError as err:
                raise self._wrap(err, self.path) from err

    def close(self):
        self.sync()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FrameList:
    """Frames of equal shape (each C-contiguous uint8, e.g. views into a bag's memory map) that
    are written as ONE (N, *shape) .npy with os.writev: the kernel copies straight from the
    frames into the file, so the frames are never stacked into an intermediate array."""

    def __init__(self, frames):
        self.frames = [f if f.flags.c_contiguous else np.ascontiguousarray(f) for f in frames]
        if not self.frames:
            raise ValueError("FrameList needs at least one frame")
        self.shape = (len(self.frames),) + tuple(self.frames[0].shape)
        if any(f.shape != self.frames[0].shape or f.dtype != np.uint8 for f in self.frames):
            raise ValueError("FrameList frames must all be uint8 with one shape")

    def __len__(self):
        return len(self.frames)

    def placeholder(self) -> np.ndarray:
        """A zero-stride (N, *shape) array (frame 0 repeated) with the right shape and dtype."""
        return np.broadcast_to(self.frames[0], self.shape)

    def array(self) -> np.ndarray:
        return np.stack(self.frames)

    def write_npy(self, fh) -> None:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": self.shape}
        )
        fh.flush()
        fd = fh.fileno()
        views = [memoryview(f).cast("B") for f in self.frames]
        total = sum(len(v) for v in views)
        done = 0
        step = 512  # below IOV_MAX (1024)
        for i in range(0, len(views), step):
            batch = views[i : i + step]
            want = sum(len(v) for v in batch)
            n = os.writev(fd, batch)
            while n < want:  # short write: finish this batch the slow way
                buf = b"".join(batch)[n:]
                n += os.write(fd, buf[: want - n])
            done += want
        if done != total:
            raise OSError(errno.EIO, "short write of frames")


def _syncfs(fd: int) -> None:
    """syncfs(2) on the dataset's filesystem (libc via ctypes), else sync()."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) == 0:
            return
    except (OSError, AttributeError):
        pass
    os.sync()


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def _ep_number(p: Path) -> int:
    try:
        return int(p.name.split("_", 1)[1])
    except (IndexError, ValueError):
        return -1


def episode_dirs(path) -> list[Path]:
    path = Path(path)
    _read_meta(path)
    d = path / "episodes"
    if not d.is_dir():
        return []
    return sorted((p for p in d.glob("ep_*") if p.is_dir() and _ep_number(p) >= 0), key=_ep_number)


def _episode_meta(d: Path) -> dict:
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"episode {d}: meta.json cannot be read ({e})") from e
    missing = {"instruction", "task", "source", "success", "length"} - set(meta)
    if missing:
        raise DatasetError(f"episode {d}: meta.json lacks {sorted(missing)}")
    return meta


def load_episode(d, mmap: bool = True) -> Episode:
    """One episode folder. A missing, truncated or unreadable array, or arrays whose lengths
    disagree with each other or with meta.json, raise DatasetError naming the file."""
    d = Path(d)
    meta = _episode_meta(d)
    mode = "r" if mmap else None
    arrs = {}
    for name in _ARRAYS + _OPTIONAL:
        f = d / f"{name}.npy"
        if f.exists():
            try:
                arrs[name] = np.load(f, mmap_mode=mode, allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:
                raise DatasetError(f"{f}: cannot be read, truncated or corrupt ({e})") from e
        elif name in _ARRAYS:
            raise DatasetError(f"episode {d} lacks {name}.npy")
    if "features" in arrs:
        arrs["feature_encoder"] = _feature_encoder(d)
    if len(arrs["actions"]) != int(meta["length"]):
        raise DatasetError(
            f"{d / 'meta.json'} says {meta['length']} steps but {d / 'actions.npy'} holds {len(arrs['actions'])}"
        )
    try:
        return Episode(
            instruction=meta["instruction"],
            task=meta["task"],
            source=meta["source"],
            success=bool(meta["success"]),
            provenance=meta.get("provenance", {}),
            **arrs,
        )
    except ValueError as e:  # array lengths that disagree (Episode checks them)
        raise DatasetError(f"episode {d}: {e}") from e


def load_episodes(path, sources=None, mmap: bool = True, tasks=None) -> list[Episode]:
    """All episodes of a dataset in write order (images memory-mapped unless mmap=False).
    `sources`/`tasks` filter by Episode.source / Episode.task (a string or a collection)."""
    if isinstance(sources, str):
        sources = {sources}
    if isinstance(tasks, str):
        tasks = {tasks}
    if sources is not None:
        bad = set(sources) - set(SOURCES)
        if bad:
            raise ValueError(f"unknown source(s) {sorted(bad)}; sources are {SOURCES}")
    out = []
    for d in episode_dirs(path):
        if sources is not None or tasks is not None:
            meta = json.loads((d / "meta.json").read_text())
            if sources is not None and meta["source"] not in sources:
                continue
            if tasks is not None and meta["task"] not in tasks:
                continue
        out.append(load_episode(d, mmap=mmap))
    return out


def dataset_info(path) -> dict:
    """Summary from the episode metas (no arrays are read)."""
    meta = _read_meta(Path(path))
    eps = []
    for d in episode_dirs(path):
        m = _episode_meta(d)
        try:  # the length meta.json claims, against the array on disk (its header only)
            n = len(np.load(d / "actions.npy", mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError, EOFError) as e:
            raise DatasetError(f"{d / 'actions.npy'}: cannot be read, truncated or corrupt ({e})") from e
        if n != int(m["length"]):
            raise DatasetError(f"{d / 'meta.json'} says {m['length']} steps but {d / 'actions.npy'} holds {n}")
        m["dir"] = d.name
        eps.append(m)
    by = {}
    for m in eps:
        key = (m["source"], m["task"])
        b = by.setdefault(
            key,
            {"source": m["source"], "task": m["task"], "episodes": 0, "transitions": 0, "successes": 0, "lengths": []},
        )
        b["episodes"] += 1
        b["transitions"] += m["length"]
        b["successes"] += int(m["success"])
        b["lengths"].append(m["length"])
    groups = []
    for b in sorted(by.values(), key=lambda b: (b["source"], b["task"])):
        L = b.pop("lengths")
        b.update(
            mean_length=float(np.mean(L)),
            min_length=int(min(L)),
            max_length=int(max(L)),
            success_rate=b["successes"] / b["episodes"],
        )
        groups.append(b)
    return {
        "path": str(path),
        "format": meta["format"],
        "version": meta["version"],
        "episodes": len(eps),
        "transitions": int(sum(m["length"] for m in eps)),
        "image_shapes": sorted({tuple(m["image_shape"]) for m in eps}),
        "sources": sorted({m["source"] for m in eps}),
        "tasks": sorted({m["task"] for m in eps}),
        "groups": groups,
        "episode_meta": eps,
    }


def target_demo_steps(path) -> dict:
    """{task: [steps to success of each target demo]} from the episode metas (no arrays are read):
    the demo's recorded first success step where the generator kept it, else its length."""
    out: dict = {}
    for m in map(_episode_meta, episode_dirs(path)):
        if m["source"] == "target_demo" and m["success"]:
            first = (m.get("provenance") or {}).get("first_success_step")
            out.setdefault(m["task"], []).append(int(first) if first is not None else int(m["length"]))
    return out


def _generated(path, key: str, what: str):
    g = Path(path) / "generate.json"
    if not g.exists():
        return None
    try:
        return json.loads(g.read_text())["config"].get(key)
    except (OSError, ValueError, KeyError, AttributeError) as e:
        raise DatasetError(f"{g}: cannot read {what} ({e})") from e


def dataset_pair(path) -> "str | None":
    """The reset-free pair a generated dataset's target data belongs to (its generate.json), or
    None for a dataset without one (converted from bags)."""
    return _generated(path, "pair", "the pair it was generated for")


def dataset_scene(path) -> "int | None":
    """The object placement seed of a generated dataset's target scene (where its demos were
    recorded: the robot's workspace), or None for a dataset without generate.json."""
    seed = _generated(path, "seed", "the seed of its scene")
    return None if seed is None else int(seed)


class TransitionSampler:
    """Uniform transition sampling over episodes, gathered from contiguous in-RAM arrays.

    Concatenates all episodes once (observations stored once: o_t and o_{t+1} are indices into
    the same array), then each batch is a fancy-index: {"obs": images (B,H,W,3) uint8,
    "next_obs", "proprio", "next_proprio", "actions", "rewards", "terminals", "episode"}.
    Needs one image size across episodes.
    """

    def __init__(self, episodes: list[Episode], seed: int = 0):
        if not episodes:
            raise ValueError("no episodes to sample from")
        shapes = {tuple(e.images.shape[1:]) for e in episodes}
        if len(shapes) != 1:
            raise ValueError(f"episodes have different image shapes {sorted(shapes)}")
        self.images = np.concatenate([np.asarray(e.images) for e in episodes])
        self.proprio = np.concatenate([np.asarray(e.proprio, np.float32) for e in episodes])
        self.actions = np.concatenate([np.asarray(e.actions, np.float32) for e in episodes])
        self.rewards = np.concatenate([np.asarray(e.rewards, np.float32) for e in episodes])
        self.terminals = np.concatenate([np.asarray(e.terminals, bool) for e in episodes])
        obs_idx, ep_idx, off = [], [], 0
        for k, e in enumerate(episodes):
            T = len(e)
            obs_idx.append(off + np.arange(T))
            ep_idx.append(np.full(T, k, np.int32))
            off += T + 1
        self.obs_index = np.concatenate(obs_idx)
        self.episode_index = np.concatenate(ep_idx)
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.obs_index)

    def sample(self, batch_size: int = 256) -> dict:
        t = self.rng.integers(0, len(self.obs_index), batch_size)
        o = self.obs_index[t]
        return {
            "obs": self.images[o],
            "next_obs": self.images[o + 1],
            "proprio": self.proprio[o],
            "next_proprio": self.proprio[o + 1],
            "actions": self.actions[t],
            "rewards": self.rewards[t],
            "terminals": self.terminals[t],
            "episode": self.episode_index[t],
        }


def _feature_encoder(d: Path) -> Optional[str]:
    """The encoder id in an episode's features.json; None when it is missing or unreadable (the
    features are then recomputed by whoever needs them, never trusted)."""
    try:
        return json.loads((d / "features.json").read_text()).get("encoder")
    except (OSError, ValueError, AttributeError):
        return None


def write_features(path, encoder, progress: bool = True) -> int:
    """Store frozen-encoder features (features.npy, (T+1, F) float32) in every episode of the
    dataset that lacks them or has them from another encoder, so training never runs the CNN.
    `encoder(images uint8 (N,H,W,3)) -> (N,F)`, with its id in `encoder.id`. Written atomically
    per episode; returns the number of episodes encoded."""
    encoder_id = encoder.id
    todo = [d for d in episode_dirs(path) if not (d / "features.npy").exists() or _feature_encoder(d) != encoder_id]
    it = todo
    if progress and todo:
        from tqdm import tqdm

        it = tqdm(todo, desc=f"features ({encoder_id})", unit="episode")
    for d in it:
        images = np.load(d / "images.npy", mmap_mode="r")
        feats = np.asarray(encoder(images), dtype=np.float32)
        if feats.shape[0] != images.shape[0]:
            raise DatasetError(f"encoder returned {feats.shape[0]} feature rows for {images.shape[0]} frames in {d}")
        tmp = d / "features.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, feats)
        os.replace(tmp, d / "features.npy")
        (d / "features.json").write_text(json.dumps({"encoder": encoder_id, "dim": int(feats.shape[1])}))
    return len(todo)
