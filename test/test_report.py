"""The main job's report from a finished run folder (synthetic online episodes)."""
import json

import numpy as np

from robofume_ros.data.dataset import DatasetWriter
from robofume_ros.data.episode import Episode
from robofume_ros.main_job import QUICK
from robofume_ros.report import write_report


def test_report_tables_plots_and_reward_rates(tmp_path):
    w = DatasetWriter(tmp_path / "finetune" / "learner" / "online", fsync=False)
    rng = np.random.default_rng(0)
    for k in range(6):
        T = 10
        gt = np.zeros(T + 1, bool)
        gt[-2:] = k % 2 == 0                                    # even episodes succeed at the end
        verdict = list(gt.copy())
        verdict[0] = True                                       # one false positive per episode
        w.append(Episode(images=rng.integers(0, 255, (T + 1, 16, 16, 3), dtype=np.uint8),
                         proprio=np.zeros((T + 1, 4), np.float32), actions=np.zeros((T, 4), np.float32),
                         rewards=-np.ones(T, np.float32), terminals=np.zeros(T, bool),
                         instruction="open the drawer" if k % 2 == 0 else "close the drawer",
                         task="drawer-open" if k % 2 == 0 else "drawer-close", source="online", success=bool(gt[-1]),
                         provenance={"reward_probability": [0.9 if v else 0.1 for v in verdict],
                                     "reward_success": [bool(v) for v in verdict]},
                         success_gt=gt))
    w.close()
    results = {"pre-trained (x)": {"forward_success": 0.2, "backward_success": 0.7, "forward_trials": [None] * 10,
                                   "backward_trials": [3] * 10}}
    path = write_report(tmp_path, results, QUICK, 60.0)
    text = path.read_text()
    assert "| pre-trained (x) | 20% (10 trials) | 70% (10 trials) |" in text
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["learning_curve"]["drawer-open"]["episodes"] == 3
    assert data["learning_curve"]["drawer-open"]["success_second_half"] == 1.0
    assert data["learning_curve"]["drawer-close"]["success_second_half"] == 0.0
    r = data["reward"]
    assert r["frames"] == 66 and r["fn_rate"] == 0.0
    assert abs(r["fp_rate"] - 6 / 60) < 1e-9
    for png in ("learning_curve.png", "reward_trace.png", "success.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert (tmp_path / "online_episode.gif").exists()
