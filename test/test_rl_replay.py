"""Replay storage and Monte-Carlo returns (robofume_ros.rl.replay)."""

import numpy as np
import pytest

from robofume_ros.data.episode import Episode
from robofume_ros.rl.replay import ReplayStore, RewardSpec, mc_returns, n_step_targets, sample_mixed


def make_ep(T, rewards=None, terminals=None, instruction="do it", P=3, A=2, img=4, offset=0.0, features=False):
    rewards = np.full(T, -1.0, np.float32) if rewards is None else np.asarray(rewards, np.float32)
    terminals = np.zeros(T, bool) if terminals is None else np.asarray(terminals, bool)
    proprio = (np.arange(T + 1, dtype=np.float32)[:, None] + offset) * np.ones((1, P), np.float32)
    return Episode(
        images=np.full((T + 1, img, img, 3), 7, np.uint8),
        proprio=proprio,
        actions=np.tile(np.linspace(-1, 1, A, dtype=np.float32), (T, 1)) * 0.5,
        rewards=rewards,
        terminals=terminals,
        instruction=instruction,
        task="t",
        success=bool(terminals.any()),
        features=(proprio[:, :1] * np.ones((1, 5), np.float32)) if features else None,
    )


def test_mc_terminal_cuts_the_sum():
    # RoboFuME demo: -1, -1, 0(terminal). scale 1 bias 0, gamma 0.5
    g = mc_returns([-1, -1, 0], [0, 0, 1], gamma=0.5)
    # G2 = 0 ; G1 = -1 + 0.5*0 = -1 ; G0 = -1 + 0.5*-1 = -1.5
    np.testing.assert_allclose(g, [-1.5, -1.0, 0.0])


def test_mc_timeout_is_not_terminal():
    # success reward in the middle, then a time limit: sum continues to the end with G_T = 0
    g = mc_returns([-1, 0, -1], [0, 0, 0], gamma=0.5)
    # G2 = -1 ; G1 = 0 + 0.5*-1 = -0.5 ; G0 = -1 + 0.5*-0.5 = -1.25
    np.testing.assert_allclose(g, [-1.25, -0.5, -1.0])
    # with a terminal at step 1 the tail is cut off
    g2 = mc_returns([-1, 0, -1], [0, 1, 0], gamma=0.5)
    np.testing.assert_allclose(g2, [-1.0, 0.0, -1.0])


def test_mc_all_failure_rule_and_scale_bias():
    # never succeeds: every step gets r_fail / (1 - gamma) on scaled rewards
    g = mc_returns([-1, -1, -1, -1], [0, 0, 0, 0], gamma=0.9, reward_scale=10, reward_bias=5)
    np.testing.assert_allclose(g, np.full(4, -5 / 0.1), rtol=1e-6)
    # succeeding trajectory with scale 10 bias 5: rewards -5, -5, +5(terminal), gamma 0.9
    g = mc_returns([-1, -1, 0], [0, 0, 1], gamma=0.9, reward_scale=10, reward_bias=5)
    np.testing.assert_allclose(g, [-5 + 0.9 * (-5 + 0.9 * 5), -5 + 0.9 * 5, 5.0], rtol=1e-6)
    # dense (sparse=False): plain discounted sum even if all rewards equal
    g = mc_returns([-1, -1], [0, 0], gamma=0.5, sparse=False)
    np.testing.assert_allclose(g, [-1.5, -1.0])


def test_store_layout_growth_and_next_obs():
    spec = RewardSpec(gamma=0.5, reward_scale=10, reward_bias=5)
    ids = {}
    s = ReplayStore(
        proprio_dim=3,
        action_dim=2,
        image_shape=(4, 4, 3),
        feature_dim=5,
        reward_spec=spec,
        lang_index=lambda x: ids.setdefault(x, len(ids)),
        capacity=4,
    )
    eps = [make_ep(5, offset=100 * k, instruction=f"task {k % 2}", features=True) for k in range(6)]
    eps[2] = make_ep(3, [-1, -1, 0], [0, 0, 1], offset=200, instruction="task 0", features=True)
    s.add_episodes(eps)
    assert len(s) == 5 * 5 + 3 and s.n_obs == len(s) + 6 and s.n_episodes == 6
    b = s.gather(np.arange(len(s)))
    # o_{t+1} is the row after o_t, inside the same episode
    np.testing.assert_array_equal(b["next_obs"]["proprio"] - b["obs"]["proprio"], 1.0)
    assert b["obs"]["image"].dtype == np.uint8 and b["obs"]["image"].shape == (len(s), 4, 4, 3)
    np.testing.assert_allclose(b["rewards"][10:13], [-5, -5, 5])
    np.testing.assert_allclose(b["mc_returns"][10:13], mc_returns([-1, -1, 0], [0, 0, 1], 0.5, 10, 5))
    np.testing.assert_allclose(b["mc_returns"][:5], -5 / 0.5)
    np.testing.assert_array_equal(b["success"], [0.0] * 10 + [1.0] * 3 + [0.0] * 15)  # only episode 2 succeeded
    assert set(b["lang"].tolist()) == {0, 1}
    assert b["dones"].sum() == 1


def test_n_step_targets_hand_computed():
    r = np.array([-1.0, -2.0, -3.0, 4.0, 5.0])
    # one step: the plain backup
    tot, disc, k = n_step_targets(r, [0, 0, 0, 0, 0], gamma=0.5, n=1)
    np.testing.assert_allclose(tot, r)
    np.testing.assert_allclose(disc, 0.5)
    np.testing.assert_array_equal(k, 1)
    # three steps, a time limit at the end: the sum is truncated and still bootstraps
    tot, disc, k = n_step_targets(r, [0, 0, 0, 0, 0], gamma=0.5, n=3)
    np.testing.assert_allclose(tot, [-1 - 1 - 0.75, -2 - 1.5 + 1, -3 + 2 + 1.25, 4 + 2.5, 5])
    np.testing.assert_allclose(disc, [0.125, 0.125, 0.125, 0.25, 0.5])
    np.testing.assert_array_equal(k, [3, 3, 3, 2, 1])
    # a terminal at step 2: sums stop there and do not bootstrap
    tot, disc, k = n_step_targets(r, [0, 0, 1, 0, 0], gamma=0.5, n=3)
    np.testing.assert_allclose(tot[:3], [-1 - 1 - 0.75, -2 - 1.5, -3])
    np.testing.assert_allclose(disc, [0, 0, 0, 0.25, 0.5])
    np.testing.assert_array_equal(k, [3, 2, 1, 2, 1])
    with pytest.raises(ValueError, match="n_step"):
        n_step_targets(r, np.zeros(5), 0.5, 0)


def test_store_n_step_next_obs_stays_in_episode():
    spec = RewardSpec(gamma=0.5, reward_scale=1, reward_bias=0, n_step=3)
    s = ReplayStore(proprio_dim=3, action_dim=2, reward_spec=spec)
    s.add_episodes([make_ep(4, offset=0), make_ep(3, [-1, -1, 0], [0, 0, 1], offset=100)])
    b = s.gather(np.arange(len(s)))
    # next observation k steps later, never past the episode's last observation
    np.testing.assert_array_equal(b["next_obs"]["proprio"][:, 0] - b["obs"]["proprio"][:, 0], [3, 3, 2, 1, 3, 2, 1])
    np.testing.assert_allclose(b["discounts"], [0.125, 0.125, 0.25, 0.5, 0, 0, 0])
    np.testing.assert_allclose(b["rewards"][4:], [-1.5, -1, 0])


def test_store_rejects_missing_features():
    s = ReplayStore(proprio_dim=3, action_dim=2, feature_dim=5)
    with pytest.raises(ValueError, match="features"):
        s.add_episode(make_ep(3))


def test_mixed_sampling_ratio():
    rng = np.random.default_rng(0)
    off = ReplayStore(proprio_dim=3, action_dim=2)
    on = ReplayStore(proprio_dim=3, action_dim=2)
    off.add_episode(make_ep(50, offset=0))
    b = sample_mixed(off, on, 64, 0.5, rng)  # online empty -> all offline
    assert len(b["actions"]) == 64 and (b["obs"]["proprio"][:, 0] < 1000).all()
    on.add_episode(make_ep(50, offset=1000))
    b = sample_mixed(off, on, 64, 0.25, rng)
    from_online = (b["obs"]["proprio"][:, 0] >= 1000).sum()
    assert from_online == 16 and len(b["actions"]) == 64
