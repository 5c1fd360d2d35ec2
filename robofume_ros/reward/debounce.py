"""Per-frame success decisions (pure; used by the reward node, the report and the reward audits).

Debouncing: success is declared only after ``n`` consecutive positive frames, which turns a few
isolated false positives of the classifier into none, at the price of ``n-1`` frames of delay.

The reset-free pair veto: the forward task's goal is where the backward task starts and the other
way round (drawer open / drawer closed), so no frame is "done" for both. A frame that the model
calls done for the active task *and* for its paired task is one the model cannot tell apart (in
practice: a half-open drawer, or an arm pose it keys on); it counts as not done.
"""

from __future__ import annotations

import numpy as np


def debounce(flags, n: int) -> np.ndarray:
    """out[t] = flags[t-n+1..t] all true (False for t < n-1). ``n <= 1`` returns flags as bools."""
    f = np.asarray(flags, dtype=bool).ravel()
    if n <= 1 or len(f) == 0:
        return f.copy()
    run = np.zeros(len(f), dtype=int)
    c = 0
    for i, v in enumerate(f):
        c = c + 1 if v else 0
        run[i] = c
    return run >= n


def frame_success(p_task: float, threshold: float, p_paired: float | None = None) -> bool:
    """The verdict of one frame: ``p_task >= threshold``, vetoed when the paired task's probability
    ``p_paired`` (None: no pair) is at or above the threshold too. NaN is never a success."""
    ok = bool(np.isfinite(p_task) and p_task >= threshold)
    if ok and p_paired is not None and np.isfinite(p_paired) and p_paired >= threshold:
        return False
    return ok


def first_success(flags, n: int = 1) -> int | None:
    """Index of the first frame where the debounced flag is true, or None."""
    d = debounce(flags, n)
    idx = np.flatnonzero(d)
    return int(idx[0]) if len(idx) else None


class Debouncer:
    """Streaming form of :func:`debounce`: ``update(flag) -> bool``; ``reset()`` at episode starts."""

    def __init__(self, n: int = 1):
        if n < 1:
            raise ValueError(f"debounce length must be >= 1, got {n}")
        self.n = int(n)
        self.count = 0

    def update(self, flag: bool) -> bool:
        self.count = self.count + 1 if bool(flag) else 0
        return self.count >= self.n

    def reset(self) -> None:
        self.count = 0
