"""sensor_msgs/Image, CompressedImage and ArmCommand <-> numpy; clock helpers.

Image decoding never raises on bad input from the wire: it raises ImageError with a message
that the nodes log (throttled) before dropping the frame.
"""

from __future__ import annotations

import array
import io

import numpy as np

from robofume_ros.interfaces import command_to_action
from robofume_ros.data.images import SUPPORTED_ENCODINGS, ImageError, buffer_to_rgb, resize_rgb

__all__ = [
    # the one command and image conversions (interfaces.py, data/images.py), for the nodes
    "command_to_action",
    "SUPPORTED_ENCODINGS",
    "ImageError",
    "buffer_to_rgb",
    "resize_rgb",
    # message <-> numpy and clock helpers of this module
    "image_to_rgb",
    "FeaturesError",
    "shared_features",
    "compressed_to_rgb",
    "rgb_to_image",
    "action_to_command",
    "stamp_to_sec",
    "stamp_key",
]


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB (data/images.py: the one conversion)."""
    return buffer_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data)


class FeaturesError(ValueError):
    """An observation's shared image features that cannot be what they claim (length, NaN)."""


def shared_features(msg, wanted_id) -> np.ndarray | None:
    """The image features an Observation carries (the camera's, computed once per frame) that a
    consumer whose encoder id is `wanted_id` can use instead of running its own encoder, as a float32
    array; None when the message carries none or another encoder's (the consumer then computes its
    own from the image). Raises FeaturesError for features of the wrong length or not finite."""
    from robofume_ros.vision import feature_dim, shared_slice

    fid = getattr(msg, "features_id", "")
    if not fid or not wanted_id:
        return None
    values = np.asarray(msg.features, dtype=np.float32).reshape(-1)
    want = feature_dim(fid)
    if want is not None and len(values) != want:
        raise FeaturesError(f"features ({fid}) hold {len(values)} values, expected {want}")
    n = shared_slice(fid, wanted_id, len(values))
    if n is None:
        return None
    if not np.all(np.isfinite(values[:n])):
        raise FeaturesError(f"features ({fid}) hold NaN or Inf")
    return values[:n]


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> (H, W, 3) uint8 RGB."""
    try:
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(bytes(msg.data))) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
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


def stamp_to_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_key(stamp) -> int:
    """Exact integer key of a builtin_interfaces/Time, for pairing messages by stamp."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
