"""Checkpoints, resume, policy inference and weight push (robofume_ros.rl.checkpoint / learner / policy)."""

import numpy as np
import pytest
import torch

from robofume_ros.rl.checkpoint import CheckpointError, load_checkpoint
from robofume_ros.rl.learner import Learner, LearnerConfig
from robofume_ros.rl.pointmass import INSTRUCTION, scripted_dataset
from robofume_ros.rl.policy import Policy

torch.set_num_threads(1)
SMALL = {"batch_size": 32, "net": {"hidden": [32, 32]}}


@pytest.fixture(scope="module")
def data():
    return scripted_dataset(8, noise=1.5, seed=0, image_size=16)


def make(data, algo="calql", obs_mode="state", **kw):
    extra = {"cql_n_actions": 4} if algo in ("calql", "cql", "sac") else {}
    cfg = LearnerConfig(algo=algo, obs_mode=obs_mode, lang_mode="onehot", seed=3, agent=dict(SMALL, **extra, **kw))
    L = Learner(cfg, 2, 2, image_shape=(16, 16, 3))
    L.add_offline(data)
    return L


def params(L):
    return {f"{n}.{k}": v.clone() for n, m in L.agent.modules.items() for k, v in m.state_dict().items()}


@pytest.mark.parametrize(
    "algo,obs_mode", [("calql", "state"), ("calql", "cnn"), ("iql", "state"), ("bc", "cnn"), ("sac", "state")]
)
def test_roundtrip_and_resume_bit_exact(tmp_path, data, algo, obs_mode):
    L = make(data, algo, obs_mode)
    L.update(3)
    L.save(tmp_path / "c.pt")
    L.update(4)
    ref = params(L)
    R = Learner.load(tmp_path / "c.pt")
    assert R.step == 3
    R.add_offline(data, fit_stats=False)
    R.update(4)
    got = params(R)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    # optimiser state survives too
    sd1, sd2 = L.agent.state_dict()["optimizers"], R.agent.state_dict()["optimizers"]
    for name in sd1:
        for pid, st in sd1[name]["state"].items():
            for key, v in st.items():
                assert torch.equal(v, sd2[name]["state"][pid][key])


def test_missing_corrupt_and_mismatched(tmp_path, data):
    with pytest.raises(CheckpointError, match="not found") as e:
        Learner.load(tmp_path / "nope.pt")
    assert "nope.pt" in str(e.value)
    L = make(data)
    p = tmp_path / "c.pt"
    L.save(p)
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "flip.pt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum") as e:
        Learner.load(tmp_path / "flip.pt")
    assert "flip.pt" in str(e.value)
    (tmp_path / "trunc.pt").write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="trunc.pt.*(corrupt|truncated)"):
        Learner.load(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"hello world")
    with pytest.raises(CheckpointError, match="junk.pt.*header"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="mismatched config: algo='calql' in checkpoint vs 'iql'"):
        Learner.load(p, expect=LearnerConfig(algo="iql", lang_mode="onehot"))
    with pytest.raises(CheckpointError, match="mismatched data dimensions: proprio_dim=2"):
        Learner.load(p, dims={"proprio_dim": 7})


def test_policy_load_act_and_weight_push(tmp_path, data):
    L = make(data, obs_mode="cnn")
    L.update(2)
    L.save(tmp_path / "c.pt")
    pol = Policy.load(tmp_path / "c.pt")
    ep = data[0]
    a_det = pol.act(ep.images[0], ep.proprio[0], INSTRUCTION, deterministic=True)
    assert a_det.shape == (2,) and a_det.dtype == np.float32 and np.all(np.abs(a_det) <= 1)
    np.testing.assert_array_equal(a_det, pol.act(ep.images[0], ep.proprio[0], INSTRUCTION, True))
    a_sto = [pol.act(ep.images[0], ep.proprio[0], INSTRUCTION, deterministic=False) for _ in range(3)]
    assert not np.allclose(a_sto[0], a_sto[1])
    # same as the learner's own deterministic action
    ref = L.act({"image": ep.images[:1], "proprio": ep.proprio[:1], "instruction": [INSTRUCTION]})[0]
    np.testing.assert_allclose(a_det, ref, atol=1e-6)
    # learner trains on, pushes new weights as bytes; the policy follows
    L.update(3)
    blob = L.export_policy()
    assert isinstance(blob, bytes)
    pol.load_weights(blob)
    ref2 = L.act({"image": ep.images[:1], "proprio": ep.proprio[:1], "instruction": [INSTRUCTION]})[0]
    np.testing.assert_allclose(pol.act(ep.images[0], ep.proprio[0], INSTRUCTION), ref2, atol=1e-6)
    assert pol.step == L.step
    # a flat state dict works as well; a mismatched one gives a clear error
    pol.load_weights(L.agent.policy_state_dict())
    with pytest.raises(CheckpointError, match="do not fit"):
        pol.load_weights(make(data, obs_mode="state").agent.policy_state_dict())


def test_a_policy_refuses_observations_unlike_its_spec(tmp_path):
    """The checkpoint carries its observation spec; an observation of another shape is refused with
    an error naming the field, never acted on."""
    import numpy as np
    from tiny_models import tiny_learner_checkpoint
    from robofume_ros.rl import checkpoint as ckpt
    from robofume_ros.rl.policy import ObservationMismatch, Policy

    path = tiny_learner_checkpoint(tmp_path / "l.pt")
    p = ckpt.load_checkpoint(path)
    p["policy"]["obs_spec"] = {"image_shape": [100, 100, 3], "proprio_dim": 4, "feature_encoder": None}
    pol = Policy(p, "l.pt")
    img = np.zeros((100, 100, 3), np.uint8)
    a = pol.act(img, np.zeros(4, np.float32), "open the drawer")
    assert a.shape == (4,) and np.all(np.abs(a) <= 1)
    with pytest.raises(ObservationMismatch, match="proprioception has 3 values, the policy was trained on 4"):
        pol.act(img, np.zeros(3, np.float32), "open the drawer")
    with pytest.raises(ObservationMismatch, match="image is 50x50x3, the policy was trained on 100x100x3"):
        pol.act(np.zeros((50, 50, 3), np.uint8), np.zeros(4, np.float32), "open the drawer")
    with pytest.raises(ObservationMismatch, match="NaN or Inf"):
        pol.act(img, np.array([0, np.nan, 0, 0], np.float32), "open the drawer")
    # the learner checks what it stores with the same function
    from robofume_ros.rl.policy import check_observation

    check_observation(p["policy"]["obs_spec"], img, np.zeros(4))
    with pytest.raises(ObservationMismatch, match="proprioception has 3 values"):
        check_observation(p["policy"]["obs_spec"], img, np.zeros(3))
