"""Reward models: P(task done | camera frame, instruction). No ROS imports here.

Entry points: :func:`load_reward_model`, :class:`DualEncoderRewardModel` (default offline model
and CLIP/SigLIP), :class:`VLMRewardModel` (generative yes/no VLMs), :func:`relabel_episodes`,
:func:`debounce` / :class:`Debouncer`, and the ``train`` command (:mod:`robofume_ros.reward.train`).
Heavy modules (torch, transformers) load lazily on first use of those names.
"""

from __future__ import annotations

from .base import (
    CorruptCheckpointError,
    ModelNotFoundError,
    RewardModel,
    RewardModelError,
    WrongModelTypeError,
    load_reward_model,
)
from .debounce import Debouncer, debounce, first_success

_LAZY = {
    "DualEncoderRewardModel": ".dual_encoder",
    "VLMRewardModel": ".vlm",
    "relabel_episodes": ".relabel",
    "FrameSet": ".labels",
    "label_episodes": ".labels",
    "split_by_episode": ".labels",
    "binary_metrics": ".metrics",
    "select_threshold": ".metrics",
    "evaluate_on_episodes": ".metrics",
}

__all__ = [
    "RewardModel",
    "RewardModelError",
    "ModelNotFoundError",
    "WrongModelTypeError",
    "CorruptCheckpointError",
    "load_reward_model",
    "debounce",
    "first_success",
    "Debouncer",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
