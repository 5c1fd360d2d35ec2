import errno
import json

import numpy as np
import pytest

from robofume_ros.data import dataset as D
from robofume_ros.data.dataset import (
    DatasetFullError,
    DatasetVersionError,
    DatasetWriter,
    TransitionSampler,
    dataset_info,
    load_episodes,
)
from test_data_helpers import random_episode


def _same(a, b):
    for n in ("images", "proprio", "actions", "rewards", "terminals"):
        np.testing.assert_array_equal(getattr(a, n), getattr(b, n), err_msg=n)
    assert (a.instruction, a.task, a.source, a.success) == (b.instruction, b.task, b.source, b.success)


def test_round_trip_mmap_and_optional_fields(tmp_path):
    eps = [
        random_episode(T=5 + i, seed=i, source=s, success=i % 2 == 0)
        for i, s in enumerate(["prior", "target_demo", "failure", "online"])
    ]
    eps[0].features = np.ones((6, 8), np.float32)
    eps[1].success_gt = np.zeros(7, bool)
    eps[2].provenance = {"bag": "x", "t": np.int64(3)}
    with DatasetWriter(tmp_path / "ds") as w:
        for e in eps:
            w.append(e)
    got = load_episodes(tmp_path / "ds")
    assert len(got) == 4
    for a, b in zip(eps, got):
        _same(a, b)
    assert isinstance(got[0].images, np.memmap)
    np.testing.assert_array_equal(got[0].features, eps[0].features)
    assert got[1].success_gt is not None and got[0].success_gt is None
    assert got[2].provenance == {"bag": "x", "t": 3}
    assert not isinstance(load_episodes(tmp_path / "ds", mmap=False)[0].images, np.memmap)
    assert [e.source for e in load_episodes(tmp_path / "ds", sources=["prior", "failure"])] == ["prior", "failure"]
    with pytest.raises(ValueError, match="unknown source"):
        load_episodes(tmp_path / "ds", sources="bogus")


def test_append_reopens_and_keeps_numbering(tmp_path):
    DatasetWriter(tmp_path / "ds").append(random_episode(seed=1))
    w = DatasetWriter(tmp_path / "ds")
    d = w.append(random_episode(seed=2))
    assert d.name == "ep_000001"
    assert len(load_episodes(tmp_path / "ds")) == 2


def test_stale_temp_dir_is_ignored_and_swept(tmp_path):
    DatasetWriter(tmp_path / "ds").append(random_episode(seed=1))
    stale = tmp_path / "ds" / "episodes" / ".tmp-dead"
    stale.mkdir()
    (stale / "images.npy").write_bytes(b"half")
    assert len(load_episodes(tmp_path / "ds")) == 1  # readers ignore it
    DatasetWriter(tmp_path / "ds")  # writers sweep it
    assert not stale.exists()


def test_version_mismatch_is_a_clear_error(tmp_path):
    DatasetWriter(tmp_path / "ds").append(random_episode())
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    meta["version"] = 99
    (tmp_path / "ds" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetVersionError, match="version 99.*reads version 1"):
        load_episodes(tmp_path / "ds")
    with pytest.raises(DatasetVersionError):
        DatasetWriter(tmp_path / "ds")
    with pytest.raises(D.DatasetError, match="not a robofume dataset"):
        load_episodes(tmp_path)


def test_disk_full_keeps_earlier_episodes(tmp_path, monkeypatch):
    w = DatasetWriter(tmp_path / "ds")
    w.append(random_episode(seed=1))
    w.append(random_episode(seed=2))
    real = DatasetWriter._save
    calls = {"n": 0}

    def full(self, file, arr):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, file, arr)

    monkeypatch.setattr(DatasetWriter, "_save", full)
    with pytest.raises(DatasetFullError, match="disk full.*intact") as ei:
        w.append(random_episode(seed=3))
    assert ei.value.errno == errno.ENOSPC
    monkeypatch.setattr(DatasetWriter, "_save", real)
    got = load_episodes(tmp_path / "ds")
    assert len(got) == 2
    _same(got[1], random_episode(seed=2))
    assert not list((tmp_path / "ds" / "episodes").glob(".tmp-*"))
    w.append(random_episode(seed=4))  # works again once there is space
    assert len(load_episodes(tmp_path / "ds")) == 3


def test_info_and_sampler(tmp_path):
    w = DatasetWriter(tmp_path / "ds")
    w.append(random_episode(T=4, seed=1, source="target_demo", success=True))
    w.append(random_episode(T=6, seed=2, source="failure"))
    info = dataset_info(tmp_path / "ds")
    assert info["episodes"] == 2 and info["transitions"] == 10 and info["version"] == D.VERSION
    assert {(g["source"], g["success_rate"]) for g in info["groups"]} == {("target_demo", 1.0), ("failure", 0.0)}
    eps = load_episodes(tmp_path / "ds")
    s = TransitionSampler(eps, seed=0)
    assert len(s) == 10
    b = s.sample(64)
    assert b["obs"].shape == (64, 16, 16, 3) and b["obs"].dtype == np.uint8
    assert b["actions"].shape == (64, 4)
    # next_obs really is o_{t+1} of the same episode
    for i in range(64):
        e = eps[b["episode"][i]]
        t = [t for t in range(len(e)) if np.array_equal(e.actions[t], b["actions"][i])][0]
        np.testing.assert_array_equal(b["next_obs"][i], e.images[t + 1])
        assert b["rewards"][i] == e.rewards[t]


def test_corrupt_episode_files_give_errors_naming_the_file(tmp_path):
    """A truncated array, a meta.json that claims another length, an unreadable meta.json: one clear
    DatasetError naming the file, never a bare numpy error or a silently wrong dataset."""
    import json

    from robofume_ros.data.dataset import DatasetError, dataset_info, load_episode, load_episodes

    with DatasetWriter(tmp_path / "ds") as w:
        for k in range(3):
            w.append(random_episode(T=10, seed=k))
    eps = sorted((tmp_path / "ds" / "episodes").iterdir())
    assert dataset_info(tmp_path / "ds")["transitions"] == 30
    # images.npy cut in half
    img = eps[0] / "images.npy"
    img.write_bytes(img.read_bytes()[: img.stat().st_size // 2])
    with pytest.raises(DatasetError, match=f"{img}: cannot be read, truncated or corrupt"):
        load_episode(eps[0])
    with pytest.raises(DatasetError, match="images.npy: cannot be read"):
        load_episodes(tmp_path / "ds")
    # meta.json claiming a million steps
    meta = json.loads((eps[1] / "meta.json").read_text())
    meta["length"] = 10**6
    (eps[1] / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="says 1000000 steps but .*actions.npy holds 10"):
        dataset_info(tmp_path / "ds")
    with pytest.raises(DatasetError, match="says 1000000 steps"):
        load_episode(eps[1])
    # meta.json that is not JSON
    (eps[2] / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="meta.json cannot be read"):
        load_episode(eps[2])
