"""The /evaluate action: ground-truth evaluation served by evaluator_node, called from another
process (`robofume evaluate --remote`), with feedback per trial, a result, and cancel."""

import json
import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from rosgraph import graph_under_test

from robofume_ros.ros.actions import wait_for_action
from tiny_models import tiny_learner_checkpoint


def send_then_cancel(client, goal, wait_s: float = 300):
    """Send `goal`, cancel it after its first feedback; (feedback list, the wrapped result)."""
    feedback, done, state = [], threading.Event(), {}

    def on_result(fut):
        state["result"] = fut.result()
        done.set()

    def on_goal(fut):
        state["handle"] = fut.result()
        state["handle"].get_result_async().add_done_callback(on_result)

    client.send_goal_async(goal, feedback_callback=lambda m: feedback.append(m.feedback)).add_done_callback(on_goal)
    deadline = time.monotonic() + wait_s
    while not feedback and time.monotonic() < deadline:
        time.sleep(0.05)
    assert feedback, "no feedback from the action"
    state["handle"].cancel_goal_async()
    assert done.wait(120), "the cancelled goal never ended"
    return feedback, state["result"]


def test_evaluate_action_runs_reports_progress_and_can_be_cancelled(tmp_path):
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient

    from robofume_ros.action import Evaluate

    ckpt = tiny_learner_checkpoint(tmp_path / "learner.pt")
    args = {"policy_checkpoint": str(ckpt), "run_dir": str(tmp_path / "run"), "record": "false"}
    with graph_under_test("finetune", args, tmp_path, only=("evaluator",)) as g:
        # from another process, as a user on another machine would: the CLI's client
        env = dict(g.runner.env)
        out = tmp_path / "eval.json"
        cmd = [sys.executable, "-m", "robofume_ros.cli", "evaluate", "--remote", "--trials", "2"]
        cmd += ["--max-steps", "5", "--out", str(out)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert [ln.split("]")[0] for ln in lines if ln.startswith("[")] == ["[1/4", "[2/4", "[3/4", "[4/4"]
        assert "drawer: forward" in lines[-1] and "(2 trials)" in lines[-1]
        res = json.loads(out.read_text())
        assert res["policy"] == str(ckpt) and res["setting"]["max_steps"] == [5, 5]
        assert len(res["forward_trials"]) == 2 and len(res["backward_trials"]) == 2

        # cancel: a long goal stops after the running trial, reported as cancelled
        probe = g.probe({})
        client = ActionClient(probe.node, Evaluate, "/evaluate")
        assert wait_for_action(probe.node, client, "/evaluate", 30)
        feedback, res = send_then_cancel(client, Evaluate.Goal(trials=50, max_steps=5), 120)
        assert res.status == GoalStatus.STATUS_CANCELED and not res.result.ok
        assert "cancelled after" in res.result.message and feedback[-1].trials_total == 100
        assert feedback[-1].trial < 100


def test_evaluate_action_refuses_a_missing_checkpoint_clearly(tmp_path):
    args = {"run_dir": str(tmp_path / "run"), "record": "false"}
    with graph_under_test("finetune", args, tmp_path, only=("evaluator",)) as g:
        env = dict(g.runner.env)
        cmd = [sys.executable, "-m", "robofume_ros.cli", "evaluate", "--remote", "--policy", str(tmp_path / "nope.pt")]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1
        assert "refused" in r.stdout and "checkpoint file not found" in r.stdout
        assert set(g.runner.running()) == {"evaluator"}  # the node stays up for the next goal


def test_retrain_action_trains_reports_progress_and_can_be_cancelled(tmp_path):
    """/retrain (OOO retraining, as the main job's stage) from another process: `robofume retrain
    --remote` on the node's dataset prints feedback and writes a policy checkpoint that loads; a long
    goal cancelled after its first feedback ends cancelled and keeps the checkpoint of that step."""
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from tiny_models import tiny_dataset

    from robofume_ros.action import Retrain
    from robofume_ros.rl.policy import Policy

    data = tiny_dataset(tmp_path / "data")
    args = {"offline_dataset": str(data), "run_dir": str(tmp_path / "run"), "record": "false"}
    with graph_under_test("finetune", args, tmp_path, only=("evaluator",)) as g:
        env = dict(g.runner.env)
        cmd = [sys.executable, "-m", "robofume_ros.cli", "retrain", "--remote", "--steps", "200", "--algo", "iql"]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert [ln.split("]")[0] for ln in r.stdout.splitlines() if ln.startswith("[")] == ["[100/200", "[200/200"]
        ckpt = tmp_path / "run" / "retrain" / "checkpoint.pt"
        assert f"retrained iql: {ckpt}" in r.stdout.splitlines()[-1]
        assert Policy.load(ckpt).dims["action_dim"] == 4

        probe = g.probe({})
        client = ActionClient(probe.node, Retrain, "/retrain")
        assert wait_for_action(probe.node, client, "/retrain", 30)
        out = tmp_path / "long"
        feedback, res = send_then_cancel(client, Retrain.Goal(out=str(out), algo="iql", steps=100000))
        assert feedback[0].steps_total == 100000
        assert (
            res.status == GoalStatus.STATUS_CANCELED and not res.result.ok and "cancelled at step" in res.result.message
        )
        assert 100 <= res.result.steps < 100000 and (out / "checkpoint.pt").exists()
        assert set(g.runner.running()) == {"evaluator"}


def test_collect_action_writes_episodes_reports_progress_and_can_be_cancelled(tmp_path):
    """/collect (scripted data collection in the evaluator's own simulated world) from another
    process: `robofume dataset collect failures --remote` prints one line per attempt and the
    failures are in the dataset; a long demo goal cancelled after its first feedback ends cancelled,
    and every episode it reported is on disk."""
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient

    from robofume_ros.action import Collect
    from robofume_ros.data.dataset import dataset_info, dataset_pair

    args = {"run_dir": str(tmp_path / "run"), "record": "false"}
    with graph_under_test("finetune", args, tmp_path, only=("evaluator",)) as g:
        env = dict(g.runner.env)
        out = tmp_path / "failures"
        cmd = [sys.executable, "-m", "robofume_ros.cli", "dataset", "collect", "failures", "--remote"]
        cmd += ["--episodes", "2", "--pair", "drawer", "-o", str(out)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert lines[-1].startswith("collected 2 failures of drawer") and str(out) in lines[-1]
        assert sum(1 for ln in lines if ln.startswith("[") and ": kept" in ln) == 2
        info = dataset_info(out)
        assert info["episodes"] == 2 and all(m["source"] == "failure" for m in info["episode_meta"])
        assert dataset_pair(out) == "drawer"

        probe = g.probe({})
        client = ActionClient(probe.node, Collect, "/collect")
        assert wait_for_action(probe.node, client, "/collect", 30)
        feedback, res = send_then_cancel(client, Collect.Goal(kind="demos", pair="drawer", episodes=50))
        assert feedback[0].episodes_total == 100
        assert (
            res.status == GoalStatus.STATUS_CANCELED and not res.result.ok and "cancelled after" in res.result.message
        )
        demos = tmp_path / "run" / "collected" / "demos"
        assert res.result.dataset == str(demos) and 1 <= res.result.attempts < 100
        assert dataset_info(demos)["episodes"] == res.result.episodes
        assert set(g.runner.running()) == {"evaluator"}
