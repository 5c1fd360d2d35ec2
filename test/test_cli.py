"""The `robofume` command line dispatches to every tool it lists."""

import numpy as np
import pytest

from robofume_ros import cli
from robofume_ros.data.dataset import DatasetWriter
from robofume_ros.data.episode import Episode


def test_help_lists_commands(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for cmd in ("launch", "main", "params", "topic", "dataset", "pretrain", "reward"):
        assert cmd in out


def test_every_delegate_resolves():
    import importlib

    targets = list(cli.DELEGATES.values()) + [t for t, _ in cli.DATASET.values()] + [t for t, _ in cli.REWARD.values()]
    for t in targets:
        mod, fn = t.split(":")
        assert callable(getattr(importlib.import_module(mod), fn)), t


def test_dataset_info_through_the_cli(tmp_path, capsys):
    w = DatasetWriter(tmp_path / "ds", fsync=False)
    T = 5
    w.append(
        Episode(
            images=np.zeros((T + 1, 8, 8, 3), np.uint8),
            proprio=np.zeros((T + 1, 4), np.float32),
            actions=np.zeros((T, 4), np.float32),
            rewards=-np.ones(T, np.float32),
            terminals=np.zeros(T, bool),
            instruction="open the drawer",
            task="drawer-open",
            source="failure",
        )
    )
    w.close()
    assert cli.main(["dataset", "info", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "drawer-open" in out and "failure" in out


def test_params_lists_every_node(capsys):
    assert cli.main(["params"]) == 0
    out = capsys.readouterr().out
    for exe in ("sim_node", "camera_node", "policy_node", "reward_node", "learner_node", "task_switcher_node"):
        assert f"{exe}:" in out


def test_unknown_commands_fail_clearly(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["dataset", "nope"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["launch", "sim", "world=drawer"])  # launch arguments are name:=value
