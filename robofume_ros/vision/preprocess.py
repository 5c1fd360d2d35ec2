"""Frames -> normalised network input: the one place that does it, for every image network."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_pixels(frames, size: int | None, mean, std) -> torch.Tensor:
    """uint8 frames (N,H,W,3) as an array or tensor -> float (N,3,size,size), (x/255 - mean) / std.

    Resizing is bilinear, antialiased when shrinking; `size` None keeps the frames' own size.
    `mean` and `std` are per-channel sequences or (1,3,1,1) tensors."""
    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (N, H, W, 3), got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
        shrink = x.shape[-1] > size or x.shape[-2] > size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
