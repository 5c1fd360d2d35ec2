"""Frozen EfficientNet-Lite0 features for the policy: computed once per frame and stored in
Episode.features (tagged with the encoder's id), so training never runs the CNN."""

from __future__ import annotations

import numpy as np
import torch

from . import FEATURE_DIM, FEATURE_ENCODER_ID, INPUT_SIZE
from .efficientnet_lite import LITE_MEAN, LITE_STD, for_inference, load_pretrained_lite0
from .preprocess import to_pixels


class FrozenImageEncoder:
    """uint8 images (N,H,W,3) or (H,W,3) -> (N,1280) / (1280,) float32 ImageNet features, no grad."""

    # 128 px input: ~9 ms per 100x100 frame on one CPU core (224 px: ~50 ms); training features
    # and the policy's online features must use the same setting, so it is the default everywhere.
    # The network runs with its batch norms folded (for_inference): the same features, faster.
    def __init__(self, image_size: int = INPUT_SIZE, batch: int = 64, bf16: bool = False, model=None):
        self.model = for_inference(model if model is not None else load_pretrained_lite0())
        self.image_size, self.batch, self.bf16 = image_size, batch, bf16
        self.dim = FEATURE_DIM
        self.id = FEATURE_ENCODER_ID if image_size == INPUT_SIZE else f"efficientnet_lite0-tflite@{image_size}"

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
                out.append(self.model(pixel_values=x).pooler_output.float())
        f = torch.cat(out).numpy()
        return f[0] if single else f


def add_features(episodes, encoder: FrozenImageEncoder | None = None):
    """Fill Episode.features of every episode whose features are missing or were made by another
    encoder (in place); returns the list. The encoder is built only if some episode needs it."""
    todo = [ep for ep in episodes if ep.features is None or ep.feature_encoder != _id(encoder)]
    if todo:
        encoder = encoder or FrozenImageEncoder()
        for ep in todo:
            ep.features = encoder(ep.images).astype(np.float32)
            ep.feature_encoder = encoder.id
    return episodes


def _id(encoder) -> str:
    return encoder.id if encoder is not None else FEATURE_ENCODER_ID
