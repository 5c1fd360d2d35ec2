"""The background trainer: update-to-data ratio, weights out, checkpoints, budget, concurrent adds."""

import json
import threading
import time

import numpy as np

from tiny_models import tiny_episode

from robofume_ros.online.trainer import OnlineTrainer, TrainerConfig
from robofume_ros.rl.learner import Learner, LearnerConfig
from robofume_ros.rl.policy import Policy


def episode(rng, T=12, instr="open the drawer"):
    return tiny_episode(rng, T, instr, "drawer-open", size=8, source="online")


def test_trainer_follows_utd_pushes_weights_and_stops_at_budget(tmp_path):
    rng = np.random.default_rng(0)
    L = Learner(
        LearnerConfig(
            obs_mode="state",
            lang_mode="onehot",
            max_instructions=2,
            agent={"batch_size": 16, "net": {"hidden": (16, 16)}},
        ),
        proprio_dim=4,
        action_dim=4,
    )
    L.add_offline([episode(rng) for _ in range(3)])
    pushed = []
    tr = OnlineTrainer(
        L,
        TrainerConfig(utd_ratio=0.5, weights_every=5, checkpoint_every=10, budget_steps=60),
        tmp_path,
        on_weights=lambda v, blob, sha, path: pushed.append((v, blob)),
    )
    tr.start()
    time.sleep(0.3)
    assert L.step == 0, "no updates before online data or environment steps"
    adder = threading.Thread(target=lambda: [tr.add_episode(episode(rng)) for _ in range(20)])
    adder.start()  # episodes arrive while the trainer samples
    for _ in range(40):
        tr.env_step()
    adder.join()
    deadline = time.monotonic() + 60
    while L.step < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 20 <= L.step <= 21, "utd 0.5 over 40 environment steps is 20 updates"
    for _ in range(20):
        tr.env_step()
    assert tr.done.wait(60), "budget of 60 environment steps reached"
    tr.stop()
    assert tr.error is None
    versions = [v for v, _ in pushed]
    assert versions[0] == 0 and 5 in versions and 10 in versions
    pol = Policy.load(tmp_path / "policy_latest.pt")  # the file the policy node can read
    pol.load_weights(pushed[-1][1])  # and the bytes it receives
    assert pol.act(None, np.zeros(4, np.float32), "open the drawer").shape == (4,)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["done"] and status["episodes"] == 20 and status["env_steps"] == 60
    resumed = Learner.load(tmp_path / "learner.pt")
    assert resumed.step == L.step


def test_trained_through_is_what_a_paced_simulator_waits_on(tmp_path):
    rng = np.random.default_rng(1)
    L = Learner(
        LearnerConfig(obs_mode="state", lang_mode="onehot", max_instructions=2, agent={"batch_size": 8}),
        proprio_dim=4,
        action_dim=4,
    )
    L.add_offline([episode(rng)])
    tr = OnlineTrainer(L, TrainerConfig(utd_ratio=2.0, budget_steps=100), tmp_path)  # not started
    for _ in range(10):
        tr.env_step()
    assert tr.trained_through() is None, "nothing to train on yet: the robot must not wait"
    tr.add_episode(episode(rng))
    assert tr.trained_through() == 0  # no update yet covers any of the 10 steps
    with tr.lock:
        for _ in range(7):
            L.update()
    assert tr.trained_through() == 3  # at utd 2, steps 1-3 owe 6 updates, step 4 the 7th and 8th
    tr.cfg.utd_ratio = 0.5
    assert tr.trained_through() == 10, "every step whose (half an) update is made or not yet owed"
    tr.cfg.utd_ratio = 2.0

    tr.error = "boom"
    assert tr.trained_through() is None, "a failed learner holds nobody"
    tr.error = None
    tr.done.set()
    assert tr.trained_through() is None, "a finished learner holds nobody"
    tr._csv.close()
