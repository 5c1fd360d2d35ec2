"""The one reward-model interface: P(task done | frame, instruction).

Every backend (:class:`~robofume_ros.reward.dual_encoder.DualEncoderRewardModel`,
:class:`~robofume_ros.reward.vlm.VLMRewardModel`) subclasses :class:`RewardModel`:

* ``predict_proba(frames, instruction) -> np.ndarray (B,)`` in [0, 1], frames uint8 (B,H,W,3)
  (a single (H,W,3) frame is accepted too), instruction a str or one str per frame;
* ``predict(frames, instruction)`` -> bool array, ``p >= threshold``;
* ``threshold`` (stored with the model), ``model_id``;
* ``save(folder)`` / ``load_reward_model(folder)``: a checkpoint folder holding
  ``reward_model.json`` plus the backend's files (head weights, LoRA adapter, ...).

Nothing here imports ``rclpy``.
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Sequence, Union

import numpy as np

CONFIG_NAME = "reward_model.json"
FORMAT = "robofume_reward_model"
FORMAT_VERSION = 1

Instruction = Union[str, Sequence[str]]


class RewardModelError(Exception):
    """Base class of reward-model loading errors."""


class ModelNotFoundError(RewardModelError, FileNotFoundError):
    """The model folder (or hub id) does not exist or cannot be reached."""


class WrongModelTypeError(RewardModelError, ValueError):
    """The folder holds a model of another kind than the one asked for."""


class CorruptCheckpointError(RewardModelError, ValueError):
    """A checkpoint file (config, head weights, LoRA adapter) cannot be read."""


# ----------------------------------------------------------------------------- runtime settings


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 arithmetic (AVX512-BF16 or AMX); elsewhere bf16 autocast
    is emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def resolve_precision(precision: str) -> str:
    precision = (precision or "auto").lower()
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    if precision == "auto":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return precision


def autocast_ctx(precision: str, device: str = "cpu"):
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device if device != "cpu" else "cpu", dtype=torch.bfloat16)
    return nullcontext()


def set_threads(n: int | None) -> None:
    """Torch intra-op thread count (default 1: robust when other processes share the CPU)."""
    import torch

    if n is not None and n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(int(n))


def fit_minibatches(
    n, epochs, batch_size, order, loss_of, opt, sched=None, progress=False, desc="train", val=None, on_epoch=None
):
    """The reward models' training loop: `epochs` passes over `n` rows in the order `order()` gives
    (a fresh shuffle per epoch), one optimiser step per minibatch on `loss_of(rows)` (a scalar
    tensor, the mean over those rows). `val()` (optional) gives the validation accuracy after each
    epoch; `on_epoch(hist, bar)` runs after each epoch too. Returns {"loss": [...], "val_acc": [...]}
    per epoch."""
    it = range(epochs)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=desc, unit="epoch")
    hist = {"loss": [], "val_acc": []}
    for _ in it:
        perm = order()
        tot = 0.0
        for i in range(0, n, batch_size):
            b = perm[i : i + batch_size]
            loss = loss_of(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            tot += loss.item() * len(b)
        hist["loss"].append(tot / n)
        if val is not None:
            hist["val_acc"].append(float(val()))
        if on_epoch is not None:
            on_epoch(hist, it if progress else None)
    return hist


def is_local_spec(spec: str) -> bool:
    """Whether a model spec names a local path (as opposed to a hub id like 'org/name')."""
    s = str(spec)
    return os.path.isabs(s) or s.startswith((".", "~")) or os.path.exists(s) or s.count("/") > 1 or s.endswith(os.sep)


def check_model_source(spec: str) -> str:
    """Fail fast and clearly on a missing local folder; leave hub ids alone (offline mode is
    honoured by ``transformers`` itself through HF_HUB_OFFLINE)."""
    s = os.path.expanduser(str(spec))
    if is_local_spec(s) and not os.path.isdir(s):
        raise ModelNotFoundError(
            f"model folder {s!r} does not exist (expected a folder saved with "
            f"save_pretrained, or a hub id like 'openai/clip-vit-base-patch32')"
        )
    return s


@contextmanager
def hub_errors(spec: str, what: str = "model"):
    """Turn the many ways a hub/folder load fails into :class:`ModelNotFoundError`."""
    try:
        yield
    except RewardModelError:
        raise
    except (OSError, EnvironmentError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = " (HF_HUB_OFFLINE is set: only cached or local models can be loaded)" if offline else ""
        raise ModelNotFoundError(f"cannot load {what} {spec!r}{hint}: {e}") from e


# ----------------------------------------------------------------------------- input helpers


def as_frames(frames) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must be (B,H,W,3) uint8, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {arr.dtype}")
    return arr


def as_instructions(instruction: Instruction, n: int) -> list[str]:
    if isinstance(instruction, str):
        return [instruction] * n
    out = [str(s) for s in instruction]
    if len(out) != n:
        raise ValueError(f"got {len(out)} instructions for {n} frames")
    return out


# ----------------------------------------------------------------------------- interface


class RewardModel(ABC):
    """P(success) of frames given an instruction. Subclasses set ``model_type``."""

    model_type: str = "abstract"

    def __init__(
        self, threshold: float = 0.5, model_id: str = "", num_threads: int | None = 1, precision: str = "auto"
    ):
        self.threshold = float(threshold)
        self.model_id = model_id
        self.num_threads = num_threads
        self.precision = resolve_precision(precision)
        set_threads(num_threads)

    # -- inference
    @abstractmethod
    def predict_proba(self, frames, instruction: Instruction, batch_size: int = 32) -> np.ndarray:
        """P(success) per frame, float array (B,) in [0, 1]."""

    def predict(self, frames, instruction: Instruction, batch_size: int = 32) -> np.ndarray:
        return self.predict_proba(frames, instruction, batch_size=batch_size) >= self.threshold

    def predict_proba_instructions(self, frame, instructions: Sequence[str]) -> np.ndarray:
        """P(success) of one frame (H,W,3) for each of several instructions, (K,). Backends with a
        separate image tower override this to encode the frame once."""
        frame = np.asarray(frame)
        return self.predict_proba(np.repeat(frame[None], len(instructions), axis=0), list(instructions))

    def predict_proba_with_partner(self, frame, instruction: str, partner: str | None = None):
        """(P(done | frame, instruction), P(done | frame, partner) or None without a partner): the two
        inputs of ``reward.debounce.frame_success``'s pair veto, from one pass of the image tower."""
        if not partner:
            return float(self.predict_proba(np.asarray(frame)[None], instruction)[0]), None
        p, q = self.predict_proba_instructions(frame, [instruction, partner])
        return float(p), float(q)

    def accuracy(self, frames) -> float:
        """Accuracy at p >= 0.5 on a labelled FrameSet (the training loops' validation metric)."""
        p = self.predict_proba(frames.images, list(frames.instructions))
        return float(((p >= 0.5) == (np.asarray(frames.labels) > 0.5)).mean())

    def __call__(self, frames, instruction: Instruction) -> np.ndarray:
        return self.predict_proba(frames, instruction)

    # -- training
    @abstractmethod
    def fit(self, train, val=None, **kwargs) -> dict:
        """Fine-tune on a :class:`~robofume_ros.reward.labels.FrameSet`; returns a history dict."""

    # -- persistence
    @abstractmethod
    def _config(self) -> dict:
        """Backend part of reward_model.json."""

    @abstractmethod
    def _save_files(self, folder: Path) -> None:
        """Write the backend's weight files into ``folder``."""

    @classmethod
    @abstractmethod
    def _from_checkpoint(cls, folder: Path, cfg: dict, **overrides) -> "RewardModel":
        """Rebuild from a checkpoint folder."""

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_files(folder)
        cfg = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model_type": self.model_type,
            "model_id": self.model_id,
            "threshold": self.threshold,
            **self._config(),
        }
        with open(folder / CONFIG_NAME, "w") as f:
            json.dump(cfg, f, indent=2)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, **overrides) -> "RewardModel":
        model = load_reward_model(folder, **overrides)
        if cls is not RewardModel and not isinstance(model, cls):
            raise WrongModelTypeError(f"{folder} holds a {model.model_type!r} reward model, not {cls.model_type!r}")
        return model

    def __repr__(self):
        return f"{type(self).__name__}(model_id={self.model_id!r}, threshold={self.threshold:.3f})"


def registry() -> dict[str, type]:
    from .dual_encoder import DualEncoderRewardModel
    from .vlm import VLMRewardModel

    return {DualEncoderRewardModel.model_type: DualEncoderRewardModel, VLMRewardModel.model_type: VLMRewardModel}


def read_config(folder: str | os.PathLike) -> dict:
    folder = Path(os.path.expanduser(str(folder)))
    if not folder.is_dir():
        raise ModelNotFoundError(f"reward model folder {str(folder)!r} does not exist")
    path = folder / CONFIG_NAME
    if not path.exists():
        hf = folder / "config.json"
        if hf.exists() or (folder / "adapter_config.json").exists():
            kind = "?"
            try:
                kind = json.loads(hf.read_text()).get("model_type", "?")
            except (OSError, ValueError, AttributeError):
                pass
            raise WrongModelTypeError(
                f"{folder} is a plain transformers model folder (model_type {kind!r}), not a reward-model "
                f"checkpoint ({CONFIG_NAME} missing). Build one with DualEncoderRewardModel.from_pretrained("
                f"{str(folder)!r}) or VLMRewardModel.from_pretrained(...), or train one with "
                f"'robofume reward train'."
            )
        raise WrongModelTypeError(f"{folder} is not a reward-model checkpoint: {CONFIG_NAME} missing")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptCheckpointError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise WrongModelTypeError(
            f"{path} is not a robofume reward-model config (format {cfg.get('format') if isinstance(cfg, dict) else None!r})"
        )
    return cfg


def load_reward_model(folder: str | os.PathLike, **overrides) -> RewardModel:
    """Load any reward-model checkpoint folder written by :meth:`RewardModel.save`.

    ``overrides`` (e.g. ``num_threads=2``, ``precision="fp32"``, ``threshold=0.7``) replace the
    stored runtime settings."""
    cfg = read_config(folder)
    reg = registry()
    kind = cfg.get("model_type")
    if kind not in reg:
        raise WrongModelTypeError(f"{folder}: unknown reward model type {kind!r}; known: {sorted(reg)}")
    return reg[kind]._from_checkpoint(Path(os.path.expanduser(str(folder))), cfg, **overrides)
