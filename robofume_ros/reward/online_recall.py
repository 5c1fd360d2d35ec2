"""How a reward's debounced verdict did on the episodes of a reset-free run, against the simulator's
verdict (pure Python; used by the main job's report and `robofume reward audit`).

A frame stream is a list of dicts with ``episode``, ``task``, ``probability`` (the reward for the
frame's own instruction), ``gt`` (the simulator's verdict, None where unknown) and optionally
``partner_probability`` (the reward for the other task of a reset-free pair: the reward node's veto).
Per episode the verdict fires where ``n`` frames in a row are at or above the threshold; it is
*recognised* when it fires on a success frame or at most ``tolerance`` frames before one (the
simulator's flag is a hard line through a continuous motion), *premature* when it fires earlier or
in an episode with no success frame, *missed* when it never fires in an episode with a success frame.
"""

from __future__ import annotations

import numpy as np

VERDICTS = ("recognised", "premature", "missed", "none")


def auc(pos, neg) -> float:
    """P(a success frame scores above a non-success frame), ties counted half (Mann-Whitney)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allp = np.concatenate([pos, neg])
    _, inv, counts = np.unique(allp, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # average rank of each distinct value (ties)
    ranks = (upper - (counts - 1) / 2.0)[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def episode_verdict(frames: list[dict], threshold: float, n: int, tolerance: int = 0) -> str:
    """One of VERDICTS for one episode's frames (in order)."""
    from .debounce import frame_success

    run = 0
    for i, f in enumerate(frames):
        run = run + 1 if frame_success(f["probability"], threshold, f.get("partner_probability")) else 0
        if run >= n:
            return "recognised" if any(g["gt"] for g in frames[i : i + tolerance + 1]) else "premature"
    return "missed" if any(f["gt"] for f in frames) else "none"


def by_task(frames: list[dict]) -> dict:
    """{task: [episode frames, ...]} of the frames with a known simulator verdict."""
    eps: dict = {}
    for f in frames:
        if f["gt"] is not None:
            eps.setdefault(f["episode"], []).append(f)
    out: dict = {}
    for v in eps.values():
        out.setdefault(v[0]["task"], []).append(v)
    return dict(sorted(out.items()))


def verdict_counts(episodes: list[list[dict]], threshold: float, n: int, tolerance: int = 0) -> dict:
    verdicts = [episode_verdict(v, threshold, n, tolerance) for v in episodes]
    return {k: verdicts.count(k) for k in VERDICTS}
