"""Training labels for the reward model, from demos and failures only.

Positives: the last ``k`` frames of successful demos. Negatives: every frame of failure episodes
and the early frames of demos (the first ``neg_demo_frac`` of each). ``Episode.success_gt`` is
never used for labels: it is simulator ground truth, for evaluation only.

Reset-free pairs add one more source of positives (``reverse``): a demo of the forward task starts
where the backward task is done (and the other way round), so the first ``reverse_k`` frames of a
successful demo are positives for its paired task's instruction. Without them a "closed drawer" is
only ever seen at the end of a closing motion, and the classifier misses a closed drawer with the
arm anywhere else.

And one source of negatives (``pair_negatives``): the last frames of a successful demo show its
task done, which is the paired task's start, so they are negatives for the paired instruction.
Without them nothing ties the verdict to the instruction: a classifier trained on "end of a demo"
vs "early or failed frames" calls an open drawer done for "close the drawer" too (p 0.99 on every
forward demo's last frame, measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

DEMO_SOURCES = ("target_demo", "intervention")


@dataclass
class FrameSet:
    """Labelled frames: images (N,H,W,3) uint8, instructions (N,), labels (N,) float in {0,1},
    episode (N,) int index into the source episode list, t (N,) frame index."""

    images: np.ndarray
    instructions: list
    labels: np.ndarray
    episode: np.ndarray
    t: np.ndarray

    def __len__(self):
        return len(self.labels)

    def subset(self, idx) -> "FrameSet":
        idx = np.asarray(idx)
        return FrameSet(
            self.images[idx], [self.instructions[i] for i in idx], self.labels[idx], self.episode[idx], self.t[idx]
        )

    @staticmethod
    def concat(sets: Sequence["FrameSet"]) -> "FrameSet":
        sets = [s for s in sets if s is not None and len(s)]
        if not sets:
            raise ValueError("no labelled frames")
        return FrameSet(
            np.concatenate([s.images for s in sets]),
            sum((list(s.instructions) for s in sets), []),
            np.concatenate([s.labels for s in sets]),
            np.concatenate([s.episode for s in sets]),
            np.concatenate([s.t for s in sets]),
        )

    @property
    def n_pos(self) -> int:
        return int((self.labels > 0.5).sum())

    @property
    def n_neg(self) -> int:
        return int((self.labels <= 0.5).sum())


def episode_labels(
    ep,
    k: int = 3,
    neg_demo_frac: float = 0.5,
    demo_sources=DEMO_SOURCES,
    failure_stride: int = 1,
    prior_as_demo: bool = True,
):
    """(t indices, labels) for one episode; empty arrays where it gives no labels."""
    n = len(ep.images)
    src = ep.source
    is_demo = src in demo_sources or (prior_as_demo and src == "prior")
    if src == "failure" or (is_demo and not ep.success):
        t = np.arange(0, n, max(1, failure_stride))
        return t, np.zeros(len(t), np.float32)
    if is_demo and ep.success:
        k = max(1, min(k, n))
        pos = np.arange(n - k, n)
        n_neg = int(np.floor(neg_demo_frac * n))
        n_neg = min(n_neg, n - k)
        neg = np.arange(0, n_neg)
        return np.concatenate([neg, pos]), np.concatenate(
            [np.zeros(len(neg), np.float32), np.ones(len(pos), np.float32)]
        )
    return np.zeros(0, int), np.zeros(0, np.float32)


def reverse_pairs(episodes: Sequence) -> dict:
    """instruction -> paired instruction, when the successful target demos hold exactly two
    instructions (a reset-free forward/backward pair); {} otherwise."""
    instr = sorted({e.instruction for e in episodes if e.source in DEMO_SOURCES and e.success})
    return {instr[0]: instr[1], instr[1]: instr[0]} if len(instr) == 2 else {}


def label_episodes(
    episodes: Sequence,
    k: int = 3,
    neg_demo_frac: float = 0.5,
    sources: Iterable[str] | None = None,
    failure_stride: int = 1,
    episode_ids: Sequence[int] | None = None,
    reverse: dict | None = None,
    reverse_k: int = 3,
    pair_negatives: int = 0,
) -> FrameSet | None:
    """Labelled frames of ``episodes`` (optionally only those whose source is in ``sources``);
    ``reverse`` (instruction -> paired instruction) adds the reset-free start-frame positives
    (first ``reverse_k`` frames) and end-frame negatives (last ``pair_negatives`` frames) of the
    paired instruction."""
    ims, ins, labs, epi, ts = [], [], [], [], []

    def add(ep, j, t, y, instruction):
        ims.append(ep.images[t])
        ins.extend([instruction] * len(t))
        labs.append(y)
        epi.append(np.full(len(t), j if episode_ids is None else episode_ids[j]))
        ts.append(t)

    for j, ep in enumerate(episodes):
        if sources is not None and ep.source not in sources:
            continue
        t, y = episode_labels(ep, k=k, neg_demo_frac=neg_demo_frac, failure_stride=failure_stride)
        if len(t):
            add(ep, j, t, y, ep.instruction)
        if reverse and ep.source in DEMO_SOURCES and ep.success and ep.instruction in reverse:
            n = len(ep.images)
            if reverse_k > 0:
                t = np.arange(min(reverse_k, n))
                add(ep, j, t, np.ones(len(t), np.float32), reverse[ep.instruction])
            if pair_negatives > 0:
                t = np.arange(max(0, n - pair_negatives), n)
                add(ep, j, t, np.zeros(len(t), np.float32), reverse[ep.instruction])
    if not labs:
        return None
    return FrameSet(np.concatenate(ims), ins, np.concatenate(labs), np.concatenate(epi), np.concatenate(ts))


def split_by_episode(episodes: Sequence, val_frac: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train/held-out episode indices, stratified by (source, success) so that each group with at
    least two episodes puts at least one in each split."""
    rng = np.random.default_rng(seed)
    groups: dict = {}
    for i, ep in enumerate(episodes):
        groups.setdefault((ep.source, bool(ep.success), ep.task), []).append(i)
    train, val = [], []
    for key in sorted(groups, key=str):
        idx = list(groups[key])
        rng.shuffle(idx)
        n_val = int(round(val_frac * len(idx)))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val += idx[:n_val]
        train += idx[n_val:]
    return sorted(train), sorted(val)
