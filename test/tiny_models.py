"""Tiny models the tests build (no downloads): a pre-trained-looking learner checkpoint and a
reward model on a tiny random CLIP."""

from pathlib import Path

import numpy as np

from robofume_ros.data.episode import Episode


def tiny_episode(rng, T=20, instr="open the drawer", task="drawer-open", size=100, source="target_demo") -> Episode:
    """A successful drawer-shaped episode: random proprioception and actions, blank frames."""
    return Episode(
        images=np.zeros((T + 1, size, size, 3), np.uint8),
        proprio=rng.normal(size=(T + 1, 4)).astype(np.float32),
        actions=rng.uniform(-1, 1, (T, 4)).astype(np.float32),
        rewards=np.r_[-np.ones(T - 1), 0.0].astype(np.float32),
        terminals=np.r_[np.zeros(T - 1, bool), True],
        instruction=instr,
        task=task,
        source=source,
        success=True,
    )


def tiny_episodes(rng, n: int = 4, T: int = 20) -> list:
    """Demos of both drawer tasks, alternating."""
    pairs = [("open the drawer", "drawer-open"), ("close the drawer", "drawer-close")]
    return [tiny_episode(rng, T, *pairs[k % 2]) for k in range(n)]


def tiny_dataset(folder: Path, n: int = 4) -> Path:
    """A dataset folder of `tiny_episodes` (as `robofume dataset generate` writes one)."""
    from robofume_ros.data.dataset import DatasetWriter

    with DatasetWriter(folder) as w:
        for ep in tiny_episodes(np.random.default_rng(1), n):
            w.append(ep)
    return folder


def tiny_learner_checkpoint(path: Path, obs_mode: str = "state") -> Path:
    """A pre-trained-looking learner: tiny Cal-QL on random drawer-shaped data (state + one-hot);
    obs_mode "features": it acts on the frozen image encoder's features (as the main job pre-trains),
    here random ones: what matters is the path its inputs take."""
    from robofume_ros.rl.learner import Learner, LearnerConfig
    from robofume_ros.vision import FEATURE_DIM, FEATURE_ENCODER_ID

    rng = np.random.default_rng(0)
    eps = tiny_episodes(rng)
    features = obs_mode == "features"
    for ep in eps if features else []:
        ep.features = rng.random((len(ep) + 1, FEATURE_DIM)).astype(np.float32)
        ep.feature_encoder = FEATURE_ENCODER_ID
    L = Learner(
        LearnerConfig(
            algo="calql",
            obs_mode=obs_mode,
            lang_mode="onehot",
            max_instructions=4,
            agent={"batch_size": 32, "net": {"hidden": (32, 32)}},
        ),
        proprio_dim=4,
        action_dim=4,
        feature_dim=FEATURE_DIM if features else None,
    )
    L.add_offline(eps)
    L.update(5)
    L.task = {"name": "drawer", "forward": "drawer-open", "backward": "drawer-close"}
    # as pretrain records it
    L.obs_spec = {
        "image_shape": [100, 100, 3],
        "proprio_dim": 4,
        "feature_encoder": FEATURE_ENCODER_ID if features else None,
    }
    L.save(path)
    return path


def tiny_reward_model(folder: Path) -> Path:
    from robofume_ros.reward.dual_encoder import DualEncoderRewardModel
    from robofume_ros.reward.tiny import make_tiny_clip

    make_tiny_clip(folder / "clip")
    DualEncoderRewardModel.from_pretrained(str(folder / "clip")).save(folder / "model")
    return folder / "model"


def adaptable_reward_model(folder: Path, clip: Path | None = None) -> Path:
    """A tiny reward trained on red squares (test_reward_training's synthetic episodes) by `reward
    train`'s own code, so its anchor set is stored with it: one the reward node can adapt online."""
    from test_reward_training import synthetic_dataset

    from robofume_ros.reward.tiny import make_tiny_clip
    from robofume_ros.reward.train import train_reward_model

    clip = clip or make_tiny_clip(Path(folder) / "clip")
    train_reward_model(
        synthetic_dataset(), Path(folder) / "rm", backbone=str(clip), epochs=40, pretrain_epochs=10, lr=3e-3,
        val_frac=0.3, progress=False, precision="fp32",
    )  # fmt: skip
    return Path(folder) / "rm"


def framed(n: int, seed: int, colour) -> np.ndarray:
    """n frames of test_reward_training's kind, each with a 28x28 square of `colour` (RGB)."""
    from test_reward_training import square_frames

    im, _ = square_frames(n, seed, np.ones(n, bool))
    im[np.all(im == (230, 20, 20), axis=-1)] = colour
    return im
