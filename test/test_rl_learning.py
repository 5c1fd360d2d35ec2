"""Learning: Cal-QL trained offline on a sparse-reward 2-D point-mass beats a random policy by a margin."""

import numpy as np
import torch

from robofume_ros.rl.learner import Learner, LearnerConfig
from robofume_ros.rl.pointmass import INSTRUCTION, scripted_dataset, success_rate

torch.set_num_threads(1)


def test_calql_offline_beats_random_policy():
    data = scripted_dataset(40, noise=1.5, seed=0)  # noisy scripted data, ~2/3 successful
    L = Learner(
        LearnerConfig(
            algo="calql",
            lang_mode="onehot",
            seed=0,
            agent={"bf16": True, "gamma": 0.9, "batch_size": 128, "critic_lr": 3e-3, "actor_lr": 1e-3},
        ),
        2,
        2,
    )
    L.add_offline(data)
    L.update(300)
    rng = np.random.default_rng(0)
    random_sr = success_rate(lambda p: rng.uniform(-1, 1, p.shape).astype(np.float32), n_episodes=100)
    learned_sr = success_rate(
        lambda p: L.act({"proprio": p.astype(np.float32), "instruction": [INSTRUCTION] * len(p)}), n_episodes=100
    )
    print(f"success: random {random_sr:.2f}, Cal-QL {learned_sr:.2f}")
    assert learned_sr >= random_sr + 0.5, (learned_sr, random_sr)
