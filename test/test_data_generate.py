"""`robofume dataset generate` on a tiny config: sources, labels, ground truth, determinism."""

import json

import numpy as np
import pytest

pytest.importorskip("metaworld")

from robofume_ros.data.dataset import dataset_info, load_episodes
from robofume_ros.data.generate import GenerateConfig, generate, main
from robofume_ros.sim import PAIRS

TINY = dict(
    prior_tasks=2, prior_episodes=1, demos=1, failures=2, failure_length=12, image_size=(32, 32), progress=False
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "a"
    generate(GenerateConfig(out=str(out), seed=3, bags=True, **TINY))
    return out


def test_sources_labels_and_ground_truth(tiny):
    info = dataset_info(tiny)
    by = {}
    for m in info["episode_meta"]:
        by.setdefault(m["source"], []).append(m)
    assert {s: len(v) for s, v in by.items()} == {"target_demo": 2, "failure": 2, "prior": 2}
    pair = PAIRS["drawer"]
    assert sorted(m["task"] for m in by["target_demo"]) == sorted(pair.tasks)
    assert not {m["task"] for m in by["prior"]} & set(pair.tasks)
    for ep in load_episodes(tiny, sources="target_demo"):
        assert ep.success and ep.images.shape[1:] == (32, 32, 3)
        np.testing.assert_array_equal(ep.rewards[-3:], 0)
        assert (ep.rewards[:-3] == -1).all()
        assert ep.terminals[-3:].all() and not ep.terminals[:-3].any()
        assert ep.success_gt[-3:].all() and not ep.success_gt[0]  # starts undone, ends done
        assert len(ep) <= 250
    for ep in load_episodes(tiny, sources="failure"):
        assert not ep.success and (ep.rewards == -1).all() and not ep.terminals.any()
        assert not ep.success_gt.any(), "a failure episode reached its task by ground truth"
        assert len(ep) == 12 and ep.task in pair.tasks
    for ep in load_episodes(tiny, sources="prior"):
        assert ep.success and ep.success_gt[-1] and len(ep) <= 200
    # reset-free: the backward demo starts in the scene the forward one left (drawer open, so
    # not done) with the arm homed in between (home (0, 0.6, 0.2) +- 3 cm per axis)
    demos = load_episodes(tiny, sources="target_demo")
    assert demos[0].provenance["phase"] == "forward" and demos[1].provenance["phase"] == "backward"
    for ep in demos[:2]:
        np.testing.assert_array_less(np.abs(ep.proprio[0, :3] - [0.0, 0.6, 0.2]), 0.03 + 0.01)
    assert demos[0].success_gt[-1] and not demos[1].success_gt[0]
    summary = json.loads((tiny / "generate.json").read_text())
    assert summary["by_source"]["target_demo"]["episodes"] == 2


def test_deterministic_given_the_seed(tiny, tmp_path):
    b = tmp_path / "b"
    assert (
        main(
            [
                "-o",
                str(b),
                "--seed",
                "3",
                "--prior-tasks",
                "2",
                "--prior-episodes",
                "1",
                "--demos",
                "1",
                "--failures",
                "2",
                "--failure-length",
                "12",
                "--image-size",
                "32",
                "32",
                "--no-progress",
            ]
        )
        == 0
    )
    ea, eb = load_episodes(tiny), load_episodes(b)
    assert len(ea) == len(eb)
    for x, y in zip(ea, eb):
        assert (x.source, x.task, len(x)) == (y.source, y.task, len(y))
        for name in ("images", "proprio", "actions", "rewards", "terminals", "success_gt"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
    assert main(["-o", str(b), "--quick"]) == 2  # never writes into an existing dataset


def test_another_seed_gives_other_data(tiny, tmp_path):
    c = tmp_path / "c"
    generate(GenerateConfig(out=str(c), seed=4, **{**TINY, "prior_tasks": 1, "failures": 1}))
    a = load_episodes(tiny, sources="target_demo")[0]
    b = load_episodes(c, sources="target_demo")[0]
    assert len(a) != len(b) or not np.array_equal(a.actions, b.actions)


def test_bags_convert_back_to_the_same_target_demos(tiny, tmp_path):
    from robofume_ros.data.convert import convert_bags

    rep = convert_bags([tiny / "bags" / "target_demo"], tmp_path / "conv", source="target_demo", progress=False)
    assert rep.episodes == 2 and not rep.errors
    for x, y in zip(load_episodes(tiny, sources="target_demo"), load_episodes(tmp_path / "conv")):
        for name in ("images", "actions", "rewards", "terminals", "success_gt"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
        np.testing.assert_allclose(x.proprio, y.proprio)


def test_collect_appends_new_episodes_in_the_datasets_scene(tiny, tmp_path):
    """`robofume dataset collect` appends demos (per direction) or failures to a dataset: the same
    pair, scene and image size as its target data, noise of their own (never the generated
    episodes again), every attempt reported; a stop keeps what was written; another pair is refused."""
    import shutil

    from robofume_ros.data.dataset import dataset_pair
    from robofume_ros.data.generate import collect, collect_main

    d = tmp_path / "d"
    shutil.copytree(tiny, d)
    seen = []
    rec = collect("demos", d, episodes=1, seed=0, on_attempt=lambda task, kept: seen.append((task, kept)))
    assert rec["counts"]["episodes"] == 2 and [t for t, k in seen if k] == list(PAIRS["drawer"].tasks)
    old, new = load_episodes(tiny, sources="target_demo"), load_episodes(d, sources="target_demo")[2:]
    assert len(new) == 2 and all(ep.success and ep.images.shape[1:] == (32, 32, 3) for ep in new)
    assert all(ep.provenance["seed"] == 3 for ep in new)  # the dataset's scene
    for a, b in zip(old, new):
        assert a.task == b.task and (len(a) != len(b) or not np.array_equal(a.actions, b.actions))
    assert dataset_info(d)["episodes"] == 8

    class Stop(Exception):
        pass

    def stop(task, kept):
        raise Stop()

    with pytest.raises(Stop):
        collect("failures", d, episodes=5, seed=1, on_attempt=stop)
    log = json.loads((d / "collect.json").read_text())
    assert [r["kind"] for r in log] == ["demos", "failures"] and "Stop" in log[1]["stopped"]
    assert dataset_info(d)["episodes"] == 8 + log[1]["counts"]["episodes"]

    with pytest.raises(ValueError, match="holds pair 'drawer'"):
        collect("failures", d, pair="window")
    with pytest.raises(ValueError, match="kind must be"):
        collect("resets", d)
    # a new folder is a dataset of its own: its pair and scene recorded as a generated one's
    assert collect_main(["failures", "-o", str(tmp_path / "new"), "--pair", "window", "--episodes", "1"]) == 0
    assert dataset_pair(tmp_path / "new") == "window"
    (ep,) = load_episodes(tmp_path / "new")
    assert ep.source == "failure" and not ep.success_gt.any() and ep.task in PAIRS["window"].tasks
