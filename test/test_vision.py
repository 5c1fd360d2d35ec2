"""The one vision module: one EfficientNet-Lite0 and one preprocessing for the policy's frozen
features and the reward's vision tower; features tagged with the encoder that made them."""

import os

import numpy as np
import pytest
import torch

from robofume_ros.vision import FEATURE_ENCODER_ID
from robofume_ros.vision.efficientnet_lite import LITE_MEAN, LITE_STD, load_pretrained_lite0
from robofume_ros.vision.encoder import FrozenImageEncoder, add_features
from robofume_ros.vision.preprocess import to_pixels

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lite0():
    return load_pretrained_lite0()


def frames():
    rng = np.random.default_rng(7)
    return (rng.random((2, 100, 100, 3)) * 255).astype(np.uint8)


def test_the_reward_tower_sees_the_same_pixels_and_features_as_before_the_merge(lite0):
    """Values recorded with the reward's own EfficientNet-Lite0 and preprocessing before the two
    implementations became one (commit abf1555): the reward's inputs and features are unchanged."""
    from robofume_ros.reward.dual_encoder import Backbone

    px = Backbone(224, LITE_MEAN, LITE_STD).pixels(frames())
    assert tuple(px.shape) == (2, 3, 224, 224)
    np.testing.assert_allclose(px[0, :, 50, 50].numpy(), [-0.35723299, 0.36015043, -0.19034840], atol=1e-5)
    assert abs(float(px.mean()) - 0.0015659642) < 1e-6
    with torch.no_grad():
        f = lite0(pixel_values=px).pooler_output
    np.testing.assert_allclose(
        f[:, :3].numpy(), [[0.61431807, 0.0, 0.96112955], [0.43009922, 0.0, 0.90537775]], atol=2e-4
    )
    assert abs(float(f.mean()) - 0.0620309934) < 1e-5


def test_policy_features_come_from_the_reward_network_at_128px(lite0):
    """The policy's frozen encoder is that same network and preprocessing at its 128 px input (run
    with its batch norms folded into the convolutions: equal up to float rounding)."""
    enc = FrozenImageEncoder(model=lite0)
    f = enc(frames())
    with torch.no_grad():
        ref = lite0(pixel_values=to_pixels(frames(), 128, LITE_MEAN, LITE_STD)).pooler_output.numpy()
    np.testing.assert_allclose(f, ref, atol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in lite0.modules())  # the given model is left as it is
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.model.modules())
    np.testing.assert_allclose(f[:, :3], [[0.11435650, 0.0, 0.34693393], [0.16417810, 0.0, 1.52944505]], atol=2e-4)
    assert f.shape == (2, 1280) and f.dtype == np.float32
    np.testing.assert_allclose(enc(frames()[0]), f[0], atol=1e-6)  # one frame -> one vector
    assert enc.id == FEATURE_ENCODER_ID


def test_imagenet_weights_and_preprocessing_classify_a_photo():
    """The conversion of the TF-Lite weights and the (x - 127) / 128 normalisation are right: the
    ImageNet head names Grace Hopper's photo a military uniform (class 652). The encoder the policy
    used before the merge (ImageNet mean/std, symmetric padding) called it a suit."""
    import matplotlib
    from PIL import Image

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    img = np.asarray(Image.open(path).convert("RGB"))[None]
    model, fc = load_pretrained_lite0(with_classifier=True)
    with torch.no_grad():
        probs = fc(model(pixel_values=to_pixels(img, 224, LITE_MEAN, LITE_STD)).pooler_output).softmax(-1)
    assert int(probs.argmax()) == 652 and float(probs.max()) > 0.3


def test_to_pixels_resizes_normalises_and_rejects_other_shapes():
    x = np.full((1, 10, 20, 3), 255, np.uint8)
    px = to_pixels(x, 8, (0.5,) * 3, (0.5,) * 3)
    assert tuple(px.shape) == (1, 3, 8, 8)
    np.testing.assert_allclose(px.numpy(), 1.0, atol=1e-6)
    assert tuple(to_pixels(torch.from_numpy(x), None, (0.0,) * 3, (1.0,) * 3).shape) == (1, 3, 10, 20)
    with pytest.raises(ValueError, match=r"expected frames of shape \(N, H, W, 3\)"):
        to_pixels(np.zeros((10, 20, 3), np.uint8), 8, (0.5,) * 3, (0.5,) * 3)


def test_features_of_another_encoder_are_recomputed_never_mixed(tmp_path, lite0):
    """Features travel with the id of the encoder that made them, on disk too; add_features and
    write_features replace those of any other encoder (e.g. features from before the merge)."""
    from robofume_ros.data.dataset import DatasetWriter, load_episodes, write_features
    from robofume_ros.rl.pointmass import scripted_dataset

    eps = scripted_dataset(2, noise=1.5, seed=1, image_size=32)
    stale = np.ones((len(eps[0]) + 1, 1280), np.float32)
    eps[0].features, eps[0].feature_encoder = stale, "efficientnet_lite0@128"
    with DatasetWriter(tmp_path / "d") as w:
        w.extend(eps)
    back = load_episodes(tmp_path / "d")
    assert back[0].feature_encoder == "efficientnet_lite0@128" and back[1].features is None
    enc = FrozenImageEncoder(model=lite0)
    add_features(back, enc)
    assert all(ep.feature_encoder == FEATURE_ENCODER_ID for ep in back)
    np.testing.assert_allclose(back[0].features, enc(np.asarray(back[0].images)), atol=1e-6)
    assert write_features(tmp_path / "d", enc, progress=False) == 2  # the stale tag and the missing ones
    assert write_features(tmp_path / "d", enc, progress=False) == 0  # done once
    again = load_episodes(tmp_path / "d")
    assert [ep.feature_encoder for ep in again] == [FEATURE_ENCODER_ID] * 2
    np.testing.assert_allclose(again[0].features, back[0].features, atol=1e-6)


def test_a_checkpoint_trained_on_another_encoders_features_is_refused(tmp_path):
    from tiny_models import tiny_learner_checkpoint

    from robofume_ros.rl import checkpoint as ckpt
    from robofume_ros.rl.learner import Learner
    from robofume_ros.rl.policy import Policy

    path = tiny_learner_checkpoint(tmp_path / "l.pt")
    p = ckpt.load_checkpoint(path)
    p["obs_spec"]["feature_encoder"] = "efficientnet_lite0@128"
    p["policy"]["obs_spec"]["feature_encoder"] = "efficientnet_lite0@128"
    with pytest.raises(ckpt.CheckpointError, match="trained on image features of 'efficientnet_lite0@128'"):
        Policy(p, "l.pt")
    ckpt.save_checkpoint(tmp_path / "old.pt", p)
    with pytest.raises(ckpt.CheckpointError, match="pre-train it again"):
        Learner.load(tmp_path / "old.pt")
    p["policy"]["obs_spec"]["feature_encoder"] = FEATURE_ENCODER_ID
    Policy(p, "l.pt")  # the current encoder's id loads
