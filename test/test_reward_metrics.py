"""Pure parts of the reward core: metrics against hand-built predictions, threshold selection,
labels from demos/failures, episode split, debounce, relabelling and the report files."""

import json

import numpy as np
import pytest

from robofume_ros.data.episode import Episode
from robofume_ros.reward.debounce import Debouncer, debounce, first_success, frame_success
from robofume_ros.reward.labels import episode_labels, label_episodes, split_by_episode
from robofume_ros.reward.metrics import (
    average_precision,
    binary_metrics,
    evaluate_on_episodes,
    plot_pr_curve,
    plot_reliability,
    pr_curve,
    reliability,
    select_threshold,
    write_report,
)
from robofume_ros.reward.relabel import relabel_episodes


def test_binary_metrics_hand_built():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.6, 0.2, 0.7, 0.1, 0.1, 0.3, 0.2, 0.0])
    m = binary_metrics(y, p, 0.5)
    # predicted positive: .9 .8 .6 (TP) and .7 (FP); FN: .2 ; TN: 5
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 1, 5, 1)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["fp_rate"] == pytest.approx(1 / 6)
    assert m["fn_rate"] == pytest.approx(0.25)
    assert m["f1"] == pytest.approx(0.75)
    # >= is inclusive
    assert binary_metrics([1], [0.5], 0.5)["tp"] == 1
    # degenerate: no positives at all
    d = binary_metrics([0, 0], [0.1, 0.9], 0.5)
    assert d["fn_rate"] == 0.0 and d["recall"] == 0.0 and d["fp_rate"] == 0.5


def test_select_threshold_methods():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.95, 0.9, 0.6, 0.3] + [0.7] + [0.03 * i for i in range(19)])  # negatives: .7 and 0 .. .54
    # max F1 at a threshold in (.54, .6]: 3 TP, 1 FP -> 0.75 (above .7: 2 TP, 0 FP -> .667)
    t, m = select_threshold(y, p, "f1")
    assert m["tp"] == 3 and m["fp"] == 1 and 0.54 < t <= 0.6
    assert m["f1"] == pytest.approx(0.75)
    # FP cap 5% with 20 negatives: at most 1 false positive; the lowest FN is 1 (.3 missed)
    t, m = select_threshold(y, p, "fpr_cap", max_fpr=0.05)
    assert m["fp_rate"] <= 0.05 and m["fn"] == 1 and m["fp"] == 1
    # FP cap 0: no false positives allowed -> threshold above .7
    t0, m0 = select_threshold(y, p, "fpr_cap", max_fpr=0.0)
    assert m0["fp"] == 0 and t0 > 0.7 and m0["tp"] == 2
    # balanced: minimise FNR + FPR
    tb, mb = select_threshold(y, p, "balanced")
    assert mb["fn_rate"] + mb["fp_rate"] == pytest.approx(
        min(binary_metrics(y, p, t)["fn_rate"] + binary_metrics(y, p, t)["fp_rate"] for t in np.linspace(0, 1, 1001))
    )
    # perfectly separable -> threshold between the classes
    ts, ms = select_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], "fpr_cap")
    assert 0.2 < ts <= 0.8 and ms["accuracy"] == 1.0
    # the floor of the cap: the lowest threshold within it, not the middle of the tied range
    yf = [0] * 100 + [1] * 4
    pf = [i / 200 for i in range(100)] + [0.9, 0.95, 0.97, 0.98]  # negatives 0 .. .495
    tm, _ = select_threshold(yf, pf, "fpr_cap", max_fpr=0.01)
    tf, mf = select_threshold(yf, pf, "fpr_floor", max_fpr=0.01)
    assert 0.49 < tf < 0.495 + 1e-9 < tm and mf["fp"] == 1 and mf["tp"] == 4  # 1 of 100 negatives above
    assert select_threshold(yf, pf, "fpr_floor", max_fpr=0.0)[1]["fp"] == 0
    with pytest.raises(ValueError):
        select_threshold([], [], "f1")
    with pytest.raises(ValueError):
        select_threshold([1], [1.0], "magic")


def test_pr_curve_ap_and_reliability():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.7, 0.1])
    prec, rec, thr = pr_curve(y, p)
    assert rec[0] == 1.0 and prec[-1] == 1.0
    # AP = 1*0.5 (first positive at rank 1) + 2/3*0.5
    assert average_precision(y, p) == pytest.approx(0.5 + (2 / 3) * 0.5)
    assert average_precision([1, 0], [0.9, 0.1]) == pytest.approx(1.0)
    r = reliability([1, 0, 1, 0], [1.0, 0.0, 1.0, 0.0], n_bins=10)
    assert r["ece"] == pytest.approx(0.0)
    r = reliability([0, 0], [0.95, 0.95], n_bins=10)
    assert r["ece"] == pytest.approx(0.95) and r["count"][9] == 2


def test_plots_and_report(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    p = np.clip(y * 0.6 + rng.random(200) * 0.5, 0, 1)
    plot_pr_curve(y, p, tmp_path / "pr.png", threshold=0.5)
    plot_reliability(y, p, tmp_path / "rel.png")
    assert (tmp_path / "pr.png").stat().st_size > 1000 and (tmp_path / "rel.png").stat().st_size > 1000
    rep = {
        "model_id": "m",
        "threshold": 0.5,
        "metrics": {"heldout_labels": binary_metrics(y, p, 0.5)},
        "figures": ["pr.png"],
        "arr": np.zeros(3),
        "nested": {"x": np.float32(1.5)},
    }
    jp, mp = write_report(tmp_path, rep)
    j = json.loads(jp.read_text())
    assert j["metrics"]["heldout_labels"]["n"] == 200 and j["nested"]["x"] == 1.5 and "arr" not in j
    md = mp.read_text()
    assert "| heldout_labels | 200 |" in md and "FP rate" in md and "![pr.png](pr.png)" in md


def make_episode(T=10, source="target_demo", success=True, instruction="open the drawer", gt=None, seed=0):
    rng = np.random.default_rng(seed)
    return Episode(
        images=rng.integers(0, 255, (T + 1, 8, 8, 3), dtype=np.uint8),
        proprio=np.zeros((T + 1, 4), np.float32),
        actions=np.zeros((T, 4), np.float32),
        rewards=-np.ones(T, np.float32),
        terminals=np.zeros(T, bool),
        instruction=instruction,
        task="drawer-open",
        source=source,
        success=success,
        success_gt=None if gt is None else np.asarray(gt, bool),
    )


def test_labels_from_demos_and_failures_only():
    gt = np.zeros(11, bool)  # ground truth says never successful: it must NOT be used for labels
    demo = make_episode(10, "target_demo", True, gt=gt)
    t, y = episode_labels(demo, k=3, neg_demo_frac=0.5)
    assert list(t[y == 1]) == [8, 9, 10] and list(t[y == 0]) == [0, 1, 2, 3, 4]
    fail = make_episode(10, "failure", False)
    t, y = episode_labels(fail)
    assert len(t) == 11 and not y.any()
    t, y = episode_labels(fail, failure_stride=5)
    assert list(t) == [0, 5, 10]
    unsuccessful_demo = make_episode(10, "target_demo", False)
    t, y = episode_labels(unsuccessful_demo)
    assert len(t) == 11 and not y.any()
    online = make_episode(10, "online", True)
    t, y = episode_labels(online)
    assert len(t) == 0
    short = make_episode(2, "target_demo", True)
    t, y = episode_labels(short, k=5, neg_demo_frac=0.9)
    assert y.sum() == 3 and len(t) == 3
    fs = label_episodes([demo, fail, online], k=3)
    assert len(fs) == 8 + 11 and fs.n_pos == 3 and set(fs.episode) == {0, 1}
    assert fs.images.shape == (19, 8, 8, 3) and fs.instructions[0] == "open the drawer"
    assert len(fs.subset([0, 1])) == 2


def test_split_by_episode_is_stratified_and_disjoint():
    eps = (
        [make_episode(5, "target_demo", True, seed=i) for i in range(10)]
        + [make_episode(5, "failure", False, seed=i) for i in range(5)]
        + [make_episode(5, "target_demo", True)]
    )
    eps[-1].task = "drawer-close"
    tr, va = split_by_episode(eps, val_frac=0.2, seed=0)
    assert not set(tr) & set(va) and sorted(tr + va) == list(range(16))
    assert sum(eps[i].source == "failure" for i in va) == 1
    assert sum(eps[i].source == "target_demo" for i in va) == 2
    assert 15 in tr  # a singleton group stays in training
    assert split_by_episode(eps, 0.2, seed=0) == (tr, va)


def test_debounce():
    f = [1, 0, 1, 1, 0, 1, 1, 1, 1]
    assert list(debounce(f, 1)) == [bool(x) for x in f]
    assert list(debounce(f, 2)) == [0, 0, 0, 1, 0, 0, 1, 1, 1]
    assert list(debounce(f, 3)) == [0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert first_success(f, 3) == 7 and first_success(f, 5) is None and first_success([], 2) is None
    d = Debouncer(2)
    assert [d.update(x) for x in f] == list(debounce(f, 2))
    d.reset()
    assert d.update(True) is False
    with pytest.raises(ValueError):
        Debouncer(0)


def test_frame_success_vetoes_frames_done_for_both_tasks_of_a_pair():
    assert frame_success(0.8, 0.7) and not frame_success(0.6, 0.7) and frame_success(0.7, 0.7)
    assert frame_success(0.8, 0.7, p_paired=0.69)  # the paired task is not done: success
    assert not frame_success(0.8, 0.7, p_paired=0.7)  # done for both: the model cannot tell
    assert not frame_success(0.6, 0.7, p_paired=0.1)
    assert not frame_success(float("nan"), 0.7) and frame_success(0.9, 0.7, p_paired=float("nan"))


class StubModel:
    """P(success) = mean red of the frame / 255."""

    model_id = "stub"
    threshold = 0.5

    def predict_proba(self, frames, instruction, batch_size=32):
        return np.asarray(frames)[..., 0].mean(axis=(1, 2)) / 255.0


def test_relabel_episodes():
    ep = make_episode(6, "online", False, gt=np.zeros(7, bool))
    ep.images[:] = 0
    ep.images[3, ..., 0] = 255  # o_3 succeeds alone (a blip)
    ep.images[5:, ..., 0] = 255  # o_5, o_6 succeed
    (new,), (p,) = relabel_episodes([ep], StubModel(), return_probs=True)
    assert p.shape == (7,)
    assert list(new.terminals) == [False, False, True, False, True, True]
    assert list(new.rewards) == [-1, -1, 0, -1, 0, 0] and new.success
    assert new.provenance["reward_model"]["model_id"] == "stub"
    assert not ep.terminals.any()  # input untouched
    (deb,) = relabel_episodes([ep], StubModel(), debounce_n=2)
    assert list(deb.terminals) == [False, False, False, False, False, True]
    (cut,) = relabel_episodes([ep], StubModel(), truncate=True)
    assert len(cut) == 3 and len(cut.images) == 4 and cut.terminals[-1] and len(cut.success_gt) == 4
    (none,) = relabel_episodes([ep], StubModel(), threshold=1.01)
    assert not none.success and (none.rewards == -1).all()
    (custom,) = relabel_episodes([ep], StubModel(), success_reward=1.0, fail_reward=0.0, instruction="x")
    assert custom.rewards.max() == 1.0 and custom.instruction == "x"


def test_evaluate_on_episodes_against_ground_truth():
    ep = make_episode(4, "online", False, gt=[0, 0, 1, 1, 0])
    ep.images[:] = 0
    ep.images[2:4, ..., 0] = 255  # right on frames 2, 3
    ep.images[0, ..., 0] = 255  # false positive on frame 0
    res = evaluate_on_episodes(StubModel(), [ep, make_episode(4, "online")])
    assert res["n_episodes"] == 1 and res["n"] == 5
    assert (res["tp"], res["fp"], res["tn"], res["fn"]) == (2, 1, 2, 0)
    assert res["fp_rate"] == pytest.approx(1 / 3) and res["fn_rate"] == 0.0
    assert evaluate_on_episodes(StubModel(), [make_episode(4)]) is None


def _pair_demo(instr, task, T=10):
    """A successful target demo whose frame t is filled with the value t."""
    from robofume_ros.data.episode import Episode

    img = np.arange(T + 1, dtype=np.uint8)[:, None, None, None].repeat(4, 1).repeat(4, 2).repeat(3, 3)
    return Episode(
        images=img,
        proprio=np.zeros((T + 1, 4), np.float32),
        actions=np.zeros((T, 4), np.float32),
        rewards=-np.ones(T, np.float32),
        terminals=np.zeros(T, bool),
        instruction=instr,
        task=task,
        source="target_demo",
        success=True,
    )


def test_reverse_start_frames_are_positives_for_the_paired_task():
    from robofume_ros.reward.labels import label_episodes, reverse_pairs

    eps = [_pair_demo("open the drawer", "drawer-open"), _pair_demo("close the drawer", "drawer-close")]
    rev = reverse_pairs(eps)
    assert rev == {"open the drawer": "close the drawer", "close the drawer": "open the drawer"}
    fs = label_episodes(eps, k=3, neg_demo_frac=0.5, reverse=rev, reverse_k=2)
    close_pos = [
        (t, e) for t, e, y, i in zip(fs.t, fs.episode, fs.labels, fs.instructions) if y == 1 and i == "close the drawer"
    ]
    # the last 3 frames of the closing demo, plus the first 2 frames of the opening demo
    assert sorted(close_pos) == [(0, 0), (1, 0), (8, 1), (9, 1), (10, 1)]
    # the same start frames stay negatives for their own instruction
    assert any(
        t == 0 and e == 0 and y == 0 and i == "open the drawer"
        for t, e, y, i in zip(fs.t, fs.episode, fs.labels, fs.instructions)
    )
    assert reverse_pairs(eps[:1]) == {}


def test_pair_negatives_are_the_paired_tasks_goal_frames():
    from robofume_ros.reward.labels import label_episodes, reverse_pairs

    eps = [_pair_demo("open the drawer", "drawer-open"), _pair_demo("close the drawer", "drawer-close")]
    fs = label_episodes(eps, k=3, neg_demo_frac=0.5, reverse=reverse_pairs(eps), reverse_k=0, pair_negatives=2)
    rows = list(zip(fs.t, fs.episode, fs.labels, fs.instructions))
    # the opening demo's last 2 frames (drawer open) are negatives for "close the drawer" ...
    assert sorted((t, e) for t, e, y, i in rows if y == 0 and i == "close the drawer" and e == 0) == [(9, 0), (10, 0)]
    # ... and stay positives for their own instruction; no start-frame positives with reverse_k=0
    assert {(t, y) for t, e, y, i in rows if e == 0 and i == "open the drawer" and t >= 9} == {(9, 1), (10, 1)}
    assert not any(y == 1 and i == "close the drawer" and e == 0 for t, e, y, i in rows)
    assert len(fs) == len(label_episodes(eps, k=3, neg_demo_frac=0.5)) + 4
