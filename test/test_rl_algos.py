"""Networks, baselines, RND, language and frozen-encoder paths (small and fast)."""

import math

import numpy as np
import pytest
import torch

from robofume_ros.rl.learner import Learner, LearnerConfig
from robofume_ros.rl.networks import NetConfig, StackedQ, TanhGaussianActor
from robofume_ros.rl.pointmass import INSTRUCTION, scripted_dataset

torch.set_num_threads(1)


def test_stacked_q_matches_separate_mlps():
    torch.manual_seed(0)
    q = StackedQ(5, 3, (16, 16), n=2)
    z, a = torch.randn(4, 5), torch.rand(4, 6, 3) * 2 - 1
    out = q(z, a)
    assert out.shape == (2, 4, 6)
    for e in range(2):
        x = torch.cat([z[:, None].expand(-1, 6, -1), a], -1)
        w1 = torch.cat([q.w_z[e], q.w_a[e]], 0)
        h = torch.relu(x @ w1 + q.b0[e])
        h = torch.relu(h @ q.ws[0][e] + q.bs[0][e])
        ref = (h @ q.w_out[e] + q.b_out[e])[..., 0]
        torch.testing.assert_close(out[e], ref, rtol=1e-5, atol=1e-5)
    # orthogonal init of the joint first layer
    w1 = torch.cat([q.w_z[0], q.w_a[0]], 0)
    torch.testing.assert_close(w1 @ w1.t(), 2.0 * torch.eye(8), atol=1e-4, rtol=1e-4)


def test_tanh_gaussian_log_prob_consistent():
    torch.manual_seed(0)
    actor = TanhGaussianActor(4, 2, NetConfig(hidden=(16,)))
    mean, log_std = actor(torch.randn(3, 4))
    a, logp = actor.sample(mean, log_std, 5)
    assert a.shape == (3, 5, 2) and (a.abs() < 1).all()
    lp2 = actor.log_prob(mean[:, None], log_std[:, None], a)
    torch.testing.assert_close(logp, lp2, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("algo", ["calql", "cql", "iql", "bc", "sac"])
def test_every_algorithm_updates_and_acts(algo):
    data = scripted_dataset(6, noise=1.5, seed=1)
    L = Learner(
        LearnerConfig(algo=algo, lang_mode="onehot", agent={"batch_size": 16, "net": {"hidden": [32, 32]}}), 2, 2
    )
    L.add_offline(data)
    m = L.update(3)
    vals = {k: float(v) for k, v in m.items()}
    assert all(math.isfinite(v) for v in vals.values()), vals
    if algo in ("calql", "cql"):
        assert {
            "q_data",
            "mc_return",
            "cql_gap",
            "alpha",
            "entropy",
            "critic_grad_norm",
            "actor_grad_norm",
        } <= vals.keys()
    if algo == "calql":
        assert "bound_rate" in vals
    a = L.act({"proprio": data[0].proprio[:4], "instruction": [INSTRUCTION] * 4})
    assert a.shape == (4, 2) and np.all(np.abs(a) <= 1)


def test_calql_options_run():
    data = scripted_dataset(6, noise=1.5, seed=1)
    for over in (
        {"cql_lagrange": True},
        {"max_target_backup": True},
        {"bound_random_actions": True},
        {"bc_loss": "nll"},
        {"bf16": True},
        {"backup_entropy": True, "cql_importance_sample": False},
    ):
        L = Learner(
            LearnerConfig(lang_mode="none", agent={"batch_size": 16, "net": {"hidden": [32, 32]}, **over}), 2, 2
        )
        L.add_offline(data)
        m = L.update(2)
        assert all(math.isfinite(float(v)) for v in m.values()), over
        if over.get("cql_lagrange"):
            assert "alpha_prime" in m


def test_iql_q_is_bounded():
    data = scripted_dataset(6, noise=1.5, seed=1)
    L = Learner(
        LearnerConfig(
            algo="iql", lang_mode="none", agent={"batch_size": 16, "gamma": 0.5, "net": {"hidden": [32, 32]}}
        ),
        2,
        2,
    )
    L.add_offline(data)
    assert L.agent.q_lo == pytest.approx(-10.0) and L.agent.q_hi == pytest.approx(10.0)
    L.update(2)


def test_online_add_episode_and_rnd_bonus():
    data = scripted_dataset(6, noise=1.5, seed=1)
    L = Learner(
        LearnerConfig(lang_mode="onehot", use_rnd=True, agent={"batch_size": 16, "net": {"hidden": [32, 32]}}), 2, 2
    )
    L.add_offline(data)
    online = scripted_dataset(2, noise=2.0, seed=5)
    for ep in online:
        ep.source = "online"
        L.add_episode(ep)
    assert len(L.online) == sum(len(e) for e in online)
    # online MC returns are stored (calibration stays on online)
    mc = L.online.array("mc_returns")
    assert np.all(np.isfinite(mc)) and mc.min() < 0
    m = L.update(3)
    assert float(m["rnd_bonus"]) > 0 and math.isfinite(float(m["rnd_loss"]))


def test_features_mode_trains_on_stored_features():
    data = scripted_dataset(4, noise=1.5, seed=1)
    rng = np.random.default_rng(0)
    for ep in data:
        ep.features = rng.standard_normal((len(ep) + 1, 12)).astype(np.float32)
    L = Learner(
        LearnerConfig(obs_mode="features", lang_mode="none", agent={"batch_size": 16, "net": {"hidden": [32, 32]}}),
        2,
        2,
        feature_dim=12,
    )
    L.add_offline(data)
    m = L.update(2)
    assert math.isfinite(float(m["td_loss"]))
    assert not any(True for _ in L.agent.encoder.parameters())  # nothing in the encoder trains


def test_cnn_encoder_trained_by_critic_only():
    data = scripted_dataset(4, noise=1.5, seed=1, image_size=16)
    L = Learner(
        LearnerConfig(obs_mode="cnn", lang_mode="none", agent={"batch_size": 8, "net": {"hidden": [32, 32]}}),
        2,
        2,
        image_shape=(16, 16, 3),
    )
    L.add_offline(data)
    ag = L.agent
    b = L.sample_batch()
    total, m = ag.losses(b)
    # gradient of the actor loss alone must not reach the encoder
    ag.encoder.zero_grad(set_to_none=True)
    ag.actor.zero_grad(set_to_none=True)
    m_actor = ag.actor(ag.encoder(b["obs"]).detach())
    m_actor[0].sum().backward()
    assert all(p.grad is None for p in ag.encoder.parameters())
    L.update(1)


def test_minilm_language_embedding_cached():
    from robofume_ros.rl.language import LanguageTable

    t = LanguageTable("minilm")
    i = t.index("open the drawer")
    j = t.index("close the drawer")
    assert t.index("open the drawer") == i and j != i and t.table.shape == (2, 384)
    e = t.embed(["open the drawer", "close the drawer"])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    assert 0.3 < float(e[0] @ e[1]) < 0.999


@pytest.mark.parametrize("algo", ["calql", "iql"])
def test_fresh_critics_start_at_the_offline_mean_mc_return(algo, tmp_path):
    data = scripted_dataset(10, seed=0)

    def values(q_init):
        L = Learner(LearnerConfig(algo=algo, lang_mode="none", seed=0, q_init=q_init), 2, 2)
        L.add_offline(data)
        b = L.offline.gather(np.arange(len(L.offline)))
        obs = {"proprio": torch.from_numpy(b["obs"]["proprio"]), "lang": torch.zeros(len(L.offline), 0)}
        q = L.agent.q_values(obs, torch.from_numpy(b["actions"]))
        q_target = L.agent.target_critic(L.agent.encoder(obs), torch.from_numpy(b["actions"])[:, None]).min(0).values
        v = L.agent.value(L.agent.encoder(obs)).detach() if algo == "iql" else None
        return L, float(b["mc_returns"].mean()), q, q_target, v

    L, mc, q, q_t, v = values("mc_mean")
    assert mc < -1.0  # the point-mass data has a clearly negative mean return
    assert abs(float(q.mean()) - mc) < 0.05 * abs(mc) and abs(float(q_t.mean()) - mc) < 0.05 * abs(mc)
    if v is not None:
        assert abs(float(v.mean()) - mc) < 0.5 * abs(mc)  # V's output gain is 1: noisier, same offset
    _, _, q0, _, _ = values("zero")
    assert abs(float(q0.mean())) < 0.05 * abs(mc)
    # a resumed learner keeps its trained critics: no re-offset when statistics come from the checkpoint
    L.update(2)
    L.agent.critic.b_out.data.fill_(123.0)
    L.save(tmp_path / "ck.pt")
    L2 = Learner.load(tmp_path / "ck.pt")
    L2.add_offline(data, fit_stats=False)
    assert float(L2.agent.critic.b_out[0, 0, 0]) == 123.0
    with pytest.raises(ValueError, match="q_init"):
        Learner(LearnerConfig(q_init="ones"), 2, 2)


def test_agent_option_changes_the_running_agent_and_survives_a_checkpoint(tmp_path):
    L = Learner(LearnerConfig(algo="calql", lang_mode="none", seed=0), 2, 2)
    L.add_offline(scripted_dataset(4, seed=0))
    assert L.agent.cfg.bc_weight == 0.1
    L.set_agent_option("bc_weight", 0.005)
    assert L.agent.cfg.bc_weight == 0.005 and L.update()["bc_loss"].isfinite()
    L.save(tmp_path / "ck.pt")
    assert Learner.load(tmp_path / "ck.pt").agent.cfg.bc_weight == 0.005
    with pytest.raises(ValueError, match="no option"):
        L.set_agent_option("bc_wieght", 0.0)


def test_iql_actor_density_stays_finite_for_saturated_data_actions():
    from robofume_ros.rl.iql import squashed_mean_log_prob

    mean = torch.zeros(3, 2, requires_grad=True)
    log_std = torch.zeros(3, 2)
    a = torch.tensor([[1.0, -1.0], [0.5, 0.0], [-1.0, 1.0]])
    lp = squashed_mean_log_prob(mean, log_std, a)
    ref = torch.distributions.Normal(torch.tanh(mean), log_std.exp()).log_prob(a).sum(-1)
    torch.testing.assert_close(lp, ref)
    lp.sum().backward()
    assert mean.grad.abs().max() <= 1.0  # a = +-1 pulls the mean, it does not dominate the loss


def test_calql_bc_term_can_skip_failed_episodes():
    """bc_only_successful: the actor's BC loss averages over transitions of successful episodes only
    (the replay's per-transition success flag: its episode got more than the failure reward)."""
    L = Learner(LearnerConfig(algo="calql", lang_mode="none", seed=0, agent={"batch_size": 8}), 2, 2)
    L.add_offline(scripted_dataset(4, seed=0))
    agent = L.agent
    batch = L.sample_batch()
    batch["success"] = torch.tensor([0.0] * 4 + [1.0] * 4)
    with torch.no_grad():
        mean, _ = agent.actor(agent.encoder(batch["obs"]))
    per = ((torch.tanh(mean) - batch["actions"]) ** 2).mean(-1)
    _, m = agent.losses(batch)
    torch.testing.assert_close(m["bc_loss"], per.mean())
    L.set_agent_option("bc_only_successful", True)
    _, m = agent.losses(batch)
    torch.testing.assert_close(m["bc_loss"], per[4:].mean())
    assert float(m["bc_share"]) == 0.5
    batch["success"] = torch.zeros(8)
    _, m = agent.losses(batch)
    assert float(m["bc_loss"]) == 0.0 and float(m["bc_share"]) == 0.0


@pytest.mark.parametrize("drop", [0.0, 1.0])
def test_actor_proprio_dropout_hides_the_hand_from_the_actor_only(drop):
    """actor_proprio_dropout: the actor's proprioception inputs are zeroed (their mean after
    normalisation) for that share of the batch; the critic still sees them."""
    L = Learner(
        LearnerConfig(
            algo="calql", lang_mode="onehot", seed=0, agent={"batch_size": 16, "actor_proprio_dropout": drop}
        ),
        2,
        2,
    )
    L.add_offline(scripted_dataset(4, seed=0))
    agent = L.agent
    batch = L.sample_batch()
    sl = agent.encoder.proprio_slice
    z = agent.encoder(batch["obs"])
    torch.testing.assert_close(
        z[:, sl], (batch["obs"]["proprio"] - agent.encoder.proprio_mean) / agent.encoder.proprio_std
    )
    total, _ = agent.losses(batch)
    total.backward()
    g_actor = agent.actor.net[0].weight.grad
    g_critic = agent.critic.w_z.grad
    assert g_critic[:, sl].abs().sum() > 0
    assert (g_actor[:, sl].abs().sum() == 0) == (drop == 1.0)
    assert g_actor[:, sl.stop :].abs().sum() > 0  # the instruction still reaches the actor


def test_learner_n_step_targets_survive_a_checkpoint(tmp_path):
    L = Learner(LearnerConfig(algo="calql", lang_mode="none", seed=0, agent={"batch_size": 64}), 2, 2)
    L.set_n_step(3)
    L.add_offline(scripted_dataset(4, seed=0))
    g = L.agent_cfg.gamma
    disc = L.sample_batch()["discounts"].numpy()
    assert np.isclose(disc, g**3).any()
    assert all(np.isclose(d, [0.0, g, g**2, g**3]).any() for d in disc)
    with pytest.raises(ValueError, match="before adding data"):
        L.set_n_step(1)
    L.update(1)
    L.save(tmp_path / "l.pt")
    L2 = Learner.load(tmp_path / "l.pt")
    assert L2.cfg.n_step == 3 and L2.reward_spec.n_step == 3


def _mixed_calql_batch():
    """A Cal-QL learner with offline data and one online episode, and one mixed batch of 8 rows
    (4 offline, then 4 online)."""
    data = scripted_dataset(4, seed=0)
    L = Learner(LearnerConfig(algo="calql", lang_mode="none", seed=0, agent={"batch_size": 8}), 2, 2)
    L.add_offline(data)
    L.add_episode(data[0])
    return L, L.agent, L.sample_batch()


def test_calql_bc_term_can_leave_out_online_data():
    """bc_online=False: the actor's BC loss averages over the batch's offline rows only (sample_mixed
    marks the online rows), still restricted to successful episodes when that is on too."""
    L, agent, batch = _mixed_calql_batch()
    np.testing.assert_array_equal(batch["online"].numpy(), [0.0] * 4 + [1.0] * 4)  # online_ratio 0.5
    batch["success"] = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    with torch.no_grad():
        mean, _ = agent.actor(agent.encoder(batch["obs"]))
    per = ((torch.tanh(mean) - batch["actions"]) ** 2).mean(-1)
    L.set_agent_option("bc_online", False)
    _, m = agent.losses(batch)
    torch.testing.assert_close(m["bc_loss"], per[:4].mean())
    L.set_bc_only_successful(True)
    _, m = agent.losses(batch)
    torch.testing.assert_close(m["bc_loss"], per[[0, 2, 3]].mean())
    L.set_agent_option("bc_online", True)
    _, m = agent.losses(batch)
    torch.testing.assert_close(m["bc_loss"], per[[0, 2, 3, 4, 5, 7]].mean())


def test_learner_restricts_each_algorithms_bc_term():
    for algo, option in (("calql", "bc_only_successful"), ("cql", "bc_only_successful"), ("bc", "only_successful")):
        L = Learner(LearnerConfig(algo=algo, lang_mode="none"), 2, 2)
        L.set_bc_only_successful(True)
        assert getattr(L.agent.cfg, option) is True and L.cfg.agent[option] is True
    with pytest.raises(ValueError, match="no behaviour-cloning"):
        Learner(LearnerConfig(algo="iql", lang_mode="none"), 2, 2).set_bc_only_successful(True)
