"""Calibration: Cal-QL's Q of policy actions stays at/above the data's MC returns; plain CQL falls below.

Small offline point-mass dataset, state-based, bf16 autocast (the fast mode), gamma 0.5 so the
Q-functions converge within a CI budget. Deterministic on one thread.
"""

import numpy as np
import torch

from robofume_ros.rl.learner import Learner, LearnerConfig
from robofume_ros.rl.pointmass import scripted_dataset

torch.set_num_threads(1)
AGENT = {
    "bf16": True,
    "gamma": 0.5,
    "batch_size": 128,
    "critic_lr": 3e-3,
    "actor_lr": 1e-3,
    "net": {"hidden": [128, 128]},
}


def q_minus_mc(algo, data, steps=1500):
    L = Learner(LearnerConfig(algo=algo, lang_mode="none", seed=0, agent=AGENT), 2, 2)
    L.add_offline(data)
    L.update(steps)
    b = L.offline.gather(np.arange(len(L.offline)))
    obs = {"proprio": torch.from_numpy(b["obs"]["proprio"]), "lang": torch.zeros(len(L.offline), 0)}
    q_pi = L.agent.q_values(obs, L.agent.act(obs, deterministic=True)).numpy()
    return float(q_pi.mean()), float(b["mc_returns"].mean())


def test_calql_stays_above_mc_while_cql_falls_below():
    data = scripted_dataset(40, noise=1.5, seed=0)
    q_cal, mc = q_minus_mc("calql", data)
    q_cql, mc2 = q_minus_mc("cql", data)
    assert mc == mc2
    print(f"mean MC return {mc:.2f}; Cal-QL Q(s,pi(s)) {q_cal:.2f}; CQL Q(s,pi(s)) {q_cql:.2f}")
    # measured on this machine (critics start at the mean MC return, q_init="mc_mean"): MC -9.39,
    # Cal-QL -8.65 (above it), CQL -13.61; with the official zero init Cal-QL sits at -9.4 to -10.0
    assert q_cal >= mc - 0.1, (q_cal, mc)  # Cal-QL: at or above the MC return (1% tolerance)
    assert q_cql <= mc - 0.4, (q_cql, mc)  # CQL: clearly below it
    assert q_cal - q_cql >= 0.4
