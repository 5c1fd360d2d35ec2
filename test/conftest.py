"""Test-wide settings: offline model loading, headless rendering, isolated ROS logs and discovery."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="robofume_test_roslog_"))


import pytest


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny learner checkpoint and a tiny reward model (built here, nothing downloaded)."""
    from tiny_models import tiny_learner_checkpoint, tiny_reward_model

    d = tmp_path_factory.mktemp("models")
    return tiny_learner_checkpoint(d / "learner.pt"), tiny_reward_model(d)
