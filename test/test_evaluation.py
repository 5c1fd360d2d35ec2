"""Ground-truth evaluation: workspace trial starts and success counting (no ROS)."""

import numpy as np

from robofume_ros.pipeline.evaluation import evaluate_policy, workspace_start
from robofume_ros.sim.world import ResetFreeWorld


def test_workspace_starts_are_undone_and_varied():
    hands = {}
    for phase in ("forward", "backward"):
        for i in range(3):
            w = ResetFreeWorld(pair="drawer", seed=0, render=False)
            try:
                w.reset()
                assert workspace_start(w, phase, np.random.default_rng([7, i]), 0.03)
                assert w.phase == phase
                assert not w.ground_truth_success(), "a trial must start with its task not yet done"
                if phase == "forward":  # the backward task (the reset) left the drawer closed
                    assert w.success_of("backward")
                assert np.abs(w.proprio[:3] - [0.0, 0.6, 0.2]).max() < 0.03 + 0.01, "arm homed +- jitter"
                hands.setdefault(phase, []).append(w.state[:3].copy())
            finally:
                w.close()
    for phase, hs in hands.items():
        spread = np.ptp(np.stack(hs), axis=0).max()
        assert spread > 0.005, f"{phase} starts should differ between trials (spread {spread:.4f} m)"


class _Still:
    """A policy that never moves: it must fail both tasks."""

    def act(self, image, proprio, instruction, deterministic=True, noise_scale=1.0):
        assert image.shape == (100, 100, 3) and image.dtype == np.uint8
        assert instruction in ("open the drawer", "close the drawer")
        return np.array([0.0, 0.0, 0.0, -1.0], np.float32)


def test_still_policy_fails_both_tasks():
    res, frames = evaluate_policy(_Still(), trials=1, max_steps=15, scene_seed=0, record_first=True)
    assert res.forward_success == 0.0 and res.backward_success == 0.0
    assert res.forward_trials == [None] and res.backward_trials == [None]
    assert len(frames) == 16 and res.setting["scene_seed"] == 0


class _Recorder(_Still):
    """Still, and keeps the exploration noise it was handed (stochastic trials with a correlation)."""

    def __init__(self):
        self.eps = []

    def act(self, image, proprio, instruction, deterministic=True, noise_scale=1.0, eps=None):
        self.eps.append(eps)
        return super().act(image, proprio, instruction, deterministic, noise_scale)


def test_trial_starts_are_reported_and_correlated_noise_is_handed_to_the_policy():
    pol = _Recorder()
    res, _ = evaluate_policy(
        pol,
        trials=2,
        max_steps=30,
        scene_seed=0,
        start_jitter=0.05,
        deterministic=False,
        noise_scale=0.5,
        noise_correlation=0.9,
        phases=("forward",),
    )
    assert len(res.forward_starts) == 2 and res.backward_starts == []
    offsets = np.array(res.forward_starts)
    assert np.abs(offsets).max() <= 0.05 + 0.01 and np.ptp(offsets, axis=0).max() > 0.005
    eps = np.array(pol.eps)
    assert eps.shape == (60, 4) and res.setting["noise_correlation"] == 0.9
    lag1 = np.corrcoef(eps[:29, 0], eps[1:30, 0])[0, 1]  # within the first trial: correlated
    assert lag1 > 0.5, lag1


def test_evaluate_command_scores_a_checkpoint_and_fails_clearly(tmp_path, capsys):
    import json

    import pytest
    from tiny_models import tiny_learner_checkpoint

    from robofume_ros.cli import main as cli

    ckpt = tiny_learner_checkpoint(tmp_path / "learner.pt")
    data = tmp_path / "data"
    data.mkdir()
    (data / "generate.json").write_text(json.dumps({"config": {"seed": 0, "pair": "drawer"}}))
    out = tmp_path / "eval.json"
    assert (
        cli(
            [
                "evaluate",
                "--policy",
                str(ckpt),
                "--data",
                str(data),
                "--trials",
                "2",
                "--max-steps",
                "5",
                "--tasks",
                "forward",
                "--out",
                str(out),
                "--video",
                str(tmp_path / "first.gif"),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    # a random tiny policy does not open the drawer in 5 steps
    assert res["forward_trials"] == [None, None] and res["forward_success"] == 0.0 and res["backward_trials"] == []
    assert (
        res["setting"]["scene_seed"] == 0 and res["setting"]["max_steps"] == [5, 5] and len(res["forward_starts"]) == 2
    )
    assert "forward: 0/2 = 0%; failed trials [0, 1]" in capsys.readouterr().out
    assert (tmp_path / "first.gif").stat().st_size > 0
    capsys.readouterr()
    assert cli(["evaluate", "--policy", str(tmp_path / "missing.pt"), "--scene-seed", "0"]) == 2
    assert "missing.pt: checkpoint file not found" in capsys.readouterr().err
    # a dataset of one pair and --pair another: refused before anything runs
    assert cli(["evaluate", "--policy", str(ckpt), "--data", str(data), "--pair", "window"]) == 2
    assert "pairs disagree: --pair is 'window', dataset" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no generate.json"):
        cli(["evaluate", "--policy", str(ckpt), "--data", str(tmp_path)])
