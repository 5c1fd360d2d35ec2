"""The one in-memory episode type shared by the dataset tools, the replay storage and the learner.

An episode of T transitions holds T+1 observations (o_0 .. o_T) and T actions, rewards and
terminal flags: transition t is (o_t, a_t, r_t, o_{t+1}, terminal_t). Episodes in a reset-free
run are cut at task switches; the next episode starts from the observation where the previous
one ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

SOURCES = ("prior", "target_demo", "failure", "online", "intervention")


@dataclass
class Episode:
    images: np.ndarray  # (T+1, H, W, 3) uint8
    proprio: np.ndarray  # (T+1, P) float32
    actions: np.ndarray  # (T, A) float32, normalized to [-1, 1]
    rewards: np.ndarray  # (T,) float32, raw task reward (RoboFuME: -1 / 0 before scale+bias)
    terminals: np.ndarray  # (T,) bool: true only where the task was achieved (not at time limits)
    instruction: str  # language instruction, e.g. "open the drawer"
    task: str  # task id, e.g. "drawer-open"
    source: str = "online"  # one of SOURCES
    success: bool = False  # did the episode achieve its task
    provenance: dict = field(default_factory=dict)  # e.g. {"bag": path, "t_start": s, "t_end": s}
    features: Optional[np.ndarray] = None  # (T+1, F) float32 frozen-encoder features, optional
    feature_encoder: Optional[str] = None  # id of the encoder that made `features` (vision.FEATURE_ENCODER_ID)
    success_gt: Optional[np.ndarray] = None  # (T+1,) bool simulator ground truth, evaluation only

    def __post_init__(self):
        T = len(self.actions)
        if self.source not in SOURCES:
            raise ValueError(f"episode source {self.source!r} is not one of {SOURCES}")
        for name, arr, n in (
            ("images", self.images, T + 1),
            ("proprio", self.proprio, T + 1),
            ("rewards", self.rewards, T),
            ("terminals", self.terminals, T),
        ):
            if len(arr) != n:
                raise ValueError(f"episode {name} has length {len(arr)}, expected {n} for {T} actions")
        if self.features is not None and len(self.features) != T + 1:
            raise ValueError(f"episode features have length {len(self.features)}, expected {T + 1}")
        if self.success_gt is not None and len(self.success_gt) != T + 1:
            raise ValueError(f"episode success_gt has length {len(self.success_gt)}, expected {T + 1}")
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"episode images must be (T+1,H,W,3) uint8, got {self.images.shape} {self.images.dtype}")

    def __len__(self) -> int:
        return len(self.actions)
