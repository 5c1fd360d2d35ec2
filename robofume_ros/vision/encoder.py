"""Frozen EfficientNet-Lite0 features for the policy: computed once per frame and stored in
Episode.features (tagged with the encoder's id), so training never runs the CNN."""

from __future__ import annotations

import numpy as np
import torch

import torch.nn.functional as F

from . import FEATURE_DIM, FEATURE_ENCODER_ID, INPUT_SIZE, grid_id, shared_slice
from .efficientnet_lite import LITE_MEAN, LITE_STD, for_inference, load_pretrained_lite0
from .preprocess import to_pixels


def pooled_and_grid(out, grid: int = 0) -> torch.Tensor:
    """A vision network's output -> its pooled vector, followed (grid > 0) by the final feature map
    average-pooled to grid x grid and flattened channel-major: the layout of the camera's shared
    features (vision.SHARED_FEATURES_ID) and of the reward's grid tower."""
    pooled = out.pooler_output.float()
    return torch.cat([pooled, grid_pool(out.last_hidden_state, grid)], dim=1) if grid > 0 else pooled


def grid_pool(hidden: torch.Tensor, grid: int) -> torch.Tensor:
    """A (N, C, h, w) feature map average-pooled to (N, C * grid * grid), channel-major."""
    return F.adaptive_avg_pool2d(hidden.float(), grid).flatten(1)


class FrozenImageEncoder:
    """uint8 images (N,H,W,3) or (H,W,3) -> (N,1280) / (1280,) float32 ImageNet features, no grad
    (with `grid` > 0: (N, 1280 * (1 + grid^2)), the pooled vector then the grid-pooled map)."""

    # 128 px input: ~9 ms per 100x100 frame on one CPU core (224 px: ~50 ms); training features
    # and the policy's online features must use the same setting, so it is the default everywhere.
    # The network runs with its batch norms folded (for_inference): the same features, faster.
    def __init__(self, image_size: int = INPUT_SIZE, batch: int = 64, bf16: bool = False, model=None, grid: int = 0):
        self.model = for_inference(model if model is not None else load_pretrained_lite0())
        self.image_size, self.batch, self.bf16, self.grid = image_size, batch, bf16, int(grid)
        self.dim = FEATURE_DIM * (1 + self.grid * self.grid)
        base = FEATURE_ENCODER_ID if image_size == INPUT_SIZE else f"efficientnet_lite0-tflite@{image_size}"
        self.id = grid_id(base, self.grid)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        single = images.ndim == 3
        if single:
            images = images[None]
        out = []
        for i in range(0, len(images), self.batch):
            x = to_pixels(images[i : i + self.batch], self.image_size, LITE_MEAN, LITE_STD)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                out.append(pooled_and_grid(self.model(pixel_values=x), self.grid))
        f = torch.cat(out).numpy()
        return f[0] if single else f


def add_features(episodes, encoder: FrozenImageEncoder | None = None):
    """Fill Episode.features of every episode whose features are missing or were made by another
    encoder (in place); returns the list. Features that hold this encoder's as their leading part
    (the shared pooled + grid features, vision.SHARED_FEATURES_ID) are cut to it, not recomputed.
    The encoder is built only if some episode needs it."""
    todo = []
    for ep in episodes:
        n = None
        if ep.features is not None and ep.feature_encoder:
            n = shared_slice(ep.feature_encoder, _id(encoder), np.shape(ep.features)[1])
        if n is None:
            todo.append(ep)
        elif n != np.shape(ep.features)[1]:
            ep.features, ep.feature_encoder = ep.features[:, :n], _id(encoder)
    if todo:
        encoder = encoder or FrozenImageEncoder()
        for ep in todo:
            ep.features = encoder(ep.images).astype(np.float32)
            ep.feature_encoder = encoder.id
    return episodes


def _id(encoder) -> str:
    return encoder.id if encoder is not None else FEATURE_ENCODER_ID
