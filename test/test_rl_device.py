"""Where the learner trains: auto falls back to the CPU, an unavailable CUDA device is a clear
error before anything runs (pre-training, the main job, the learner node)."""

import pytest
import torch

from robofume_ros.rl.device import DeviceError, resolve_device


def test_auto_cpu_and_clear_errors():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        for spec in ("cuda", "cuda:1"):
            with pytest.raises(DeviceError, match=f"device '{spec}' requested, but torch sees no CUDA GPU"):
                resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where there is no GPU")
def test_pretrain_and_main_job_refuse_a_missing_gpu(tmp_path, capsys):
    from robofume_ros.cli import main as robofume

    rc = robofume(["pretrain", "--synthetic", "pointmass", "--out", str(tmp_path / "p"), "--device", "cuda"])
    assert rc == 2 and "torch sees no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # nothing ran
    with pytest.raises(SystemExit, match="torch sees no CUDA GPU"):
        robofume(["main", "--quick", "--device", "cuda", "--out", str(tmp_path / "m")])
    assert not (tmp_path / "m").exists()


def test_a_learner_on_the_cpu_trains_and_its_weights_load_on_the_cpu(tmp_path):
    from tiny_models import tiny_learner_checkpoint

    from robofume_ros.rl.learner import Learner
    from robofume_ros.rl.policy import Policy

    ckpt = tiny_learner_checkpoint(tmp_path / "learner.pt")
    L = Learner.load(ckpt, device=resolve_device("auto"))
    assert next(L.agent.actor.parameters()).device.type == L.device.split(":")[0]
    (tmp_path / "w.pt").write_bytes(L.export_policy())
    pol = Policy.load(tmp_path / "w.pt")  # an actor on the robot PC: always CPU tensors
    assert all(p.device.type == "cpu" for p in pol.actor.parameters())
