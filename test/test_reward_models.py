"""Reward-model backends: tiny random transformers models saved to a folder and loaded through the
production from_pretrained path; save/load round trips; clear errors."""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from robofume_ros.reward import (
    CorruptCheckpointError,
    ModelNotFoundError,
    WrongModelTypeError,
    load_reward_model,
)
from robofume_ros.reward import tiny
from robofume_ros.reward.dual_encoder import DualEncoderRewardModel
from robofume_ros.reward.vlm import VLMRewardModel


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return {
        "clip": tiny.make_tiny_clip(d / "clip"),
        "siglip": tiny.make_tiny_clip(d / "siglip", kind="siglip"),
        "llava": tiny.make_tiny_llava(d / "llava"),
        "bert": tiny.make_tiny_text_encoder(d / "bert"),
        "effnet": tiny.make_tiny_efficientnet(d / "effnet"),
    }


def frames(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 100, 100, 3), dtype=np.uint8)


def test_clip_zero_shot_and_roundtrip(folders, tmp_path):
    m = DualEncoderRewardModel.from_pretrained(str(folders["clip"]))
    assert m.backbone.joint and m.use_zero_shot and m.backbone.image_size == 32
    p = m.predict_proba(frames(), "open the drawer")
    assert p.shape == (4,) and np.all((p >= 0) & (p <= 1))
    # zero-shot: the instruction changes the prediction
    q = m.predict_proba(frames(), "close the window")
    assert not np.allclose(p, q)
    # a single (H,W,3) frame and per-frame instructions
    assert m.predict_proba(frames(1)[0], "open the drawer").shape == (1,)
    assert m.predict_proba(frames(2), ["open the drawer", "close the drawer"]).shape == (2,)
    # one frame against both tasks of a pair (the reward node's veto): image tower once, same numbers
    both = m.predict_proba_instructions(frames()[1], ["open the drawer", "close the window"])
    np.testing.assert_allclose(both, [p[1], q[1]], atol=1e-5)
    m.threshold = 0.37
    m.save(tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "reward_model.json").read_text())
    assert cfg["model_type"] == "dual_encoder" and cfg["threshold"] == 0.37
    m2 = load_reward_model(tmp_path / "ck")
    assert isinstance(m2, DualEncoderRewardModel) and m2.threshold == pytest.approx(0.37)
    np.testing.assert_allclose(m2.predict_proba(frames(), "open the drawer"), p, atol=1e-5)
    assert m2.model_id == m.model_id
    np.testing.assert_array_equal(m2.predict(frames(), "open the drawer"), p >= 0.37)


def test_embedded_backbone_survives_source_deletion(folders, tmp_path):
    import shutil

    src = tmp_path / "clipcopy"
    shutil.copytree(folders["clip"], src)
    m = DualEncoderRewardModel.from_pretrained(str(src))
    p = m.predict_proba(frames(), "open the drawer")
    m.save(tmp_path / "ck", embed_backbone=True)
    shutil.rmtree(src)
    m2 = load_reward_model(tmp_path / "ck")
    np.testing.assert_allclose(m2.predict_proba(frames(), "open the drawer"), p, atol=1e-5)


def test_siglip_dual_encoder(folders):
    m = DualEncoderRewardModel.from_pretrained(str(folders["siglip"]))
    assert m.backbone.joint
    p = m.predict_proba(frames(3), "open the drawer")
    assert p.shape == (3,) and np.all(np.isfinite(p))


def test_towers_backbone_with_tiny_efficientnet_and_bert(folders, tmp_path):
    spec = {"kind": "towers", "vision": str(folders["effnet"]), "text": str(folders["bert"]), "spatial_grid": 2}
    m = DualEncoderRewardModel.from_pretrained(spec, image_size=48)
    assert not m.backbone.joint
    f = m.image_features(frames(2))
    assert f.shape == (2, 32 + 32 * 4)
    p = m.predict_proba(frames(2), "open the drawer")
    np.testing.assert_allclose(p, 0.5)  # untrained head starts at 0.5
    m.save(tmp_path / "ck")
    m2 = load_reward_model(tmp_path / "ck")
    assert m2.backbone.image_size == 48 and m2.backbone.spatial_grid == 2


def test_default_backbone_uses_packaged_weights():
    m = DualEncoderRewardModel.from_pretrained("default")
    assert m.model_id == "dual_encoder:efficientnet-lite0+all-minilm-l6-v2"
    assert m.backbone.image_size == 128
    t = m._text(["open the drawer", "close the drawer", "open the drawer please"])
    # a real sentence model: paraphrases are closer than opposites
    assert float(t[0] @ t[2]) > float(t[0] @ t[1]) - 0.2
    f = m.image_features(frames(2))
    assert f.shape == (2, 1280 * 5) and torch.isfinite(f).all()


def test_an_fp32_default_reward_judges_on_the_cameras_shared_features():
    """The built-in tower in float32 takes the camera's features (vision.SHARED_FEATURES_ID) in
    place of its own pass, with the same verdicts; in bf16, or with another tower or LoRA, it does
    not (its features would differ from what its head was trained on)."""
    from robofume_ros.vision import SHARED_FEATURES_ID, SHARED_GRID
    from robofume_ros.vision.encoder import FrozenImageEncoder

    m = DualEncoderRewardModel.from_pretrained("default", precision="fp32")
    assert m.features_id == SHARED_FEATURES_ID
    shots = frames(3)
    camera = FrozenImageEncoder(grid=SHARED_GRID)(shots)
    for k in range(3):
        own = m.predict_with_features(shots[k], "open the drawer", "close the drawer")
        shared = m.predict_with_features(shots[k], "open the drawer", "close the drawer", features=camera[k])
        assert shared[0] == pytest.approx(own[0], abs=1e-4) and shared[1] == pytest.approx(own[1], abs=1e-4)
        np.testing.assert_allclose(shared[2], own[2], atol=2e-4)
    assert DualEncoderRewardModel(m.backbone, head=m.head, precision="bf16").features_id is None
    assert (
        DualEncoderRewardModel.from_pretrained("default", precision="fp32", spatial_grid=0).features_id
        == (SHARED_FEATURES_ID.split("+")[0])
    )


def test_vlm_llava_yes_no_and_roundtrip(folders, tmp_path):
    m = VLMRewardModel.from_pretrained(str(folders["llava"]), lora_r=4)
    assert "open the drawer" in m.prompt("open the drawer")
    assert m.yes_ids and m.no_ids and not set(m.yes_ids) & set(m.no_ids)
    p = m.predict_proba(frames(3), "open the drawer")
    assert p.shape == (3,) and np.all((p > 0) & (p < 1))
    both = m.predict_proba_instructions(frames(3)[2], ["open the drawer", "close the drawer"])
    np.testing.assert_allclose(both, [p[2], m.predict_proba(frames(3)[2:], "close the drawer")[0]], atol=1e-5)
    m.threshold = 0.6
    m.save(tmp_path / "vck")
    assert (tmp_path / "vck" / "adapter" / "adapter_config.json").exists()
    m2 = load_reward_model(tmp_path / "vck")
    assert isinstance(m2, VLMRewardModel) and m2.threshold == pytest.approx(0.6)
    np.testing.assert_allclose(m2.predict_proba(frames(3), "open the drawer"), p, atol=1e-5)


# ------------------------------------------------------------------ errors


def test_missing_model_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_reward_model(tmp_path / "nope")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        DualEncoderRewardModel.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError):
        VLMRewardModel.from_pretrained(str(tmp_path / "nope"))


def test_missing_hub_model_offline():
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        DualEncoderRewardModel.from_pretrained("robofume-test/definitely-not-a-model")


def test_missing_backbone_of_checkpoint(folders, tmp_path):
    import shutil

    src = tmp_path / "clipcopy"
    shutil.copytree(folders["clip"], src)
    DualEncoderRewardModel.from_pretrained(str(src)).save(tmp_path / "ck")
    shutil.rmtree(src)
    with pytest.raises(ModelNotFoundError, match="clipcopy"):
        load_reward_model(tmp_path / "ck")


def test_wrong_model_type(folders, tmp_path):
    # a plain transformers folder is not a reward-model checkpoint
    with pytest.raises(WrongModelTypeError, match="plain transformers model folder"):
        load_reward_model(folders["clip"])
    # a VLM is not a dual encoder, a CLIP is not a VLM, a BERT is not a CLIP
    with pytest.raises(WrongModelTypeError, match="llava"):
        DualEncoderRewardModel.from_pretrained(str(folders["llava"]))
    with pytest.raises(WrongModelTypeError, match="clip"):
        VLMRewardModel.from_pretrained(str(folders["clip"]))
    with pytest.raises(WrongModelTypeError, match="bert"):
        DualEncoderRewardModel.from_pretrained(str(folders["bert"]))
    # loading a dual-encoder checkpoint as a VLM
    DualEncoderRewardModel.from_pretrained(str(folders["clip"])).save(tmp_path / "ck")
    with pytest.raises(WrongModelTypeError, match="dual_encoder"):
        VLMRewardModel.load(tmp_path / "ck")
    # an unknown type in reward_model.json
    cfg = json.loads((tmp_path / "ck" / "reward_model.json").read_text())
    cfg["model_type"] = "magic"
    (tmp_path / "ck" / "reward_model.json").write_text(json.dumps(cfg))
    with pytest.raises(WrongModelTypeError, match="magic"):
        load_reward_model(tmp_path / "ck")
    # an empty folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(WrongModelTypeError, match="reward_model.json"):
        load_reward_model(tmp_path / "empty")


def test_corrupt_adapter_and_head(folders, tmp_path):
    m = VLMRewardModel.from_pretrained(str(folders["llava"]), lora_r=4)
    m.save(tmp_path / "vck")
    ad = tmp_path / "vck" / "adapter"
    wfile = next(p for p in ad.iterdir() if p.name.startswith("adapter_model"))
    wfile.write_bytes(b"not a safetensors file")
    with pytest.raises(CorruptCheckpointError, match="adapter"):
        load_reward_model(tmp_path / "vck")
    (ad / "adapter_config.json").write_text("{ broken json")
    with pytest.raises(CorruptCheckpointError):
        load_reward_model(tmp_path / "vck")

    d = DualEncoderRewardModel.from_pretrained(str(folders["clip"]), lora_r=2)
    d.save(tmp_path / "dck")
    next(p for p in (tmp_path / "dck" / "adapter").iterdir() if p.name.startswith("adapter_model")).write_bytes(b"xx")
    with pytest.raises(CorruptCheckpointError, match="adapter"):
        load_reward_model(tmp_path / "dck")

    DualEncoderRewardModel.from_pretrained(str(folders["clip"])).save(tmp_path / "hck")
    (tmp_path / "hck" / "head.safetensors").write_bytes(b"garbage")
    with pytest.raises(CorruptCheckpointError, match="head"):
        load_reward_model(tmp_path / "hck")
    (tmp_path / "hck" / "reward_model.json").write_text("{ not json")
    with pytest.raises(CorruptCheckpointError, match="JSON"):
        load_reward_model(tmp_path / "hck")


def test_bad_inputs(folders):
    m = DualEncoderRewardModel.from_pretrained(str(folders["clip"]))
    with pytest.raises(ValueError, match="uint8"):
        m.predict_proba(frames(2).astype(np.float32), "x")
    with pytest.raises(ValueError, match="instructions"):
        m.predict_proba(frames(2), ["a", "b", "c"])


def test_core_does_not_import_rclpy():
    import subprocess
    import sys

    code = (
        "import sys, robofume_ros.reward as r, robofume_ros.reward.train, robofume_ros.reward.dual_encoder, "
        "robofume_ros.reward.vlm, robofume_ros.reward.relabel; assert 'rclpy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
