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


def test_the_shared_features_are_the_policys_then_the_reward_towers_grid(lite0):
    """The camera's shared features (vision.SHARED_FEATURES_ID): the policy's pooled vector first,
    then the map pooled to the reward tower's 2x2 grid; each consumer takes its own part by id."""
    from robofume_ros.vision import (
        FEATURE_DIM,
        SHARED_FEATURE_DIM,
        SHARED_FEATURES_ID,
        SHARED_GRID,
        feature_dim,
        shared_slice,
    )

    shared = FrozenImageEncoder(model=lite0, grid=SHARED_GRID)
    f = shared(frames())
    assert f.shape == (2, SHARED_FEATURE_DIM) and shared.id == SHARED_FEATURES_ID
    np.testing.assert_allclose(f[:, :FEATURE_DIM], FrozenImageEncoder(model=lite0)(frames()), atol=1e-6)
    with torch.no_grad():
        h = lite0(pixel_values=to_pixels(frames(), 128, LITE_MEAN, LITE_STD)).last_hidden_state
    # channel-major: value c * 4 + k is channel c's k-th grid cell (row-major over the 2x2 cells)
    np.testing.assert_allclose(f[0, FEATURE_DIM + 4 * 7 + 0], h[0, 7, :2, :2].mean().item(), atol=1e-4)
    np.testing.assert_allclose(f[0, FEATURE_DIM + 4 * 7 + 3], h[0, 7, 2:, 2:].mean().item(), atol=1e-4)
    assert feature_dim(SHARED_FEATURES_ID) == SHARED_FEATURE_DIM and feature_dim(FEATURE_ENCODER_ID) == FEATURE_DIM
    assert feature_dim("clip-vit-b32") is None and feature_dim(FEATURE_ENCODER_ID + "+gridx") is None
    assert shared_slice(SHARED_FEATURES_ID, FEATURE_ENCODER_ID, SHARED_FEATURE_DIM) == FEATURE_DIM
    assert shared_slice(SHARED_FEATURES_ID, SHARED_FEATURES_ID, SHARED_FEATURE_DIM) == SHARED_FEATURE_DIM
    assert shared_slice(SHARED_FEATURES_ID, "efficientnet_lite0-tflite@224", SHARED_FEATURE_DIM) is None
    assert shared_slice("", FEATURE_ENCODER_ID, 0) is None


def test_an_observations_features_are_taken_only_by_the_encoder_they_belong_to():
    """ros.convert.shared_features: a consumer gets the camera's features when they are its
    encoder's, None when there are none or another's, and a clear error for a wrong length or NaN."""
    from robofume_ros.msg import Observation
    from robofume_ros.ros.convert import FeaturesError, shared_features
    from robofume_ros.vision import FEATURE_DIM, SHARED_FEATURE_DIM, SHARED_FEATURES_ID

    obs = Observation()
    assert shared_features(obs, FEATURE_ENCODER_ID) is None  # none sent: compute your own
    values = np.arange(SHARED_FEATURE_DIM, dtype=np.float32)
    obs.features, obs.features_id = values.tolist(), SHARED_FEATURES_ID
    np.testing.assert_array_equal(shared_features(obs, FEATURE_ENCODER_ID), values[:FEATURE_DIM])
    np.testing.assert_array_equal(shared_features(obs, SHARED_FEATURES_ID), values)
    assert shared_features(obs, "clip-vit-b32+grid2") is None  # another encoder's: not these
    assert shared_features(obs, None) is None
    obs.features = values[:100].tolist()
    with pytest.raises(FeaturesError, match="100 values, expected 6400"):
        shared_features(obs, FEATURE_ENCODER_ID)
    bad = values.copy()
    bad[3] = np.nan
    obs.features = bad.tolist()
    with pytest.raises(FeaturesError, match="NaN"):
        shared_features(obs, FEATURE_ENCODER_ID)


def test_a_datasets_shared_features_serve_the_policy_and_the_reward_without_a_second_pass(tmp_path, lite0):
    """`robofume main` writes the shared features (pooled + grid) once: the policy's add_features
    takes their pooled part and the reward's training (fp32 built-in tower) all of them, neither
    running the network again; a bf16 reward encodes its own."""
    from robofume_ros.data.dataset import DatasetWriter, load_episodes, write_features
    from robofume_ros.reward.dual_encoder import DualEncoderRewardModel
    from robofume_ros.reward.train import _features_by_episode
    from robofume_ros.rl.pointmass import scripted_dataset
    from robofume_ros.vision import FEATURE_DIM, SHARED_FEATURES_ID, SHARED_GRID

    with DatasetWriter(tmp_path / "d") as w:
        w.extend(scripted_dataset(2, noise=1.5, seed=1, image_size=32))
    shared = FrozenImageEncoder(model=lite0, grid=SHARED_GRID)
    assert write_features(tmp_path / "d", shared, progress=False) == 2
    eps = load_episodes(tmp_path / "d")
    assert [ep.feature_encoder for ep in eps] == [SHARED_FEATURES_ID] * 2
    full = [np.array(ep.features) for ep in eps]

    class NoNetwork(FrozenImageEncoder):
        def __init__(self):
            self.id = FEATURE_ENCODER_ID

        def __call__(self, images):
            raise AssertionError("the network ran again")

    policy_eps = load_episodes(tmp_path / "d")
    add_features(policy_eps, NoNetwork())
    for ep, f in zip(policy_eps, full):
        assert ep.feature_encoder == FEATURE_ENCODER_ID
        np.testing.assert_array_equal(ep.features, f[:, :FEATURE_DIM])

    reward = DualEncoderRewardModel.from_pretrained("default", precision="fp32")
    reward.image_features = lambda *a, **k: (_ for _ in ()).throw(AssertionError("the tower ran again"))
    got = _features_by_episode(reward, eps, [0, 1], progress=False)
    for k in (0, 1):
        np.testing.assert_array_equal(got[k].numpy(), full[k])
    bf16 = DualEncoderRewardModel.from_pretrained("default", precision="bf16")
    own = _features_by_episode(bf16, eps, [0], progress=False)[0].numpy()
    assert own.shape == full[0].shape and not np.allclose(own, full[0], atol=1e-3)  # its own, in bf16
