"""The main job's report from a finished run folder: a recorded bag in the graph's layout."""

import json
import numpy as np

from robofume_ros.data.bags import (
    BagWriter,
    MSGTYPES,
    make_ground_truth,
    make_observation,
    make_reward,
    make_task_phase,
    typestore,
)
from robofume_ros import recipe
from robofume_ros.pipeline.report import write_report
from robofume_ros.interfaces import topic_name


def write_run_bag(path, phases=False):
    """6 episodes of 10 frames, alternating tasks; even episodes really succeed on their last 2
    frames; the reward says success on those frames and also (falsely) on each episode's first.
    `phases`: the switcher's phase at each episode's start (the last one then never ended)."""
    store = typestore()
    w = BagWriter(path, store=store)
    t = 1_000_000_000
    for k in range(6):
        task, instr = ("drawer-open", "open the drawer") if k % 2 == 0 else ("drawer-close", "close the drawer")
        if phases:
            m = make_task_phase(store, t, k % 2, task, instr, k, 0 if k == 0 else 2 - (k % 2))
            w.write(topic_name("task_phase"), MSGTYPES["task_phase"], m, t)
        for i in range(10):
            gt = k % 2 == 0 and i >= 8
            verdict = gt or i == 0
            w.write(topic_name("ground_truth"), MSGTYPES["ground_truth"], make_ground_truth(store, t, task, gt), t)
            w.write(
                topic_name("observation"),
                MSGTYPES["observation"],
                make_observation(store, t, np.zeros((8, 8, 3), np.uint8), [0, 0, 0, 1], instr, task, k % 2, k),
                t,
            )
            w.write(
                topic_name("reward"),
                MSGTYPES["reward"],
                make_reward(store, t, 0.9 if verdict else 0.1, verdict, 0.5, instr, k),
                t,
            )
            t += 100_000_000
    w.close()


def test_report_tables_plots_and_reward_rates(tmp_path):
    write_run_bag(tmp_path / "finetune" / "bags" / "run")
    results = {
        "pre-trained (x)": {
            "forward_success": 0.2,
            "backward_success": 0.7,
            "forward_trials": [None] * 10,
            "backward_trials": [3] * 10,
        }
    }
    success_frames = recipe.param("quick", "task_switcher", "success_frames")
    path = write_report(
        tmp_path, results, {"pair": "drawer", "success_frames": success_frames}, {"data": 60.0, "finetune": 540.0}
    )
    text = path.read_text()
    assert text.startswith("# RoboFuME on the simulated drawer pair")
    assert "| pre-trained (x) | 20% (10 trials) | 70% (10 trials) |" in text
    assert "Wall time 10.0 min of pipeline on this machine (data 1.0, finetune 9.0 min)" in text
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["stage_seconds"] == {"data": 60.0, "finetune": 540.0}
    assert data["learning_curve"]["drawer-open"] == {
        "episodes": 3,
        "successes": 3,
        "success_first_half": 1.0,
        "success_second_half": 1.0,
    }
    assert data["learning_curve"]["drawer-close"]["successes"] == 0
    r = data["reward"]
    assert r["frames"] == 60 and r["positives"] == 6 and r["fn_rate"] == 0.0
    assert abs(r["fp_rate"] - 6 / 54) < 1e-9
    # the node said success on the 2 done frames of each drawer-open episode and on every episode's
    # first frame: with the recipe's 3 frames in a row nothing ends an episode, the 3 successes are missed
    assert success_frames == 3 and r["threshold"] == 0.5
    assert r["per_task"]["drawer-open"]["verdicts"] == {"recognised": 0, "premature": 0, "missed": 3, "none": 0}
    assert r["per_task"]["drawer-close"]["verdicts"] == {"recognised": 0, "premature": 0, "missed": 0, "none": 3}
    assert "drawer-open 0 successes recognised, 0 premature, 3 missed" in text
    # 2 in a row: the done frames end those episodes
    write_report(tmp_path, results, {"pair": "drawer", "success_frames": 2}, {"data": 60.0})
    r2 = json.loads((tmp_path / "results.json").read_text())["reward"]
    assert r2["per_task"]["drawer-open"]["verdicts"]["recognised"] == 3
    assert r["per_task"]["drawer-open"] == {
        "frames": 30,
        "positives": 6,
        "fn_rate": 0.0,
        "fp_rate": 3 / 24,
        "episodes": 3,
        "episodes_starting_done": 0,
        "verdicts": {"recognised": 0, "premature": 0, "missed": 3, "none": 0},
    }
    assert r["per_task"]["drawer-close"]["fp_rate"] == 0.1 and r["per_task"]["drawer-close"]["fn_rate"] is None
    for png in ("learning_curve.png", "reward_trace.png", "success.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_the_episode_the_budget_cut_is_not_counted(tmp_path):
    """With the switcher's phases recorded, the run's last episode (never ended: the budget stopped
    the run) is left out of the online success counts; without them every episode counts."""
    from robofume_ros.pipeline.report import online_stream

    write_run_bag(tmp_path / "with" / "run", phases=True)
    write_run_bag(tmp_path / "without" / "run")
    eps = online_stream([tmp_path / "with" / "run"])["episodes"]
    assert [e["ended"] for e in eps] == [True] * 5 + [False]
    assert [e["ended"] for e in online_stream([tmp_path / "without" / "run"])["episodes"]] == [None] * 6
    write_run_bag(tmp_path / "finetune" / "bags" / "run", phases=True)
    write_report(tmp_path, {}, {"pair": "drawer", "success_frames": 2}, {})
    curve = json.loads((tmp_path / "results.json").read_text())["learning_curve"]
    assert curve["drawer-open"]["episodes"] == 3 and curve["drawer-close"]["episodes"] == 2


def test_reward_trace_counts_episodes_that_start_done(tmp_path):
    """A backward episode after a failed forward attempt starts done by ground truth; the reward
    missing that shows up in its task's FN rate and episodes_starting_done."""
    from robofume_ros.pipeline.report import reward_trace

    f = lambda e, task, gt, ok: {"episode": e, "task": task, "probability": 0.9 if ok else 0.1, "success": ok, "gt": gt}
    frames = (
        [f(0, "drawer-open", False, False)] * 4
        + [f(1, "drawer-close", True, False)] * 3
        + [f(1, "drawer-close", True, True)]
        + [f(2, "drawer-open", False, False), f(2, "drawer-open", True, True)]
    )
    r = reward_trace({"frames": frames}, tmp_path / "t.png")
    assert r["per_task"]["drawer-close"] == {
        "frames": 4,
        "positives": 4,
        "fn_rate": 0.75,
        "fp_rate": None,
        "episodes": 1,
        "episodes_starting_done": 1,
    }
    assert r["per_task"]["drawer-open"]["episodes_starting_done"] == 0 and r["fn_rate"] == 3 / 5


def test_stage_times_survive_a_resumed_run(tmp_path):
    from robofume_ros.pipeline.main_job import stage

    timings = tmp_path / "stage_seconds.json"
    done = tmp_path / "a.done"
    stage("a", done, lambda: done.write_text("ok") and 0, timings=timings)
    first = json.loads(timings.read_text())
    assert set(first) == {"a"} and first["a"] >= 0.0
    # a second invocation skips the finished stage and keeps its time; a failed stage records nothing
    stage("a", done, lambda: 1 / 0, timings=timings)
    try:
        stage("b", tmp_path / "b.done", lambda: 3, timings=timings)
    except SystemExit as e:
        assert "stage b failed with exit code 3" in str(e)
    else:
        raise AssertionError("a failing stage must stop the pipeline")
    assert json.loads(timings.read_text()) == first
