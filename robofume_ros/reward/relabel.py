"""Relabel episodes with a reward model (used by the dataset tool).

Transition t = (o_t, a_t, r_t, o_{t+1}) is a success when the (debounced) model says o_{t+1} shows
the task done: r_t = ``success_reward`` (RoboFuME: 0) and terminal_t = True; otherwise
r_t = ``fail_reward`` (-1) and terminal_t = False.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from .debounce import debounce


def relabel_episodes(
    episodes: Sequence,
    model,
    threshold: float | None = None,
    debounce_n: int = 1,
    success_reward: float = 0.0,
    fail_reward: float = -1.0,
    truncate: bool = False,
    instruction: str | None = None,
    batch_size: int = 64,
    progress: bool = False,
    return_probs: bool = False,
):
    """New Episodes (the inputs are not modified) with rewards/terminals/success from ``model``.

    ``threshold`` defaults to the model's own; ``instruction`` overrides each episode's; with
    ``truncate`` each episode is cut after its first success (as the online loop would have ended
    it). Provenance records the model id and threshold. With ``return_probs`` also returns the
    per-frame P(success) arrays (T+1,) of each episode."""
    thr = model.threshold if threshold is None else float(threshold)
    out, probs = [], []
    it = episodes
    if progress:
        from tqdm import tqdm

        it = tqdm(episodes, desc="relabel", unit="ep")
    for ep in it:
        p = model.predict_proba(ep.images, instruction or ep.instruction, batch_size=batch_size)
        ok = debounce(p >= thr, debounce_n)
        term = ok[1:].copy()
        rew = np.where(term, success_reward, fail_reward).astype(np.float32)
        T = len(ep.actions)
        end = T
        if truncate and term.any():
            end = int(np.flatnonzero(term)[0]) + 1
        prov = dict(ep.provenance or {})
        prov["reward_model"] = {"model_id": model.model_id, "threshold": thr, "debounce": int(debounce_n)}
        new = dataclasses.replace(
            ep,
            images=ep.images[: end + 1],
            proprio=ep.proprio[: end + 1],
            actions=ep.actions[:end],
            rewards=rew[:end],
            terminals=term[:end],
            success=bool(term[:end].any()),
            provenance=prov,
            features=None if ep.features is None else ep.features[: end + 1],
            success_gt=None if ep.success_gt is None else ep.success_gt[: end + 1],
            instruction=instruction or ep.instruction,
        )
        out.append(new)
        probs.append(p[: end + 1])
    return (out, probs) if return_probs else out
