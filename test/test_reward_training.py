"""Fine-tuning raises accuracy on a small separable synthetic set (a red square present vs absent),
for each backend; the training command end to end on synthetic episodes with ground truth."""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from robofume_ros.data.episode import Episode
from robofume_ros.reward import load_reward_model, tiny
from robofume_ros.reward.dual_encoder import DualEncoderRewardModel
from robofume_ros.reward.labels import FrameSet
from robofume_ros.reward.train import main, train_reward_model
from robofume_ros.reward.vlm import VLMRewardModel

INSTR = "put the red square"


def square_frames(n, seed, square=None):
    """100x100 frames of dim noise; with ``square`` (bool per frame) a bright red 28x28 square at a
    random place."""
    rng = np.random.default_rng(seed)
    im = rng.integers(40, 120, (n, 100, 100, 3)).astype(np.uint8)
    im[..., 2] = rng.integers(90, 160, (n, 1, 1))  # bluish background, varying per frame
    if square is None:
        square = np.arange(n) % 2 == 0
    for i in np.flatnonzero(square):
        x, y = rng.integers(0, 72, 2)
        im[i, y : y + 28, x : x + 28] = (230, 20, 20)
    return im, np.asarray(square, bool)


def square_set(n, seed):
    im, y = square_frames(n, seed)
    return FrameSet(im, [INSTR] * n, y.astype(np.float32), np.arange(n), np.zeros(n, int))


def accuracy(model, fs):
    p = model.predict_proba(fs.images, list(fs.instructions))
    return float(((p >= 0.5) == (fs.labels > 0.5)).mean())


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return {"clip": tiny.make_tiny_clip(d / "clip"), "llava": tiny.make_tiny_llava(d / "llava")}


def test_clip_head_finetune_beats_zero_shot(folders, tmp_path):
    train, test = square_set(96, 0), square_set(64, 1)
    m = DualEncoderRewardModel.from_pretrained(str(folders["clip"]), precision="fp32")
    before = accuracy(m, test)
    m.fit(train, epochs=60, lr=3e-3, batch_size=32, progress=False)
    after = accuracy(m, test)
    assert after >= 0.85 and after >= before + 0.25, (before, after)
    m.save(tmp_path / "ck")
    assert accuracy(load_reward_model(tmp_path / "ck"), test) == pytest.approx(after)


def test_clip_vision_lora_finetune(folders, tmp_path):
    train, test = square_set(64, 2), square_set(48, 3)
    m = DualEncoderRewardModel.from_pretrained(str(folders["clip"]), lora_r=4, precision="fp32")
    before = accuracy(m, test)
    m.fit(train, epochs=15, lr=3e-3, batch_size=16, progress=False, augment=False)
    after = accuracy(m, test)
    assert after >= 0.8 and after >= before + 0.2, (before, after)
    m.save(tmp_path / "ck")
    m2 = load_reward_model(tmp_path / "ck")
    np.testing.assert_allclose(
        m2.predict_proba(test.images[:8], INSTR), m.predict_proba(test.images[:8], INSTR), atol=1e-5
    )


def test_default_model_finetune(tmp_path):
    train, test = square_set(64, 4), square_set(64, 5)
    m = DualEncoderRewardModel.from_pretrained("default")
    before = accuracy(m, test)
    m.fit(train, epochs=30, lr=1e-3, batch_size=32, progress=False)
    after = accuracy(m, test)
    assert after >= 0.95 and after >= before + 0.4, (before, after)


def test_vlm_lora_finetune(folders, tmp_path):
    train, test = square_set(64, 6), square_set(48, 7)
    m = VLMRewardModel.from_pretrained(str(folders["llava"]), lora_r=8, precision="fp32")
    before = accuracy(m, test)
    m.fit(train, epochs=8, lr=3e-3, batch_size=16, progress=False)
    after = accuracy(m, test)
    assert after >= 0.8 and after >= before + 0.2, (before, after)
    m.save(tmp_path / "vck")
    assert accuracy(load_reward_model(tmp_path / "vck"), test) == pytest.approx(after)


# ------------------------------------------------------------------ the training command


def episode(source, success, seed, T=11, instruction=INSTR, task="square-put", end_with_square=None):
    """A synthetic episode: the square appears at the last 3 frames when ``end_with_square``."""
    end_with_square = success if end_with_square is None else end_with_square
    sq = np.zeros(T + 1, bool)
    if end_with_square:
        sq[-3:] = True
    im, gt = square_frames(T + 1, seed, sq)
    return Episode(
        images=im,
        proprio=np.zeros((T + 1, 4), np.float32),
        actions=np.zeros((T, 4), np.float32),
        rewards=-np.ones(T, np.float32),
        terminals=np.zeros(T, bool),
        instruction=instruction,
        task=task,
        source=source,
        success=success,
        success_gt=gt,
    )


def synthetic_dataset():
    eps = [episode("target_demo", True, s) for s in range(14)]
    eps += [episode("failure", False, 100 + s) for s in range(8)]
    # prior data: another task where the square is the goal as well
    eps += [episode("prior", True, 200 + s, instruction="pick the red square", task="other") for s in range(6)]
    return eps


def test_train_reward_model_report_and_checkpoint(folders, tmp_path):
    out = tmp_path / "rm"
    model, rep = train_reward_model(
        synthetic_dataset(),
        out,
        backbone=str(folders["clip"]),
        epochs=40,
        pretrain_epochs=10,
        lr=3e-3,
        val_frac=0.3,
        progress=False,
        precision="fp32",
    )
    for f in ("reward_model.json", "head.safetensors", "report.json", "report.md", "pr_curve.png", "reliability.png"):
        assert (out / f).exists(), f
    j = json.loads((out / "report.json").read_text())
    assert j["episodes"] == {
        "train": 16,
        "heldout": 6,
        "prior": 6,
        "heldout_with_success_gt": 6,
    }  # 4 demos + 2 failures
    assert j["frames"]["prior"] > 0 and "pretrain" in j["history"]
    for split in ("train", "heldout_labels", "heldout_success_gt"):
        for col in ("accuracy", "precision", "recall", "fp_rate", "fn_rate"):
            assert 0.0 <= j["metrics"][split][col] <= 1.0
    gt = j["metrics"]["heldout_success_gt"]
    assert gt["n"] == 6 * 12 and gt["n_pos"] == 4 * 3
    assert gt["accuracy"] >= 0.85
    assert j["metrics"]["heldout_labels"]["fp_rate"] <= 0.05 + 1e-9
    loaded = load_reward_model(out)
    assert loaded.threshold == pytest.approx(j["threshold"]) == pytest.approx(model.threshold)
    assert "| heldout_success_gt |" in (out / "report.md").read_text()


def test_train_command_line(folders, tmp_path):
    from robofume_ros.data.dataset import DatasetWriter

    with DatasetWriter(tmp_path / "data") as w:
        for ep in synthetic_dataset():
            w.append(ep)
    rc = main(
        [
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "rm"),
            "--backbone",
            str(folders["clip"]),
            "--epochs",
            "20",
            "--pretrain-epochs",
            "0",
            "--threshold-method",
            "f1",
            "--no-progress",
            "--precision",
            "fp32",
        ]
    )
    assert rc == 0
    j = json.loads((tmp_path / "rm" / "report.json").read_text())
    assert j["threshold_method"] == "f1" and j["episodes"]["prior"] == 6 and "pretrain" not in j["history"]
    assert main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2


class _PixelJudge:
    """A reward model whose probability of a frame is written in its first pixel (frames / 255): the
    threshold logic without any learning."""

    model_type, model_id, threshold = "pixel", "pixel", 0.5

    def fit(self, *a, **k):
        return {}

    def predict_proba(self, images, instructions, batch_size=32):
        return np.asarray(images)[:, 0, 0, 0].astype(np.float64) / 255.0

    def save(self, out):
        out.mkdir(parents=True, exist_ok=True)


def test_threshold_can_be_chosen_against_the_unlabelled_almost_done_demo_frames(tmp_path):
    def ep(source, success, scores):
        n = len(scores)
        im = np.zeros((n, 4, 4, 3), np.uint8)
        im[:, 0, 0, 0] = scores
        return Episode(
            images=im,
            proprio=np.zeros((n, 4), np.float32),
            actions=np.zeros((n - 1, 4), np.float32),
            rewards=-np.ones(n - 1, np.float32),
            terminals=np.zeros(n - 1, bool),
            instruction=INSTR,
            task="square-put",
            source=source,
            success=success,
        )

    # demos: 5 clearly-not-done frames, 2 almost done (scored 200), 3 done, one of them scored low
    # (120: a done frame the model is unsure of); failures all low
    demo = [10] * 5 + [200] * 2 + [120, 250, 250]
    eps = [ep("target_demo", True, demo) for _ in range(10)] + [ep("failure", False, [10] * 10) for _ in range(5)]
    kw = dict(pretrain_epochs=0, val_frac=0.4, progress=False, reverse_k=0, pair_negatives=0, max_fpr=0.01)
    _, rep = train_reward_model(eps, tmp_path / "a", model=_PixelJudge(), **kw)
    # training's own negatives (the first half of each demo, failures) leave the almost-done frames out:
    # every done frame can be called done at no false positive, so the threshold goes below 120 and
    # the almost-done frames pass it too
    assert 10 / 255 < rep["threshold"] <= 120 / 255 and rep["threshold_from"] == "heldout_labels"
    _, rep = train_reward_model(eps, tmp_path / "b", model=_PixelJudge(), threshold_neg_frac=1.0, **kw)
    assert 200 / 255 < rep["threshold"] <= 250 / 255
    assert rep["threshold_from"].startswith("heldout_labels, the first 1 of each demo negative")
    m = rep["metrics"]["heldout_threshold_set"]  # the unsure done frames are given up instead
    assert m["fp_rate"] == 0.0 and abs(m["recall"] - 2 / 3) < 1e-9
    assert m["n_neg"] > rep["metrics"]["heldout_labels"]["n_neg"]
