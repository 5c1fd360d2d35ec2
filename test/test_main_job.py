"""`robofume main --quick --pair P` for a pair other than drawer: the whole pipeline (data, reward,
pre-training, the fine-tuning graph, OOO retraining, evaluation, report) names and uses that pair,
with the recipe's settings and time limits from the pair's own demos."""

import json

import pytest
import yaml

from robofume_ros import cli, recipe


def test_unknown_pair_or_recipe_fails_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit, match="unknown reset-free pair 'nope'"):
        cli.main(["main", "--quick", "--pair", "nope", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="unknown recipe 'nope'"):
        cli.main(["main", "--quick", "--recipe", "nope", "--out", str(tmp_path / "b")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_quick_main_job_on_the_window_pair(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["main", "--quick", "--pair", "window", "--out", str(out)]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert (
        settings["pair"] == "window"
        and settings["main"]["pretrain_steps"] == recipe.main_params("quick").pretrain_steps
    )
    assert "longest target demo" in settings["time_limits_from"]
    g = yaml.safe_load((out / "finetune" / "graph.yaml").read_text())
    assert g["arguments"]["world"] == "window" and g["task"]["pair"]["name"] == "window"
    nodes = {n["name"]: n for n in g["nodes"]}
    sw = nodes["task_switcher"]["parameters"]
    assert (sw["forward_task"], sw["backward_task"]) == ("window-open", "window-close")
    assert [sw["max_episode_steps"], sw["backward_max_episode_steps"]] == settings["time_limits"]
    assert nodes["reward"]["parameters"]["paired_instructions"] == ["open the window", "close the window"]
    # only system switches reach the graph: the tuning is the recipe's files
    assert nodes["learner"]["params_files"][1:] == settings["recipe"]
    assert set(nodes["learner"]["parameters"]) <= {
        "init_checkpoint",
        "offline_dataset",
        "budget_steps",
        "run_dir",
        "seed",
        "use_sim_time",
        "signing_key",  # the learner's weight-signing key (a path)
        "device",  # where it trains
        "backfill",  # off where the graph has no recorder
        "autostart",  # off: the lifecycle manager brings it up
    }
    # every stage used the window pair: online episodes, checkpoints, evaluations, report
    from robofume_ros.data.dataset import dataset_info

    online = dataset_info(out / "finetune" / "learner" / "online")
    assert online["episodes"] >= 1 and set(online["tasks"]) <= {"window-open", "window-close"}
    # OOO trained on the online episodes relabelled by the final reward (no person: no adapted version)
    relabel = json.loads((out / "retrain" / "online_relabelled" / "relabel.json").read_text())
    assert relabel["episodes"] == online["episodes"] and relabel["model"] == str(out / "reward")
    assert nodes["reward"]["parameters"]["adapt_dir"] == str(out / "finetune" / "reward_adapted")
    from robofume_ros.rl import checkpoint as ckpt
    from robofume_ros.rl.policy import checkpoint_pair

    for c in (
        out / "pretrain" / "checkpoint.pt",
        out / "retrain" / "checkpoint.pt",
        out / "finetune" / "learner" / "policy_latest.pt",
    ):
        payload = ckpt.load_checkpoint(c)
        assert checkpoint_pair(payload) == "window", c
        policy = payload if payload["kind"] == "robofume_rl_policy" else payload["policy"]
        spec = policy["obs_spec"]  # the observation spec travels with the policy
        assert spec["image_shape"] == [100, 100, 3] and spec["proprio_dim"] == 4, c
    for name in ("pretrained", "finetuned", "retrained"):
        r = json.loads((out / "eval" / f"{name}.json").read_text())
        assert r["setting"]["pair"] == "window" and r["setting"]["max_steps"] == settings["time_limits"]
        assert len(r["forward_trials"]) == 2 and len(r["backward_trials"]) == 2
    assert (out / "report.md").read_text().startswith("# RoboFuME on the simulated window pair")
    # the run's row in the results table (robofume report)
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row.startswith("| window | 0 | ") and row.count("|") == 9
    # the same folder cannot be resumed as another pair's run
    with pytest.raises(SystemExit, match="holds a run of pair 'window', not 'drawer'"):
        cli.main(["main", "--quick", "--pair", "drawer", "--out", str(out)])
