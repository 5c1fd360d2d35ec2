"""sensor_msgs/Image, CompressedImage and ArmCommand <-> numpy; clock helpers.

Image decoding never raises on bad input from the wire: it raises ImageError with a message
that the nodes log (throttled) before dropping the frame.
"""
from __future__ import annotations

import array
import io

import numpy as np

SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")


class ImageError(ValueError):
    """A frame that cannot be used (wrong encoding, size or data length)."""


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB, without copying when it is already rgb8."""
    enc = msg.encoding.lower()
    if enc not in SUPPORTED_ENCODINGS:
        raise ImageError(f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise ImageError(f"image has size {w}x{h}")
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}[enc]
    step = int(msg.step) if msg.step else w * channels
    if step < w * channels:
        raise ImageError(f"image step {step} is smaller than width*channels {w * channels}")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size != step * h:
        raise ImageError(f"image data has {buf.size} bytes, expected step*height = {step}*{h} = {step * h}")
    img = buf.reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if enc == "rgb8":
        return img
    if enc == "bgr8":
        return img[:, :, ::-1]
    if enc == "mono8":
        return np.repeat(img, 3, axis=2)
    if enc == "rgba8":
        return img[:, :, :3]
    return img[:, :, 2::-1]  # bgra8


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> (H, W, 3) uint8 RGB."""
    try:
        from PIL import Image as PILImage
        with PILImage.open(io.BytesIO(bytes(msg.data))) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad frame, not a crash
        raise ImageError(f"cannot decode compressed image (format {msg.format!r}): {e}") from e


def rgb_to_image(img: np.ndarray, stamp, frame_id: str = "camera"):
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8."""
    from sensor_msgs.msg import Image
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"expected (H, W, 3) uint8, got {img.shape} {img.dtype}")
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = img.shape[:2]
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = img.shape[1] * 3
    msg.data = array.array("B", np.ascontiguousarray(img).tobytes())
    return msg


def resize_rgb(img: np.ndarray, size: tuple[int, int], crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Optional crop (x, y, w, h) then area/nearest resize to (H, W) with numpy only."""
    if crop is not None and crop[2] > 0 and crop[3] > 0:
        x, y, cw, ch = crop
        if x < 0 or y < 0 or x + cw > img.shape[1] or y + ch > img.shape[0]:
            raise ImageError(f"crop {crop} is outside the {img.shape[1]}x{img.shape[0]} frame")
        img = img[y:y + ch, x:x + cw]
    H, W = size
    h, w = img.shape[:2]
    if (h, w) == (H, W):
        return img
    if h % H == 0 and w % W == 0:  # exact box filter
        fy, fx = h // H, w // W
        return img.reshape(H, fy, W, fx, 3).mean(axis=(1, 3)).astype(np.uint8)
    ys = ((np.arange(H) + 0.5) * h / H).astype(np.int64)
    xs = ((np.arange(W) + 0.5) * w / W).astype(np.int64)
    return img[ys][:, xs]


def action_to_command(action: np.ndarray, stamp, source: str, intervention: bool = False):
    """Normalized action ([x, y, z, g] or [x, y, z, r, p, y, g]) -> robofume_ros/ArmCommand."""
    from robofume_ros.msg import ArmCommand
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.size not in (4, 7):
        raise ValueError(f"action must have 4 or 7 components, got {a.size}")
    msg = ArmCommand()
    msg.header.stamp = stamp
    msg.translation.x, msg.translation.y, msg.translation.z = (float(v) for v in a[:3])
    if a.size == 7:
        msg.rotation.x, msg.rotation.y, msg.rotation.z = (float(v) for v in a[3:6])
    msg.gripper = float(a[-1])
    msg.source = source
    msg.intervention = intervention
    return msg


def command_to_action(msg, action_dim: int) -> np.ndarray:
    """robofume_ros/ArmCommand -> normalized action of `action_dim` (4 or 7) components."""
    t, r = msg.translation, msg.rotation
    if action_dim == 4:
        return np.array([t.x, t.y, t.z, msg.gripper], dtype=np.float64)
    if action_dim == 7:
        return np.array([t.x, t.y, t.z, r.x, r.y, r.z, msg.gripper], dtype=np.float64)
    raise ValueError(f"action_dim must be 4 or 7, got {action_dim}")


def stamp_to_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_key(stamp) -> int:
    """Exact integer key of a builtin_interfaces/Time, for pairing messages by stamp."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
