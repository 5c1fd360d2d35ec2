"""The reward keeps learning during fine-tuning, from labels it can trust (no simulator).

Trusted labels, gathered by :class:`EpisodeLog` from what the reward node sees anyway (its own
frames' image features and probabilities, the task switcher's phases, a person's overrides):

* **a person's verdicts** (``RewardOverride``): SUCCESS now -> the episode's last frames show its
  task done (and not the paired task's); NOT_SUCCESS -> the frames the reward had called done do
  not; UNDO of an episode the reward ended as a success -> its last frames do not show the task done,
  UNDO of one that ended without success -> they do.
* **the reset-free loop's consistency**: an episode that begins right after the paired task ended
  as a success begins at that task's goal, which is its own start: its first frame is not done.
  (A verdict undone later takes this label back: the paired task's end was not its goal after all.)

What was measured and is *not* a trusted label: "an episode ran out of time, and the paired task
that follows starts not done and is then done after a real attempt, so the timed-out episode had
reached its goal". On the drawer run of docs/reward.md that rule was right for 7 of 12 episodes
(the states just short of the simulator's success line look the same), so it is not used.

:func:`adapt_head` fine-tunes the head from its current weights on the model's anchor set (the
frames it was trained on, stored with it by ``reward train``) plus the trusted frames, and accepts
the result only if it keeps the anchor set's FP rate and recall at the threshold and still
recognises the successes the reward found itself and nobody challenged (within tolerances) -- so a
few labels cannot make the reward fire everywhere (reward hacking), forget its demos, or trade one
task's recall for another's (measured: without that last check, five corrections on drawer-close
cost drawer-open most of its recall). The reward node runs it in the background and hot-swaps the head (``model_id`` carries
the version); every accepted version is saved for OOO's relabelling. Pure module: no rclpy.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

ANCHOR_FILE = "anchor.safetensors"
VERSION_FILE = "adapt.json"
LABELS_FILE = "trusted_labels.npz"

# RewardOverride verdicts and TaskPhase reasons (msg/*.msg), as plain ints: no message import here
SUCCESS, NOT_SUCCESS, UNDO = 1, 2, 3
REASON_SUCCESS, REASON_TIMEOUT, REASON_FORCED = 1, 2, 3


class AdaptError(ValueError):
    """The model cannot be adapted (no anchor set, another kind of model) or a file is broken."""


@dataclass
class AdaptConfig:
    min_mistakes: int = 1  # trusted frames the current head gets wrong before it is adapted again
    steps: int = 150  # gradient steps per adaptation, from the current head
    lr: float = 3e-4
    batch_size: int = 256
    trusted_per_batch: int = 16  # trusted frames in every batch (the rest: anchor frames)
    last_frames: int = 3  # frames before a person's verdict that it labels
    fp_tolerance: float = 0.005  # the gate: the anchor's FP rate at the threshold may rise this much
    recall_tolerance: float = 0.05  # ... its recall, and that of the reward's unchallenged verdicts, fall this much
    max_labels: int = 4000  # the newest trusted frames kept


@dataclass
class TrustedFrame:
    feature: np.ndarray  # (D,) image features of the frame (float16)
    instruction: str
    success: bool
    why: str  # "person", "person-undo", "start"
    episode: int
    mistaken: bool = False  # the head in use when it was labelled judged it the other way


@dataclass
class _Frame:
    feature: np.ndarray
    probability: float
    fired: bool


@dataclass
class _Episode:
    index: int
    instruction: str
    first: Optional[_Frame] = None
    last: deque = field(default_factory=lambda: deque(maxlen=8))
    fired: list = field(default_factory=list)
    outcome: Optional[bool] = None  # ended as a success (the switcher's verdict), None while running
    frames: int = 0
    person_success: bool = False  # a person ended it ("success now")


class EpisodeLog:
    """The recent episodes as the reward node saw them, and the trusted labels they give.

    Feed it every scored frame (:meth:`frame`), every TaskPhase (:meth:`phase`) and every override
    (:meth:`override`), from any threads (the caller serialises); :meth:`labels` is the current
    trusted set, :attr:`revision` counts its changes and :attr:`mistakes` the labels the head in use
    had judged the other way (what is worth adapting on: most start frames are already right).
    Labels are keyed, so a late phase message or an undone verdict replaces or takes back what an
    earlier one gave."""

    def __init__(self, pair=(), last_frames: int = 3, keep_episodes: int = 16, max_fired: int = 32, max_labels=4000):
        pair = list(pair)
        self.partner = dict(zip(pair, reversed(pair))) if len(pair) == 2 else {}
        self.last_frames = int(last_frames)
        self.keep_episodes = int(keep_episodes)
        self.max_fired = int(max_fired)
        self.max_labels = int(max_labels)
        self.episodes: dict[int, _Episode] = {}
        self._labels: dict[tuple, TrustedFrame] = {}
        self._kept: dict[int, TrustedFrame] = {}  # the reward's own successes nobody challenged
        self.last_person_episode = -1  # the newest episode a person gave a verdict about
        self.revision = 0
        self.mistakes = 0

    # ------------------------------------------------------------------ inputs
    def frame(self, episode: int, instruction: str, feature, probability: float, fired: bool) -> None:
        ep = self.episodes.get(episode)
        if ep is None:
            ep = self.episodes[episode] = _Episode(int(episode), str(instruction))
            self._forget_old()
        f = _Frame(np.asarray(feature, np.float16).reshape(-1), float(probability), bool(fired))
        if ep.first is None:
            ep.first = f
        ep.last.append(f)
        ep.frames += 1
        if fired and len(ep.fired) < self.max_fired:
            ep.fired.append(f)
        if ep.frames == 1:
            self._start_label(episode)

    def phase(self, episode_index: int, reason: int) -> None:
        """Episode `episode_index` began because the one before it ended with `reason`."""
        prev = int(episode_index) - 1
        if prev < 0 or reason not in (REASON_SUCCESS, REASON_TIMEOUT, REASON_FORCED):
            return
        ep = self.episodes.get(prev)
        if ep is None or ep.outcome is not None:
            return
        ep.outcome = reason == REASON_SUCCESS
        last = ep.last[-1] if ep.last else None
        if ep.outcome and not ep.person_success and last is not None and last.fired:
            self._kept[prev] = TrustedFrame(last.feature, ep.instruction, True, "reward", prev)
            while len(self._kept) > self.max_labels:
                self._kept.pop(next(iter(self._kept)))
        self._start_label(int(episode_index))

    def override(self, episode: int, verdict: int) -> None:
        ep = self.episodes.get(int(episode))
        if ep is None:
            return  # an episode this node never scored: nothing to label
        self.last_person_episode = max(self.last_person_episode, ep.index)
        if verdict == SUCCESS:
            ep.person_success = True
            self._label_frames(ep, list(ep.last)[-self.last_frames :], True, "person")
        elif verdict == NOT_SUCCESS:
            self._label_frames(ep, ep.fired, False, "person")
        elif verdict == UNDO and ep.outcome is not None:
            ep.outcome = not ep.outcome
            self._kept.pop(ep.index, None)  # challenged
            # the verdict at its end was wrong: its last frames show the opposite
            self._label_frames(ep, list(ep.last)[-self.last_frames :], ep.outcome, "person-undo")
            self._start_label(ep.index + 1)  # the next episode's start label follows the new verdict

    # ------------------------------------------------------------------ labels
    def labels(self) -> list[TrustedFrame]:
        """The trusted labels, with the reward's own successes a person watched and let stand (the
        episodes before the newest one they gave a verdict about: they were there and silent)."""
        watched = [
            dataclasses.replace(k, why="watched") for k in self._kept.values() if k.episode < self.last_person_episode
        ]
        return list(self._labels.values()) + watched

    def kept(self) -> list[TrustedFrame]:
        """The last frames of the episodes the reward itself ended as a success and nobody challenged:
        what an adapted head must keep recognising (the gate), or a few corrections would trade one
        task for another. Only those a person watched are also labels (:meth:`labels`): the others
        would be the reward teaching itself."""
        return list(self._kept.values())

    def counts(self) -> dict:
        out: dict = {}
        for lab in self.labels():
            k = f"{lab.why}_{'success' if lab.success else 'not_done'}"
            out[k] = out.get(k, 0) + 1
        return out

    def _put(self, key, frame: TrustedFrame) -> None:
        old = self._labels.pop(key, None)
        self._labels[key] = frame
        if frame.mistaken and (old is None or old.success != frame.success):
            self.mistakes += 1
        while len(self._labels) > self.max_labels:
            self._labels.pop(next(iter(self._labels)))
        self.revision += 1

    def _drop(self, key) -> None:
        if self._labels.pop(key, None) is not None:
            self.revision += 1

    def _label_frames(self, ep: _Episode, frames, success: bool, why: str) -> None:
        for j, f in enumerate(frames):
            own = TrustedFrame(f.feature, ep.instruction, success, why, ep.index, mistaken=f.fired != success)
            self._put((ep.index, why, "own", j), own)
            partner = self.partner.get(ep.instruction)
            if success and partner:  # done for this task: not done for the paired one
                self._put((ep.index, why, "partner", j), TrustedFrame(f.feature, partner, False, why, ep.index))

    def _start_label(self, episode: int) -> None:
        """The first frame of `episode` is not done when the paired task just ended as a success."""
        ep, prev = self.episodes.get(episode), self.episodes.get(episode - 1)
        key = (episode, "start", "own", 0)
        if ep is None or ep.first is None or prev is None or prev.outcome is None:
            return
        if prev.outcome and prev.instruction != ep.instruction:
            self._put(key, TrustedFrame(ep.first.feature, ep.instruction, False, "start", episode, ep.first.fired))
        else:
            self._drop(key)

    def _forget_old(self) -> None:
        while len(self.episodes) > self.keep_episodes:
            del self.episodes[min(self.episodes)]

    # ------------------------------------------------------------------ persistence (a restart keeps them)
    def save(self, path: Path) -> None:
        labs = self.labels()
        tmp = Path(path).with_suffix(".tmp.npz")
        np.savez(
            tmp,
            features=np.stack([x.feature for x in labs]) if labs else np.zeros((0, 0), np.float16),
            success=np.array([x.success for x in labs], bool),
            instruction=np.array([x.instruction for x in labs], dtype=object).astype(str),
            why=np.array([x.why for x in labs], dtype=object).astype(str),
            episode=np.array([x.episode for x in labs], np.int64),
        )
        tmp.replace(path)

    def load(self, path: Path) -> int:
        try:
            with np.load(path, allow_pickle=False) as z:
                feats, ok, instr, why, epi = (z[k] for k in ("features", "success", "instruction", "why", "episode"))
        except Exception as e:  # any unreadable file is the same error
            raise AdaptError(f"trusted labels {path} cannot be read: {e}") from e
        for j in range(len(ok)):
            frame = TrustedFrame(feats[j], str(instr[j]), bool(ok[j]), str(why[j]), int(epi[j]))
            self._put(("restored", j), frame)
        return len(ok)


# ====================================================================== anchor set


@dataclass
class Anchor:
    """The frames a reward head was trained on (features, labels, instructions): what adaptation must keep."""

    features: np.ndarray  # (N, D) float16
    labels: np.ndarray  # (N,) bool
    instructions: list

    def __len__(self):
        return len(self.labels)


def save_anchor(folder, features, labels, instructions, max_negatives: int = 1500, seed: int = 0) -> int:
    """Store the anchor set with a model: every positive, up to `max_negatives` negatives."""
    from safetensors.numpy import save_file

    f = np.asarray(features, np.float32)
    y = np.asarray(labels) > 0.5
    neg = np.flatnonzero(~y)
    if len(neg) > max_negatives:
        neg = np.sort(np.random.default_rng(seed).choice(neg, max_negatives, replace=False))
    keep = np.sort(np.concatenate([np.flatnonzero(y), neg]))
    names = sorted(set(instructions[i] for i in keep))
    code = np.array([names.index(instructions[i]) for i in keep], np.int32)
    save_file(
        {"features": f[keep].astype(np.float16), "labels": y[keep].astype(np.uint8), "instruction": code},
        str(Path(folder) / ANCHOR_FILE),
        metadata={"instructions": json.dumps(names)},
    )
    return len(keep)


def load_anchor(folder) -> Anchor:
    from safetensors import safe_open

    p = Path(folder) / ANCHOR_FILE
    if not p.exists():
        raise AdaptError(
            f"{folder} has no {ANCHOR_FILE} (the frames its head was trained on): retrain it with "
            "`robofume reward train` to adapt it online"
        )
    try:
        with safe_open(str(p), "numpy") as z:
            names = json.loads(z.metadata()["instructions"])
            feats, labels, code = z.get_tensor("features"), z.get_tensor("labels"), z.get_tensor("instruction")
        if not (len(feats) == len(labels) == len(code)) or (len(code) and code.max() >= len(names)):
            raise ValueError("its arrays disagree in length or name unknown instructions")
    except Exception as e:  # one clear error for every way the file can be broken
        raise AdaptError(f"anchor set {p} cannot be read: {e}") from e
    return Anchor(feats, labels.astype(bool), [names[i] for i in code])


# ====================================================================== adaptation


@dataclass
class AdaptResult:
    accepted: bool
    head: object  # the adapted RewardHead (also when refused, for inspection)
    report: dict


def _rates(p, y, thr):
    pos, neg = p[y], p[~y]
    return {
        "recall": float((pos >= thr).mean()) if len(pos) else float("nan"),
        "fp_rate": float((neg >= thr).mean()) if len(neg) else float("nan"),
    }


def adapt_head(
    model,
    anchor: Anchor,
    trusted: list,
    cfg: AdaptConfig = AdaptConfig(),
    seed: int = 0,
    keep: list = (),
    reference=None,
) -> AdaptResult:
    """Fine-tune a copy of `model`'s head on the anchor set plus `trusted` frames; the gate decides:
    the anchor set's FP rate and recall at the threshold, and the share of `keep` (EpisodeLog.kept)
    still recognised, may not be worse than with the `reference` head (the model's first, unadapted
    head: versions must not drift a tolerance at a time; default the head in use) by more than the
    tolerances."""
    import torch
    import torch.nn.functional as F

    if getattr(model, "model_type", "") != "dual_encoder" or getattr(model, "lora", None):
        raise AdaptError("online adaptation needs a dual-encoder reward with frozen towers (the default)")
    if not trusted:
        raise AdaptError("no trusted labels to adapt on")
    torch.manual_seed(seed)
    thr = float(model.threshold)
    fa = torch.as_tensor(np.asarray(anchor.features, np.float32))
    ft = torch.as_tensor(np.stack([np.asarray(t.feature, np.float32) for t in trusted]))
    if ft.shape[1] != fa.shape[1]:
        raise AdaptError(f"trusted frames have {ft.shape[1]} features, the anchor set {fa.shape[1]}")
    f = torch.cat([fa, ft])
    y = torch.as_tensor(np.concatenate([anchor.labels, [t.success for t in trusted]]).astype(np.float32))
    instr = list(anchor.instructions) + [t.instruction for t in trusted]
    n_pos, n_neg = float(anchor.labels.sum()), float((~anchor.labels).sum())
    pw = float(min(max(n_neg / max(n_pos, 1.0), 1.0), 100.0))
    w = torch.where(y > 0.5, torch.tensor(pw), torch.tensor(1.0))
    ys = y * 0.95 + 0.025  # the label smoothing of reward training

    head = copy.deepcopy(model.head)
    txt = model._text(instr)
    zs = model._zero_shot_logit(f, instr)

    def probs(h, idx):
        h.eval()
        with torch.no_grad():
            return torch.sigmoid(h(f[idx], txt[idx], None if zs is None else zs[idx])).numpy()

    ia, it = torch.arange(len(fa)), torch.arange(len(fa), len(f))
    ya, yt = anchor.labels, np.array([t.success for t in trusted])
    fk = torch.as_tensor(np.stack([np.asarray(k.feature, np.float32) for k in keep])) if keep else None
    tk = model._text([k.instruction for k in keep]) if keep else None

    def kept_recall(h):
        if fk is None:
            return float("nan")
        h.eval()
        with torch.no_grad():
            zk = model._zero_shot_logit(fk, [k.instruction for k in keep])
            return float((torch.sigmoid(h(fk, tk, zk)).numpy() >= thr).mean())

    ref = reference if reference is not None else head
    before = {
        "anchor": _rates(probs(ref, ia), ya, thr),
        "trusted_accuracy": float(((probs(head, it) >= thr) == yt).mean()),
        "kept_recall": kept_recall(ref),
    }
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    # every batch holds trusted frames: a handful of them must not drown among thousands of anchors
    nt = max(1, min(len(it), cfg.trusted_per_batch, cfg.batch_size // 2))
    for _ in range(cfg.steps):
        b = torch.cat(
            [
                ia[torch.randint(len(ia), (cfg.batch_size - nt,), generator=g)],
                it[torch.randint(len(it), (nt,), generator=g)],
            ]
        )
        head.train()
        fb = f[b] + 0.05 * head.img_std * torch.randn(len(b), f.shape[1], generator=g)
        logit = head(fb, txt[b], None if zs is None else zs[b])
        loss = F.binary_cross_entropy_with_logits(logit, ys[b], weight=w[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    after = {
        "anchor": _rates(probs(head, ia), ya, thr),
        "trusted_accuracy": float(((probs(head, it) >= thr) == yt).mean()),
        "kept_recall": kept_recall(head),
    }
    b, a = before["anchor"], after["anchor"]
    ok_fp = not (a["fp_rate"] > b["fp_rate"] + cfg.fp_tolerance)
    ok_recall = math.isnan(b["recall"]) or not (a["recall"] < b["recall"] - cfg.recall_tolerance)
    ok_kept = math.isnan(before["kept_recall"]) or not (
        after["kept_recall"] < before["kept_recall"] - cfg.recall_tolerance
    )
    accepted = bool(ok_fp and ok_recall and ok_kept)
    why = (
        ""
        if accepted
        else "the anchor set's FP rate rose"
        if not ok_fp
        else "the anchor set's recall fell"
        if not ok_recall
        else "it stopped recognising successes nobody challenged"
    )
    report = {
        "accepted": accepted,
        "refused_because": why,
        "threshold": thr,
        "trusted_frames": len(trusted),
        "trusted_success": int(yt.sum()),
        "kept_frames": len(keep),
        "anchor_frames": len(fa),
        "before": before,
        "after": after,
        "config": asdict(cfg),
    }
    return AdaptResult(accepted, head, report)


def base_head(model, base_folder):
    """The head of the unadapted model in `base_folder`, for `model`'s towers (adapt_head's reference)."""
    from safetensors.torch import load_file

    head = copy.deepcopy(model.head)
    try:
        head.load_state_dict(load_file(str(Path(base_folder) / "head.safetensors")))
    except Exception as e:  # one clear error for a missing or broken file
        raise AdaptError(f"the base model's head in {base_folder} cannot be loaded: {e}") from e
    return head.eval()


def with_head(model, head, version: int):
    """A model sharing `model`'s towers with another head, named as version `version` of its base."""
    m = copy.copy(model)
    m.head = head
    base = model.model_id.split("+adapted")[0]
    m.model_id = f"{base}+adapted{int(version)}"
    return m


def save_version(model, base_folder, folder, report: dict) -> Path:
    """Write an adapted model as a loadable reward-model folder (towers referenced from the base)."""
    from .base import CONFIG_NAME

    folder = Path(folder)
    model.save(folder)
    cfg_path = folder / CONFIG_NAME
    cfg = json.loads(cfg_path.read_text())
    spec = cfg["backbone"]
    if spec.pop("embedded", False):  # the towers stay in the base folder: point at them
        bdir = Path(base_folder).resolve() / "backbone"
        if spec["kind"] == "joint":
            spec["source"] = str(bdir)
        else:
            spec["vision"], spec["text"] = str(bdir / "vision"), str(bdir / "text")
    cfg["adapted_from"] = str(Path(base_folder).resolve())
    cfg_path.write_text(json.dumps(cfg, indent=2))
    (folder / VERSION_FILE).write_text(json.dumps(report, indent=2))
    return folder


def versions(adapt_dir) -> list[Path]:
    """The saved versions in `adapt_dir`, oldest first (v1, v2, ...)."""
    d = Path(adapt_dir)
    if not d.is_dir():
        return []
    vs = [p for p in d.iterdir() if p.is_dir() and p.name[:1] == "v" and p.name[1:].isdigit()]
    return sorted(vs, key=lambda p: int(p.name[1:]))


def latest_model(base_folder, adapt_dir) -> Path:
    """The newest version in `adapt_dir` adapted from `base_folder` (a folder left by another
    model's run is not resumed), else the base model folder."""
    from .base import CONFIG_NAME

    base = str(Path(base_folder).resolve())
    for v in reversed(versions(adapt_dir) if adapt_dir else []):
        try:
            if json.loads((v / CONFIG_NAME).read_text()).get("adapted_from") == base:
                return v
        except (OSError, ValueError):
            continue  # a version being written or broken: an older one serves
    return Path(base_folder)
