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
