"""The one image conversion: raw camera buffers (sensor_msgs/Image fields) -> (H, W, 3) uint8 RGB,
and the one resize. The camera node (online frames) and `robofume dataset from-bags` (frames from
bags) both go through here, so a policy trained on converted bags sees the same pixels online.
No ROS imports: the callers pass the message's fields.
"""

from __future__ import annotations

import numpy as np

# encoding -> channels; 8UC3 / 8UC1 (OpenCV names some drivers publish) read as rgb8 / mono8
CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4, "8uc3": 3, "8uc1": 1}
SUPPORTED_ENCODINGS = tuple(CHANNELS)


class ImageError(ValueError):
    """A frame that cannot be used (wrong encoding, size or data length); the message says which."""


def buffer_to_rgb(height: int, width: int, encoding: str, step: int, data) -> np.ndarray:
    """Raw image buffer -> (H, W, 3) uint8 RGB (a view without copying when it is already rgb8).
    Raises ImageError for an unknown encoding, an empty image, a step below width*channels or a
    data length other than step*height."""
    enc = str(encoding).lower()
    if enc not in CHANNELS:
        raise ImageError(f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    h, w = int(height), int(width)
    if h <= 0 or w <= 0:
        raise ImageError(f"image has size {w}x{h}")
    c = CHANNELS[enc]
    step = int(step) if step else w * c
    if step < w * c:
        raise ImageError(f"image step {step} is smaller than width*channels {w * c}")
    buf = (
        np.frombuffer(data, dtype=np.uint8)
        if isinstance(data, (bytes, bytearray, memoryview))
        else np.asarray(data, dtype=np.uint8).reshape(-1)
    )
    if buf.size != step * h:
        raise ImageError(f"image data has {buf.size} bytes, expected step*height = {step}*{h} = {step * h}")
    img = buf.reshape(h, step)[:, : w * c].reshape(h, w, c)
    if c == 1:
        return np.repeat(img, 3, axis=2)
    if enc.startswith("bgr"):
        return img[:, :, 2::-1] if c == 4 else img[:, :, ::-1]
    return img[:, :, :3] if c == 4 else img


def resize_rgb(img: np.ndarray, size, crop=None) -> np.ndarray:
    """Optional crop (x, y, w, h) then resize to (H, W): an exact box filter for whole-number
    factors, else the nearest pixel to each output pixel's centre. numpy only."""
    if crop is not None and crop[2] > 0 and crop[3] > 0:
        x, y, cw, ch = crop
        if x < 0 or y < 0 or x + cw > img.shape[1] or y + ch > img.shape[0]:
            raise ImageError(f"crop {tuple(crop)} is outside the {img.shape[1]}x{img.shape[0]} frame")
        img = img[y : y + ch, x : x + cw]
    H, W = int(size[0]), int(size[1])
    h, w = img.shape[:2]
    if (h, w) == (H, W):
        return img
    if h % H == 0 and w % W == 0:  # exact box filter
        fy, fx = h // H, w // W
        return img.reshape(H, fy, W, fx, 3).mean(axis=(1, 3)).astype(np.uint8)
    ys = ((np.arange(H) + 0.5) * h / H).astype(np.int64)
    xs = ((np.arange(W) + 0.5) * w / W).astype(np.int64)
    return np.ascontiguousarray(img[ys][:, xs])


class FrameThinner:
    """Which camera frames become observations at `rate_hz`: one per control period on a schedule,
    not by the gap to the last one kept, so a source at the control rate whose frames jitter (a
    loaded simulator ticking 85 ms after the previous one) loses none, and a faster camera (30 Hz)
    gives one frame per period. A frame is kept when its stamp reaches the next slot less
    `slack` of a period; the slot then moves one period on (or to this frame, when the source fell
    more than a period behind)."""

    def __init__(self, rate_hz: float, slack: float = 0.3):
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        if not 0.0 <= slack < 0.5:
            raise ValueError(f"slack must be in [0, 0.5), got {slack}")
        self.period_ns = int(round(1e9 / rate_hz))
        self.slack_ns = int(slack * self.period_ns)
        self.due_ns: int | None = None  # the next slot

    def keep(self, stamp_ns: int) -> bool:
        last_kept = None if self.due_ns is None else self.due_ns - self.period_ns
        if last_kept is not None and last_kept <= stamp_ns < self.due_ns - self.slack_ns:
            return False  # early for its slot (a faster camera), or the frame kept already
        if last_kept is None or stamp_ns < last_kept or stamp_ns - self.due_ns >= self.period_ns:
            self.due_ns = stamp_ns + self.period_ns  # first frame, a clock set back, or a source a period behind
        else:
            self.due_ns += self.period_ns
        return True
