"""Reset-free fine-tuning end to end, as real processes with tiny models: sim + camera + policy +
reward + task switcher + learner (+ recorder). A few hundred lockstep steps."""

import json
import os
import signal
import time

import pytest
import yaml
from pathlib import Path

rclpy = pytest.importorskip("rclpy")
from rosgraph import graph_under_test

from robofume_ros.ros import graph, qos
from robofume_ros.msg import ArmCommand, Observation, PolicyWeights, Reward, TaskPhase


def finetune_specs(tmp_path, models, budget=100000, max_episode_steps=40, learner=None, record=False, **extra):
    """The graph with a recipe variant (a file layered on the default recipe, as a user would
    write one): the time limit and any learner settings."""
    ckpt, reward = models
    variant = {"task_switcher": {"ros__parameters": {"max_episode_steps": max_episode_steps}}}
    if learner:
        variant["learner"] = {"ros__parameters": learner}
    (tmp_path / "variant.yaml").write_text(yaml.safe_dump(variant))
    args = {
        "fast": "true",
        "use_sim_time": "true",
        "policy_checkpoint": str(ckpt),
        "reward_model": str(reward),
        "run_dir": str(tmp_path / "run"),
        "bag_dir": str(tmp_path / "bags"),
        "budget_steps": str(budget),
        "record": "true" if record else "false",
        "recipe": str(tmp_path / "variant.yaml"),
        **extra,
    }
    specs = graph.nodes("finetune", args)
    by = {s.key: s for s in specs}
    # tiny-model settings: the random reward says "done" on every frame (threshold 0), debounced
    # over 3 frames, so episodes end on reward success after 3 steps; weights every 10 updates.
    # It says "done" for both tasks of the drawer pair, which the pair veto would reject: the veto is
    # pointed at another pair here (test_ros_reward tests it)
    for s in specs:
        if s.name == "reward":
            s.parameters.update(threshold=0.0, debounce_frames=3, paired_instructions=["lift the cup", "lower the cup"])
    by["learner"].parameters.update(weights_every=10, checkpoint_every=20, utd_ratio=0.5)
    return specs, by


def test_finetune_loop_learns_switches_and_survives_a_learner_crash(tmp_path, models):
    specs, by = finetune_specs(tmp_path, models, learner={"n_step": 3})
    assert by["learner"].params_files[-1] == str(tmp_path / "variant.yaml")  # the variant reaches the learner
    assert by["task_switcher"].parameters["max_episode_steps"] == 40
    learner_dir = tmp_path / "run" / "learner"
    with graph_under_test("finetune", {}, tmp_path, specs=specs) as g:
        probe = g.probe(
            {
                "/reward": Reward,
                "/task_phase": TaskPhase,
                "/policy/weights": PolicyWeights,
                "/robot/command": ArmCommand,
            }
        )
        # background work runs niced: the control path gets the cores first (background_nice:=10)
        pid = {n: g.runner.procs[n].proc.pid for n in ("learner", "policy", "sim", "camera")}
        base = os.getpriority(os.PRIO_PROCESS, 0)
        nice = {n: os.getpriority(os.PRIO_PROCESS, p) - base for n, p in pid.items()}
        assert nice == {"learner": 10, "policy": 0, "sim": 0, "camera": 0}
        # task switches happen on reward success
        phases = probe.wait_for("/task_phase", 1, timeout=180, pred=lambda m: m.episode_index >= 6)
        assert phases[-1].forward_successes + phases[-1].backward_successes >= 5
        assert phases[-1].forward_timeouts + phases[-1].backward_timeouts == 0
        rewards = probe.wait_for("/reward", 10, timeout=30)
        assert all(r.success == (r.consecutive_positive >= 3) for r in rewards)
        assert {r.model_id for r in rewards} and all(0.0 <= r.probability <= 1.0 for r in rewards)
        # new weights reach the policy node
        probe.wait_for("/policy/weights", 1, timeout=120, pred=lambda m: m.version >= 20)
        deadline = time.monotonic() + 60
        while "now acting with learner weights" not in g.log("policy") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "now acting with learner weights" in g.log("policy")
        # transitions reach disk before training: online episodes in the dataset
        status = json.loads((learner_dir / "status.json").read_text())
        assert status["updates"] > 0 and status["online_transitions"] > 0
        assert "actor BC term on successful episodes only" in g.log("learner")
        assert "critics on 3-step TD targets" in g.log("learner")
        # the learner (niced, training) stores episodes a little behind the robot on a loaded machine
        deadline = time.monotonic() + 60
        while len(list((learner_dir / "online" / "episodes").glob("ep_*"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        online_eps = sorted((learner_dir / "online" / "episodes").iterdir())
        assert len(online_eps) >= 3
        # kill the learner: the runner respawns it, and it resumes with nothing it had lost
        before = {e.name for e in online_eps if e.name.startswith("ep_")}

        # kill it mid-episode: the learner has some of the episode's steps in its journal, and the
        # episode ends (by success) while it is down
        def mid(m):
            return m.steps_in_episode >= 2

        probe.wait_for("/task_phase", sum(map(mid, probe.get("/task_phase"))) + 1, timeout=30, pred=mid)
        learner_proc = g.runner.procs["learner"].proc
        learner_proc.send_signal(signal.SIGKILL)
        learner_proc.wait(10)
        deaths = []
        deadline = time.monotonic() + 30
        while not deaths and time.monotonic() < deadline:
            deaths = g.runner.poll()
            time.sleep(0.2)
        assert deaths and deaths[0].node == "learner" and deaths[0].respawned
        assert "SIGKILL" in deaths[0].message()
        # the restarted learner logs "resumed from" its checkpoint, then loads the datasets and
        # logs "reloaded": wait for the later one
        deadline = time.monotonic() + 120
        while "reloaded" not in g.log("learner") and time.monotonic() < deadline:
            time.sleep(0.5)
        log = g.log("learner")
        assert "resumed from" in log, log[-3000:]
        assert f"reloaded {len(before)} online episodes" in log or "reloaded" in log, log[-3000:]
        assert log.count("critics on 3-step TD targets") == 2  # the resumed learner keeps its horizon
        # (what the journal recovers after a kill mid-episode is tested without processes in
        # test_online_stream.py; here it depends on where the kill lands)
        probe.wait_for("/task_phase", 1, timeout=120, pred=lambda m: m.episode_index >= phases[-1].episode_index + 4)

        def stored():  # finished episodes only (an episode being written has another name)
            return {e.name for e in (learner_dir / "online" / "episodes").iterdir() if e.name.startswith("ep_")}

        deadline = time.monotonic() + 120
        while not before < stored() and time.monotonic() < deadline:
            time.sleep(0.5)
        after = stored()
        assert before < after, f"the restarted learner must keep every episode and add new ones: {sorted(after)}"
        # every episode ended by success in the switcher's verdict; so is every stored one, also the
        # one the kill interrupted, which ended while the learner was down (TaskPhase.recent_*)
        last = probe.get("/task_phase")[-1]
        assert last.forward_timeouts + last.backward_timeouts == 0
        episodes = learner_dir / "online" / "episodes"
        labels = {n: json.loads((episodes / n / "meta.json").read_text())["success"] for n in after}
        assert all(labels.values()), labels
        g.assert_alive()


def test_dead_reward_node_means_timeouts_not_a_hang(tmp_path, models):
    specs, by = finetune_specs(tmp_path, models, max_episode_steps=15)
    by["reward"].respawn = False  # stays dead: the switcher must carry on by its time limit
    with graph_under_test("finetune", {}, tmp_path, specs=specs) as g:
        probe = g.probe({"/task_phase": TaskPhase, "/reward": Reward, "/observation": Observation})
        probe.wait_for("/reward", 5, timeout=180)
        # a state policy, a tiny CLIP reward and learner: nobody asks for the camera's features
        assert not any(o.features_id or len(o.features) for o in probe.get("/observation"))
        g.runner.procs["reward"].proc.send_signal(signal.SIGKILL)
        deaths = []
        deadline = time.monotonic() + 20
        while not deaths and time.monotonic() < deadline:
            deaths = g.runner.poll()
            time.sleep(0.2)
        assert [d.node for d in deaths] == ["reward"]
        assert "node 'reward' (reward_node) died: killed by SIGKILL" in deaths[0].message()
        assert not g.runner.fatal(deaths), "the reward is not required: the graph carries on"
        start = probe.wait_for("/task_phase", 1, timeout=30)[-1]  # latched, and again once a second
        phases = probe.wait_for(
            "/task_phase",
            1,
            timeout=120,
            pred=lambda m: (
                m.forward_timeouts + m.backward_timeouts >= start.forward_timeouts + start.backward_timeouts + 2
            ),
        )
        assert phases[-1].episode_index >= start.episode_index + 2
        assert set(g.runner.running()) == {s.name for s in specs} - {"reward"}


def test_outage_backfill_keeps_every_transition_the_robot_made(tmp_path, models):
    """The learner killed mid-episode twice: on each restart it asks the recorder for what it
    missed; afterwards every episode it stored holds exactly the transitions the bag holds
    (`pytest -k outage`). The recorder keeps only 3 s in memory here, less than a restart takes:
    the rest comes from its bag files, as after a long outage."""
    specs, by = finetune_specs(tmp_path, models, record=True)
    assert by["learner"].parameters.get("backfill", True)  # with a recorder in the graph
    by["recorder"].parameters.update(backfill_s=3.0)
    learner_dir = tmp_path / "run" / "learner"
    with graph_under_test("finetune", {}, tmp_path, specs=specs) as g:
        probe = g.probe()
        probe.subscribe("/task_phase", TaskPhase, qos.LATCHED_DEEP)  # every verdict, as the learner hears them

        def mid(m):
            return m.steps_in_episode >= 2

        def wait_backfilled(n, timeout):
            deadline = time.monotonic() + timeout
            while g.log("learner").count("backfill (start) done") < n and time.monotonic() < deadline:
                time.sleep(0.5)
            assert g.log("learner").count("backfill (start) done") >= n, g.log("learner")[-3000:]

        for kill in range(2):
            # kill a learner that is up: one killed during its start (a slow machine loads torch
            # while the robot already runs episodes) would never log its backfill
            wait_backfilled(kill + 1, 180)
            probe.wait_for("/task_phase", 1, timeout=180, pred=lambda m, k=kill: m.episode_index >= 4 + 6 * k)
            probe.wait_for("/task_phase", sum(map(mid, probe.get("/task_phase"))) + 1, timeout=30, pred=mid)
            proc = g.runner.procs["learner"].proc
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            deadline = time.monotonic() + 30
            while not g.runner.poll() and time.monotonic() < deadline:
                time.sleep(0.2)
            wait_backfilled(kill + 2, 120)  # the restarted learner has its backfill
        end = probe.get("/task_phase")[-1].episode_index
        probe.wait_for("/task_phase", 1, timeout=120, pred=lambda m: m.episode_index >= end + 3)
        deadline = time.monotonic() + 120  # and has stored every episode before `end` (slow when loaded)
        while not set(range(1, end)) <= set(stored_indices(learner_dir)) and time.monotonic() < deadline:
            time.sleep(0.5)
        log = g.log("learner")
        recorder_log = g.log("recorder")
    assert log.count("backfill (start) done") >= 3, log[-3000:]  # the first start and the two restarts
    assert "from the bag: older than memory" in recorder_log, recorder_log[-3000:]
    from robofume_ros.data.dataset import load_episodes

    per_episode = bag_transitions(tmp_path / "bags")
    episodes = load_episodes(learner_dir / "online")
    stored = {int(e.provenance["episode_index"]): len(e) for e in episodes}
    closed = [i for i in sorted(per_episode) if 0 < i < end]  # episodes both saw begin and end
    assert closed and set(closed) <= set(stored), f"episodes missing from the learner: {set(closed) - set(stored)}"
    wrong = {i: (stored[i], per_episode[i]) for i in closed if stored[i] != per_episode[i]}
    assert not wrong, f"episode: (learner's transitions, bag's) differ: {wrong}"
    # and each is labelled with the task switcher's verdict, also the ones that ended while the
    # learner was down (more of them than one phase message remembers on a slow machine)
    verdicts = {}
    for m in probe.get("/task_phase"):
        verdicts.update(zip(map(int, m.recent_episodes), map(bool, m.recent_successes)))
    mislabelled = {
        i: (e.success, verdicts[i])
        for e in episodes
        if (i := int(e.provenance["episode_index"])) in closed and i in verdicts and e.success != verdicts[i]
    }
    assert set(closed) - set(verdicts) == set() and not mislabelled, (set(closed) - set(verdicts), mislabelled)


def node_status(probe, name) -> dict:
    """The newest /diagnostics values of node `name` (e.g. "robofume_ros/learner") the probe heard."""
    for arr in reversed(probe.get("/diagnostics")):
        for st in arr.status:
            if st.name == name:
                return {kv.key: kv.value for kv in st.values}
    return {}


def bag_transitions(bag_dir) -> dict:
    from robofume_ros.data.bags import transitions_per_episode

    return transitions_per_episode(sorted(Path(bag_dir).iterdir()))


def stored_indices(learner_dir) -> list:
    """Episode indices the learner has written to its online dataset."""
    out = []
    for d in (learner_dir / "online" / "episodes").glob("ep_*"):
        try:
            out.append(int(json.loads((d / "meta.json").read_text())["provenance"]["episode_index"]))
        except (OSError, ValueError, KeyError):
            pass
    return out


def test_fleet_of_two_robots_feeds_one_learner(tmp_path, models):
    """robots:=2: two simulated robots under /robot1 and /robot2, each with its own sim clock, feed
    one learner; both robots' episodes reach its disk tagged with their robot, both policies get
    its weights, and a robot whose policy dies leaves the other robot and the learner running."""
    from robofume_ros.data.dataset import load_episodes

    specs, by = finetune_specs(tmp_path, models, robots="2")
    assert by["learner"].parameters["robots"] == ["robot1", "robot2"]
    by["learner"].nice = 0  # the fleet's plumbing is tested here; a niced learner only makes it slower
    assert {by[f"robot{i}/sim"].parameters["seed"] for i in (1, 2)} == {0, 1}
    learner_dir = tmp_path / "run" / "learner"
    with graph_under_test("finetune", {}, tmp_path, specs=specs) as g:
        topics = {f"/robot{i}/task_phase": TaskPhase for i in (1, 2)}
        topics.update({f"/robot{i}/policy/weights": PolicyWeights for i in (1, 2)})
        probe = g.probe(topics)
        for i in (1, 2):
            probe.wait_for(f"/robot{i}/task_phase", 1, timeout=240, pred=lambda m: m.episode_index >= 4)
            probe.wait_for(f"/robot{i}/policy/weights", 1, timeout=120, pred=lambda m: m.version >= 10)
        for i in (1, 2):
            deadline = time.monotonic() + 60
            while "now acting with learner weights" not in g.log(f"robot{i}/policy") and time.monotonic() < deadline:
                time.sleep(0.5)
            assert "now acting with learner weights" in g.log(f"robot{i}/policy")

        def stored():
            out = {}
            for e in load_episodes(learner_dir / "online"):
                out.setdefault(e.provenance.get("robot"), set()).add(int(e.provenance["episode_index"]))
            return out

        deadline = time.monotonic() + 90
        while set(stored()) != {"robot1", "robot2"} and time.monotonic() < deadline:
            time.sleep(0.5)
        assert set(stored()) == {"robot1", "robot2"}, stored()
        # robot1's policy dies: robot1 stops, robot2 and the learner go on
        proc = g.runner.procs["robot1/policy"].proc
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        since = probe.get("/robot2/task_phase")[-1].episode_index
        probe.wait_for("/robot2/task_phase", 1, timeout=120, pred=lambda m: m.episode_index >= since + 3)
        deaths = g.runner.poll()
        assert [d.node for d in deaths] == ["robot1/policy"], [d.message() for d in deaths]
        assert "learner" in g.runner.running() and "robot2/policy" in g.runner.running()
        n2 = len(stored().get("robot2", ()))
        deadline = time.monotonic() + 90
        while len(stored().get("robot2", ())) <= n2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(stored().get("robot2", ())) > n2  # the learner keeps storing robot2's episodes
        log = g.log("learner")
    assert "a fleet of 2 robots: robot1, robot2" in log
    assert "[robot1] " in log and "[robot2] " in log


def test_sim_time_waits_for_the_learner_and_keeps_its_utd_ratio(tmp_path, models):
    """fast:=true (lockstep on the sim clock): with a UTD ratio the learner cannot reach at the
    simulator's own pace, the simulator waits until the learner's updates cover its steps
    (/learner/trained_until_ns), so the run keeps the configured ratio however fast the simulation
    could go."""
    from diagnostic_msgs.msg import DiagnosticArray

    utd, slack, steps_wanted = 8.0, 2, 40
    learner = {"utd_ratio": utd, "weights_every": 100, "checkpoint_every": 1000}
    specs, by = finetune_specs(tmp_path, models, learner=learner)
    by["learner"].parameters.update(learner)  # finetune_specs' own settings are for the other tests
    assert by["sim"].parameters.get("follow_learner", True) is True
    by["sim"].parameters.update(learner_slack_steps=slack)
    by["learner"].nice = 0  # the pace is the learner's: niced, it would only make the test slower
    assert by["sim"].parameters["lockstep_wait_for_reward"] is True  # the graph runs a reward
    with graph_under_test("finetune", {}, tmp_path, specs=specs) as g:
        probe = g.probe({"/diagnostics": DiagnosticArray})

        def status(name):
            return node_status(probe, name)

        deadline = time.monotonic() + 400
        while float(status("robofume_ros/learner").get("env_steps", 0)) < steps_wanted and time.monotonic() < deadline:
            time.sleep(1)
        learner, sim = status("robofume_ros/learner"), status("robofume_ros/sim")
        g.assert_alive()
    steps, ratio = float(learner["env_steps"]), float(learner["utd"])
    assert steps >= steps_wanted, (learner, sim)
    # the simulator runs at most `slack` steps (+ the one in flight) ahead of the learner's updates
    assert ratio >= utd * (steps - slack - 2) / steps, f"updates per env step {ratio:.2f} of {utd}: {learner} {sim}"
    assert float(sim["waited_for_learner_s"]) > 0, sim


def test_the_camera_computes_the_image_features_once_for_policy_reward_and_learner(tmp_path, models):
    """A policy on the frozen encoder's features and the built-in reward tower in fp32 ask for the
    camera's shared features: every observation carries them (pooled + grid, as the encoder makes
    them from its image), the policy and the reward judge on them, and the learner stores them with
    its episodes; with models that cannot use them (the other tests' graphs) nobody asks and the
    camera sends none."""
    import numpy as np
    from diagnostic_msgs.msg import DiagnosticArray
    from tiny_models import tiny_learner_checkpoint

    from robofume_ros.data.dataset import load_episodes
    from robofume_ros.reward.dual_encoder import DualEncoderRewardModel
    from robofume_ros.ros.convert import image_to_rgb
    from robofume_ros.vision import FEATURE_ENCODER_ID, SHARED_FEATURES_ID, SHARED_GRID
    from robofume_ros.vision.encoder import FrozenImageEncoder

    DualEncoderRewardModel.from_pretrained("default", precision="fp32").save(tmp_path / "reward")
    specs, by = finetune_specs(tmp_path, (tiny_learner_checkpoint(tmp_path / "f.pt", "features"), tmp_path / "reward"))
    learner_dir = tmp_path / "run" / "learner"
    with graph_under_test("finetune", {}, tmp_path, specs=specs) as g:
        probe = g.probe({"/diagnostics": DiagnosticArray, "/observation": Observation})

        def status(name):
            return node_status(probe, name)

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (
            len(list((learner_dir / "online" / "episodes").glob("ep_*"))) >= 4
            and float(status("robofume_ros/policy").get("features/shared", 0)) > 20
            and float(status("robofume_ros/reward").get("features/shared", 0)) > 20
        ):
            time.sleep(0.5)
        policy, reward, camera = (status(f"robofume_ros/{n}") for n in ("policy", "reward", "camera"))
        obs = [o for o in probe.get("/observation") if o.features_id][-3:]
        g.assert_alive()
    assert camera["features/sent"] == "True", camera
    # the first frames may go out before the camera has heard the askers: those are computed locally
    assert float(policy["features/shared"]) > 20 and float(policy["features/computed"]) < 20, policy
    assert float(reward["features/shared"]) > 20, reward
    assert obs and all(o.features_id == SHARED_FEATURES_ID for o in obs)
    frames = np.stack([image_to_rgb(o.image) for o in obs])
    np.testing.assert_allclose(
        np.stack([np.asarray(o.features) for o in obs]), FrozenImageEncoder(grid=SHARED_GRID)(frames), atol=1e-4
    )
    stored = load_episodes(learner_dir / "online")
    assert len(stored) >= 4
    for ep in stored[-2:]:  # (the first may hold frames sent before the camera heard the askers)
        assert ep.feature_encoder == FEATURE_ENCODER_ID
        np.testing.assert_allclose(ep.features, FrozenImageEncoder()(np.asarray(ep.images)), atol=1e-4)
