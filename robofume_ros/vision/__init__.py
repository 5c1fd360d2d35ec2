"""The one vision module: EfficientNet-Lite0 (ImageNet, TF-Lite release) and its preprocessing.

The policy's frozen features (`encoder.FrozenImageEncoder`) and the reward's default vision tower
(`reward/dual_encoder.py`) use the same network (`efficientnet_lite.py`) and the same frame ->
pixel conversion (`preprocess.to_pixels`). This file imports no torch, so that data code can read
the encoder id without loading the network.
"""

FEATURE_DIM = 1280
INPUT_SIZE = 128  # the policy's frames are resized to this before the network
# Stored with precomputed features (features.json) and in a checkpoint's observation spec; features
# made by any other encoder or preprocessing (e.g. the ImageNet-normalised, symmetric-padding
# encoder before "tflite") are recomputed, and a checkpoint that expects them is refused.
FEATURE_ENCODER_ID = f"efficientnet_lite0-tflite@{INPUT_SIZE}"

# The features a camera node publishes with each observation, computed once per frame for every
# consumer: the pooled vector (FEATURE_DIM, what the policy and the learner use) followed by the
# final feature map average-pooled to a SHARED_GRID x SHARED_GRID grid (channel-major, what the
# reward's default tower adds), all in float32. A consumer whose encoder id is FEATURE_ENCODER_ID
# takes the first FEATURE_DIM values, one whose id is SHARED_FEATURES_ID takes them all; any other
# consumer (another model, precision or size) computes its own from the image.
SHARED_GRID = 2
SHARED_FEATURES_ID = f"{FEATURE_ENCODER_ID}+grid{SHARED_GRID}"
SHARED_FEATURE_DIM = FEATURE_DIM * (1 + SHARED_GRID * SHARED_GRID)


def grid_id(encoder_id: str, grid: int) -> str:
    """The id of `encoder_id`'s pooled features with a `grid` x `grid` pooled map appended."""
    return f"{encoder_id}+grid{grid}" if grid > 0 else encoder_id


def feature_dim(encoder_id: str):
    """How many values features of `encoder_id` have (None for an encoder this module does not make)."""
    base, _, grid = encoder_id.partition("+grid")
    if base != FEATURE_ENCODER_ID or (grid and not grid.isdigit()):
        return None
    g = int(grid or 0)
    return FEATURE_DIM * (1 + g * g)


def shared_slice(published_id: str, wanted_id: str, length: int):
    """How many leading values of a published feature vector (`published_id`, `length` values) a
    consumer wanting `wanted_id` takes, or None when they are not its features."""
    if not published_id or not wanted_id:
        return None
    if published_id == wanted_id:
        return length
    if wanted_id == FEATURE_ENCODER_ID and published_id.startswith(FEATURE_ENCODER_ID + "+grid"):
        return FEATURE_DIM  # the pooled vector leads every grid layout
    return None
