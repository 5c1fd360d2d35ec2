"""`robofume reward audit` on a recorded run bag."""

import json

import numpy as np
from test_report import write_run_bag

from robofume_ros.cli import main as robofume
from robofume_ros.reward.online_recall import auc, episode_verdict


def verdicts(c: dict) -> dict:
    return {k: c[k] for k in ("recognised", "premature", "missed", "none")}


def test_auc_counts_ties_half():
    assert auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert auc(np.array([0.1]), np.array([0.9])) == 0.0
    assert auc(np.array([0.5]), np.array([0.5, 0.1])) == 0.75


def test_probe_on_a_recorded_run(tmp_path, capsys):
    # drawer-open episodes (0, 2, 4) succeed on their last 2 frames, scored 0.9, and every episode's
    # first frame is falsely scored 0.9: one frame is not enough for a debounce of 2
    write_run_bag(tmp_path / "finetune" / "bags" / "run")
    assert (
        robofume(["reward", "audit", str(tmp_path), "--success-frames", "2", "--thresholds", "0.5", "--tolerance", "0"])
        == 0
    )
    res = json.loads((tmp_path / "reward_audit.json").read_text())
    opened = res["tasks"]["drawer-open"]
    assert opened["episodes"] == 3 and opened["with_success_frame"] == 3
    assert opened["success_frames"] == 6 and opened["other_frames"] == 24
    assert abs(opened["auc"] - (21 + 0.5 * 3) / 24) < 1e-4
    c = opened["thresholds"]["0.5"]
    assert {k: c[k] for k in ("recognised", "premature", "missed", "none")} == {
        "recognised": 3,
        "premature": 0,
        "missed": 0,
        "none": 0,
    }
    # frames: the 6 success frames all at 0.9; 3 of the 24 others (each episode's first) falsely too
    assert c["frame_fn_rate"] == 0 and c["frame_fp_rate"] == round(3 / 24, 4)
    assert verdicts(res["tasks"]["drawer-close"]["thresholds"]["0.5"]) == {
        "recognised": 0,
        "premature": 0,
        "missed": 0,
        "none": 3,
    }
    assert (tmp_path / "reward_audit.png").stat().st_size > 0
    # a debounce of one frame ends every episode on its falsely scored first frame
    assert robofume(["reward", "audit", str(tmp_path), "--success-frames", "1", "--thresholds", "0.5"]) == 0
    res = json.loads((tmp_path / "reward_audit.json").read_text())
    assert res["tasks"]["drawer-open"]["thresholds"]["0.5"]["premature"] == 3
    assert "premature 3" in capsys.readouterr().out


def test_rescoring_with_another_model_applies_the_pair_veto(tmp_path):
    from tiny_models import tiny_reward_model

    write_run_bag(tmp_path / "finetune" / "bags" / "run")
    model = tiny_reward_model(tmp_path / "models")
    # threshold 0: every frame is "done" for its own task and for the other task of the pair, so the
    # reward node's veto never lets one through: no episode ends, the successes are missed
    assert (
        robofume(
            [
                "reward",
                "audit",
                str(tmp_path),
                "--model",
                str(model),
                "--threshold",
                "0",
                "--success-frames",
                "1",
                "--thresholds",
                "0",
                "--out",
                str(tmp_path / "rescored"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "rescored" / "reward_audit.json").read_text())
    assert res["model"] == str(model) and res["model_threshold"] == 0
    assert verdicts(res["tasks"]["drawer-open"]["thresholds"]["0"]) == {
        "recognised": 0,
        "premature": 0,
        "missed": 3,
        "none": 0,
    }
    assert verdicts(res["tasks"]["drawer-close"]["thresholds"]["0"]) == {
        "recognised": 0,
        "premature": 0,
        "missed": 0,
        "none": 3,
    }
    assert res["tasks"]["drawer-open"]["success_frames"] == 6 and res["tasks"]["drawer-open"]["other_frames"] == 24
    # without the pair (the recorded probabilities carry no partner), the same threshold ends every episode at once
    frames = [
        {"episode": 0, "task": "t", "probability": 0.2, "gt": False},
        {"episode": 0, "task": "t", "probability": 0.9, "gt": True},
    ]
    assert episode_verdict(frames, 0.0, 1) == "premature" and episode_verdict(frames, 0.5, 1) == "recognised"
    # firing one frame before the simulator's flag is on time with a tolerance of one frame
    assert episode_verdict(frames, 0.0, 1, tolerance=1) == "recognised"
    frames[1]["partner_probability"] = 0.95
    assert episode_verdict(frames, 0.5, 1) == "missed"
