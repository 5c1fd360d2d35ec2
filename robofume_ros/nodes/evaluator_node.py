"""Evaluator: the graph's long offline work as actions, callable from any machine on the graph:
ground-truth evaluation (/evaluate), OOO retraining (/retrain) and scripted data collection
(/collect). One goal at a time (of any).

action: /evaluate (robofume_ros/action/Evaluate): goal = checkpoint, pair, trials, max_steps, seed;
        feedback after every trial (task, trials done, successes so far); result = success rates and
        the whole EvalResult as JSON. Cancel stops after the running trial.

action: /retrain (robofume_ros/action/Retrain): goal = datasets, out, algo, steps, seed (empty / 0:
        the node's datasets plus <run_dir>/learner/online, <run_dir>/retrain, the recipe's sizes);
        feedback at every log row (step, rate, losses); result = the checkpoint. Cancel stops after the
        running update and keeps the checkpoint of that step (pipeline/retrain.py, as the main job).

action: /collect (robofume_ros/action/Collect): goal = kind (demos or failures), pair, episodes, out,
        seed (empty out: <run_dir>/collected/<kind>; a new folder is in the scene of the node's
        dataset); feedback after every attempt (task, kept, episodes written); cancel stops after the
        running attempt, every episode written stays (data/generate.py collect(), as
        `robofume dataset collect`).

The evaluation runs in its own simulated worlds (never on the robot the graph drives), with the code
of `robofume evaluate` (pipeline/evaluation.py). An empty checkpoint means the learner's newest
policy (<run_dir>/learner/policy_latest.pt) or, before it wrote one, the node's `checkpoint`. One
goal at a time: a second one while one runs is rejected.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from robofume_ros.action import Collect, Evaluate, Retrain
from robofume_ros.ros.node import OK, Diagnostics, DiagnosticsParams, Throttle, run_node
from robofume_ros.ros.params import declare, knob


@dataclass
class Params(DiagnosticsParams):
    checkpoint: str = knob("", "policy checkpoint evaluated when a goal names none and the learner has written none")
    run_dir: str = knob(
        "", "the run's folder: a goal without a checkpoint evaluates <run_dir>/learner/policy_latest.pt"
    )
    dataset: list = knob(
        [], "the run's dataset(s): the first one's target scene and demos' time limits (empty: the pair's)"
    )
    trials: int = knob(10, "trials per task when a goal says 0", range=(1, 1000))
    recipe: str = knob("default", "the recipe whose `main` section sizes a /retrain goal that says 0 steps")
    reward_model: str = knob(
        "",
        "the run's reward model: /retrain (without datasets named) relabels the online episodes with its newest "
        "version adapted online (<run_dir>/reward_adapted) first; empty: their stored labels",
    )
    device: str = knob("auto", "where /retrain trains: auto, cpu, cuda or cuda:N")
    num_threads: int = knob(
        1,
        "torch threads for evaluation and /retrain on the CPU (more than 1 spins idle threads "
        "whenever the control path holds the cores)",
        range=(1, 256),
    )


class Cancelled(Exception):
    """Raised from the per-trial hook when the goal's cancel was requested."""


class EvaluatorNode(Node):
    def __init__(self):
        super().__init__("evaluator")
        self.p = declare(self, Params)
        import torch

        torch.set_num_threads(self.p.num_threads)
        self.log = self.get_logger()
        self.throttle = Throttle(self.log)
        self._busy = threading.Lock()
        self.goals = self.done = self.cancelled = 0
        self.last = ""
        self.servers = [
            ActionServer(
                self,
                action,
                name,
                execute_callback=execute,
                goal_callback=self.on_goal,
                cancel_callback=lambda _goal: CancelResponse.ACCEPT,
                callback_group=ReentrantCallbackGroup(),
            )
            for action, name, execute in (
                (Evaluate, "evaluate", self.execute),
                (Retrain, "retrain", self.execute_retrain),
                (Collect, "collect", self.execute_collect),
            )
        ]
        self.diagnostics = Diagnostics(self, self.health, self.throttle)

    def health(self):
        values = {"goals": self.goals, "succeeded": self.done, "cancelled": self.cancelled, "busy": self._busy.locked()}
        return OK, self.last or "waiting for /evaluate, /retrain and /collect goals", values

    def on_goal(self, goal):
        if self._busy.locked():
            self.log.warning("a goal arrived while one runs: rejected (one at a time)")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _end(self, handle, result, how: str, message: str):
        """Finish a goal: "succeed", "abort" (refused or failed) or "canceled", with its message."""
        result.ok, result.message = how == "succeed", message
        self.last = message
        if how == "succeed":
            self.done += 1
            self.log.info(message)
        elif how == "canceled":
            self.cancelled += 1
        else:
            self.log.error(message)
        getattr(handle, how)()
        return result

    def checkpoint_for(self, goal) -> str:
        if goal.checkpoint:
            return goal.checkpoint
        latest = Path(self.p.run_dir).expanduser() / "learner" / "policy_latest.pt" if self.p.run_dir else None
        if latest is not None and latest.exists():
            return str(latest)
        if self.p.checkpoint:
            return self.p.checkpoint
        raise ValueError("the goal names no checkpoint, and the node has neither a learner's policy nor `checkpoint`")

    def execute(self, handle):
        from robofume_ros.pipeline.evaluation import evaluate_policy, prepare

        goal, result = handle.request, Evaluate.Result()
        result.forward_success = result.backward_success = math.nan
        with self._busy:
            self.goals += 1
            try:
                path = self.checkpoint_for(goal)
                prep = prepare(path, goal.pair or None, (self.p.dataset or [None])[0], None, int(goal.max_steps))
            except ValueError as e:
                return self._end(handle, result, "abort", f"refused: {e}")
            trials = int(goal.trials) or self.p.trials
            fb = Evaluate.Feedback(trials_total=2 * trials)

            def on_trial(phase, steps):
                fb.task, fb.trial = prep.pair.task(phase), fb.trial + 1
                if steps is not None:
                    if phase == "forward":
                        fb.forward_successes += 1
                    else:
                        fb.backward_successes += 1
                handle.publish_feedback(fb)
                if handle.is_cancel_requested:
                    raise Cancelled()

            self.last = f"evaluating {path} on {prep.pair.name}, {trials} trials per task"
            self.log.info(self.last)
            try:
                res, _ = evaluate_policy(
                    prep.policy,
                    pair=prep.pair.name,
                    trials=trials,
                    max_steps=prep.limits,
                    seed=int(goal.seed),
                    scene_seed=prep.scene_seed,
                    start_jitter=prep.start_jitter,
                    deterministic=not goal.stochastic,
                    on_trial=on_trial,
                )
            except Cancelled:
                return self._end(handle, result, "canceled", f"cancelled after {fb.trial} of {fb.trials_total} trials")
            result.pair = prep.pair.name
            result.forward_success, result.backward_success = res.forward_success, res.backward_success
            result.forward_trials, result.backward_trials = len(res.forward_trials), len(res.backward_trials)
            result.result_json = json.dumps({"policy": path, **res.as_dict()})
            return self._end(
                handle,
                result,
                "succeed",
                f"{prep.pair.name}: forward {res.forward_success:.0%} ({result.forward_trials} trials), "
                f"backward {res.backward_success:.0%} ({result.backward_trials} trials)",
            )

    def execute_retrain(self, handle):
        from robofume_ros.pipeline.retrain import retrain

        goal, result = handle.request, Retrain.Result()
        run_dir = Path(self.p.run_dir).expanduser() if self.p.run_dir else None
        with self._busy:
            self.goals += 1
            datasets, relabel = list(goal.datasets), {}
            if not datasets:
                online = run_dir / "learner" / "online" if run_dir else None
                datasets = list(self.p.dataset)
                if online is not None and online.exists():
                    relabel = {"online": [str(online)]}
                    if self.p.reward_model:
                        from robofume_ros.pipeline.retrain import online_pair, recipe_success_frames
                        from robofume_ros.reward.adapt import latest_model

                        relabel.update(
                            reward_model=latest_model(self.p.reward_model, run_dir / "reward_adapted"),
                            success_frames=recipe_success_frames(self.p.recipe),
                            pair=online_pair(online),
                        )
            out = Path(goal.out) if goal.out else (run_dir / "retrain" if run_dir else None)
            if not (datasets or relabel) or out is None:
                return self._end(
                    handle, result, "abort", "refused: the goal names no datasets or out, and the node has no run_dir"
                )
            fb = Retrain.Feedback()

            def on_log(step, total, row):
                fb.step, fb.steps_total = int(step), int(total)
                fb.steps_per_s = float(row.get("steps_per_s", 0.0))
                fb.metrics_json = json.dumps({k: float(v) for k, v in row.items()})
                result.steps = int(step)
                handle.publish_feedback(fb)

            def stop(step):  # a cancel is answered after the running update, not at the next log row
                if handle.is_cancel_requested:
                    result.steps = int(step)
                    raise Cancelled()

            self.last = f"retraining on {', '.join(map(str, datasets))} into {out}"
            self.log.info(self.last)
            result.checkpoint = str(out / "checkpoint.pt")
            try:
                rc = retrain(
                    datasets,
                    out,
                    self.p.recipe,
                    int(goal.seed),
                    self.p.device,
                    goal.algo,
                    int(goal.steps),
                    on_log=on_log,
                    stop=stop,
                    **relabel,
                )
            except Cancelled:
                return self._end(
                    handle, result, "canceled", f"cancelled at step {result.steps}; checkpoint {result.checkpoint}"
                )
            except Exception as e:  # noqa: BLE001 - a bad goal or dataset fails the goal, never the node
                return self._end(handle, result, "abort", f"retraining failed: {type(e).__name__}: {e}")
            if rc not in (None, 0):
                return self._end(handle, result, "abort", f"retraining failed (exit code {rc}): see the node's log")
            result.steps = result.steps or fb.steps_total
            return self._end(
                handle, result, "succeed", f"retrained {goal.algo or 'the recipe algorithm'}: {result.checkpoint}"
            )

    def execute_collect(self, handle):
        from robofume_ros.data.dataset import dataset_pair
        from robofume_ros.data.generate import collect

        goal, result = handle.request, Collect.Result()
        with self._busy:
            self.goals += 1
            run_dir = Path(self.p.run_dir).expanduser() if self.p.run_dir else None
            out = Path(goal.out) if goal.out else (run_dir / "collected" / goal.kind if run_dir else None)
            if out is None:
                return self._end(handle, result, "abort", "refused: the goal names no out, and the node has no run_dir")
            result.dataset = str(out)
            try:  # a new folder is collected in the scene of the node's dataset (the robot's workspace)
                first = (self.p.dataset or [None])[0]
                pair = goal.pair or (dataset_pair(first) if first else None) or ""
                scene = None
                if first and (Path(first) / "generate.json").exists() and not (out / "generate.json").exists():
                    from robofume_ros.pipeline.evaluation import dataset_scene_seed

                    scene = dataset_scene_seed(first)
            except (OSError, ValueError) as e:
                return self._end(handle, result, "abort", f"refused: {e}")
            fb = Collect.Feedback(episodes_total=int(goal.episodes) * (2 if goal.kind == "demos" else 1))

            def on_attempt(task, kept):
                fb.task, fb.kept = task, bool(kept)
                fb.attempts, fb.episodes = fb.attempts + 1, fb.episodes + int(kept)
                result.episodes, result.attempts = fb.episodes, fb.attempts
                handle.publish_feedback(fb)
                if handle.is_cancel_requested:
                    raise Cancelled()

            self.last = f"collecting {goal.kind} into {out}"
            self.log.info(self.last)
            try:
                rec = collect(goal.kind, out, pair, int(goal.episodes), int(goal.seed), scene, on_attempt=on_attempt)
            except Cancelled:
                return self._end(
                    handle, result, "canceled", f"cancelled after {result.episodes} episodes; they are in {out}"
                )
            except (ValueError, KeyError, OSError) as e:
                return self._end(handle, result, "abort", f"refused: {e}")
            result.episodes, result.attempts = rec["counts"]["episodes"], rec["counts"]["attempts"]
            return self._end(
                handle,
                result,
                "succeed",
                f"collected {result.episodes} {goal.kind} of {rec['pair']} in {result.attempts} attempts into {out}",
            )


def main(args=None):
    return run_node(EvaluatorNode, args, executor_threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
