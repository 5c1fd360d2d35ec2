"""The reward keeps learning online (reward.adapt): trusted labels from a person's verdicts and the
reset-free loop, a head adapted on them behind a gate, versions on disk, OOO's relabelling."""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_reward_training import INSTR, square_frames
from tiny_models import adaptable_reward_model, framed

from robofume_ros.reward import load_reward_model
from robofume_ros.reward.adapt import (
    NOT_SUCCESS,
    REASON_SUCCESS,
    REASON_TIMEOUT,
    SUCCESS,
    UNDO,
    AdaptConfig,
    AdaptError,
    EpisodeLog,
    TrustedFrame,
    adapt_head,
    latest_model,
    load_anchor,
    save_version,
    with_head,
)

OPEN, CLOSE = "open the drawer", "close the drawer"


def feat(x):
    return np.full(4, float(x), np.float32)


# ------------------------------------------------------------------ trusted labels


def test_the_paired_task_after_a_success_starts_not_done_and_an_undo_takes_it_back():
    log = EpisodeLog((OPEN, CLOSE))
    for t in range(5):
        log.frame(0, OPEN, feat(t), 0.1 * t, fired=t >= 4)
    log.phase(1, REASON_SUCCESS)  # episode 0 ended as a success ...
    log.frame(1, CLOSE, feat(9), 0.95, fired=True)  # ... so episode 1 (the paired task) starts not done
    labels = log.labels()
    assert [(lab.instruction, lab.success, lab.why, lab.episode) for lab in labels] == [(CLOSE, False, "start", 1)]
    assert labels[0].feature.tolist() == feat(9).tolist() and labels[0].mistaken  # the head had fired on it
    assert log.mistakes == 1

    log.override(0, UNDO)  # a person: episode 0 was not a success after all
    got = {(lab.instruction, lab.success, lab.why, lab.episode) for lab in log.labels()}
    # its last frames are not done (the reward fired on the last one: a mistake), the start label is gone
    assert got == {(OPEN, False, "person-undo", 0)}
    assert len(log.labels()) == 3 and log.mistakes == 2


def test_a_phase_that_comes_after_the_first_frame_still_labels_it_and_a_timeout_gives_no_label():
    log = EpisodeLog((OPEN, CLOSE))
    log.frame(0, OPEN, feat(0), 0.2, False)
    log.frame(1, CLOSE, feat(1), 0.1, False)  # the new episode's frame overtook the phase message
    assert log.labels() == []
    log.phase(1, REASON_SUCCESS)
    assert [(lab.episode, lab.why, lab.mistaken) for lab in log.labels()] == [(1, "start", False)]
    log.frame(2, OPEN, feat(2), 0.1, False)
    log.phase(2, REASON_TIMEOUT)  # episode 1 ran out of time: where episode 2 starts is unknown
    log.phase(2, REASON_TIMEOUT)  # the latched phase again: nothing changes
    assert [lab.episode for lab in log.labels()] == [1] and log.revision == 1


def test_a_persons_verdicts_label_the_frames_they_are_about():
    log = EpisodeLog((OPEN, CLOSE), last_frames=2)
    for t in range(6):
        log.frame(3, OPEN, feat(t), 0.3, fired=False)
    log.override(3, SUCCESS)  # the reward missed it: the last two frames are done (and not the partner's)
    got = sorted((lab.instruction, lab.success, float(lab.feature[0]), lab.mistaken) for lab in log.labels())
    assert got == [
        (CLOSE, False, 4.0, False),
        (CLOSE, False, 5.0, False),
        (OPEN, True, 4.0, True),
        (OPEN, True, 5.0, True),
    ]
    log.frame(4, CLOSE, feat(7), 0.2, fired=False)
    log.frame(4, CLOSE, feat(8), 0.99, fired=True)
    log.override(4, NOT_SUCCESS)  # the reward fired too early: the frames it fired on are not done
    mine = [lab for lab in log.labels() if lab.episode == 4]
    assert [(lab.instruction, lab.success, float(lab.feature[0])) for lab in mine] == [(CLOSE, False, 8.0)]
    log.override(99, SUCCESS)  # an episode this node never saw: nothing to label, no error
    assert log.mistakes == 3


def test_trusted_labels_survive_a_restart_and_a_broken_file_is_a_clear_error(tmp_path):
    log = EpisodeLog((OPEN, CLOSE))
    for t in range(3):
        log.frame(0, OPEN, feat(t), 0.1, False)
    log.override(0, SUCCESS)
    log.save(tmp_path / "labels.npz")
    again = EpisodeLog((OPEN, CLOSE))
    assert again.load(tmp_path / "labels.npz") == len(log.labels())
    key = lambda lab: (lab.instruction, lab.success, lab.why, lab.episode, float(lab.feature[0]))
    assert sorted(map(key, again.labels())) == sorted(map(key, log.labels()))
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(AdaptError, match="bad.npz cannot be read"):
        EpisodeLog().load(tmp_path / "bad.npz")


# ------------------------------------------------------------------ the head, adapted behind the gate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny reward trained on red squares (its anchor set is stored with it)."""
    folder = adaptable_reward_model(tmp_path_factory.mktemp("adapt"))
    return folder, json.loads((folder / "report.json").read_text())


def test_reward_training_stores_its_anchor_set_and_a_model_without_one_says_so(trained, tmp_path):
    folder, rep = trained
    anchor = load_anchor(folder)
    assert len(anchor) == rep["anchor_frames"] == rep["frames"]["train"] + rep["frames"]["heldout"]
    assert anchor.labels.sum() == rep["frames"]["train_pos"] + rep["frames"]["heldout_pos"]
    assert set(anchor.instructions) == {INSTR}
    with pytest.raises(AdaptError, match="no anchor.safetensors"):
        load_anchor(tmp_path)
    (tmp_path / "anchor.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(AdaptError, match="cannot be read"):
        load_anchor(tmp_path)


def test_a_persons_successes_teach_the_head_a_success_it_missed(trained, tmp_path):
    folder, _ = trained
    model = load_reward_model(folder, precision="fp32")
    anchor = load_anchor(folder)
    teach, held_out = framed(12, 7, (20, 230, 20)), framed(12, 8, (20, 230, 20))  # a green square: never seen
    before = model.predict_proba(held_out, INSTR)
    assert (before < model.threshold).mean() >= 0.5, "the test needs a look the trained head misses"
    trusted = [TrustedFrame(f, INSTR, True, "person", 0, mistaken=True) for f in model.image_features(teach).numpy()]
    res = adapt_head(model, anchor, trusted, AdaptConfig(steps=300), seed=0)
    assert res.accepted, res.report
    adapted = with_head(model, res.head, 1)
    after = adapted.predict_proba(held_out, INSTR)
    assert after.mean() > before.mean() + 0.5  # it learned the look (the tiny tower's features are coarse)
    assert (after >= model.threshold).mean() >= 0.5 > (before >= model.threshold).mean()
    assert res.report["after"]["anchor"]["fp_rate"] <= res.report["before"]["anchor"]["fp_rate"] + 0.005
    assert adapted.model_id.endswith("+adapted1") and model.model_id in adapted.model_id
    assert model.predict_proba(held_out, INSTR).tolist() == before.tolist()  # the model in use is untouched

    # a version on disk loads as a reward model of its own, and is what comes next
    v1 = save_version(adapted, folder, tmp_path / "adapted" / "v1", res.report)
    assert latest_model(folder, tmp_path / "adapted") == v1 and latest_model(folder, tmp_path / "none") == folder
    loaded = load_reward_model(v1, precision="fp32")
    assert loaded.model_id == adapted.model_id
    np.testing.assert_allclose(loaded.predict_proba(held_out, INSTR), after, atol=1e-5)
    assert json.loads((v1 / "adapt.json").read_text())["accepted"] is True


def test_labels_that_would_make_the_reward_fire_everywhere_do_not(trained):
    folder, _ = trained
    model = load_reward_model(folder, precision="fp32")
    anchor = load_anchor(folder)
    nothing, _ = square_frames(24, 11, np.zeros(24, bool))  # no square at all, called a success
    trusted = [TrustedFrame(f, INSTR, True, "person", 0, True) for f in model.image_features(nothing).numpy()]
    res = adapt_head(model, anchor, trusted, AdaptConfig(steps=300, lr=3e-3, trusted_per_batch=128), seed=0)
    fresh, _ = square_frames(24, 12, np.zeros(24, bool))
    assert (with_head(model, res.head, 1).predict_proba(fresh, INSTR) < model.threshold).all()  # the anchor holds
    assert res.report["after"]["anchor"]["fp_rate"] <= res.report["before"]["anchor"]["fp_rate"] + 0.005
    with pytest.raises(AdaptError, match="no trusted labels"):
        adapt_head(model, anchor, [])


def test_a_correction_that_unlearns_successes_nobody_challenged_is_refused(trained):
    """Yellow squares (never trained on, but recognised): a person calls some not done while the
    reward's own verdicts on others stood unchallenged: the adapted head would lose those, the gate refuses."""
    folder, _ = trained
    model = load_reward_model(folder, precision="fp32")
    anchor = load_anchor(folder)
    told, stood = (model.image_features(framed(12, s, (230, 220, 30))).numpy() for s in (31, 32))
    trusted = [TrustedFrame(f, INSTR, False, "person", 0, True) for f in told]
    keep = [TrustedFrame(f, INSTR, True, "reward", 1) for f in stood]
    res = adapt_head(model, anchor, trusted, AdaptConfig(steps=300), seed=0, keep=keep)
    assert res.report["before"]["kept_recall"] >= 0.5, "the test needs successes the head recognises"
    assert res.report["after"]["kept_recall"] < res.report["before"]["kept_recall"] - 0.05
    assert not res.accepted and res.report["refused_because"] == "it stopped recognising successes nobody challenged"
    res = adapt_head(model, anchor, trusted, AdaptConfig(steps=300), seed=0)  # without them: nothing to keep
    assert res.accepted


# ------------------------------------------------------------------ OOO relabels with the final reward


def test_ooo_relabels_online_episodes_with_the_final_reward_and_keeps_a_persons_verdicts(trained, tmp_path):
    from test_reward_training import episode

    from robofume_ros.data.dataset import DatasetWriter, load_episodes
    from robofume_ros.pipeline.retrain import relabel_online

    import shutil

    folder = tmp_path / "model"
    shutil.copytree(trained[0], folder)
    cfg = json.loads((folder / "reward_model.json").read_text())
    (folder / "reward_model.json").write_text(json.dumps({**cfg, "threshold": 0.5}))  # the tiny model's clear line
    online = tmp_path / "online"
    with DatasetWriter(online) as w:
        for i, (square, stored, reward_fired) in enumerate(
            [
                (True, False, False),  # the square is there: the reward missed it online
                (False, False, False),  # nothing there, nothing claimed
                (True, False, False),  # missed again
                (False, True, False),  # ended as a success although the reward never fired: a person's verdict
                (False, True, True),  # the loop's own success (the reward fired): it stands
            ]
        ):
            ep = episode("online", stored, 300 + i, end_with_square=square)
            ep.success = stored
            ep.terminals = np.zeros(len(ep.actions), bool)
            ep.terminals[-1] = stored
            ep.rewards = np.where(ep.terminals, 0.0, -1.0).astype(np.float32)
            ep.provenance = {"episode_index": i, "reward_success": [reward_fired] * len(ep.images)}
            w.append(ep)
    before = {e.provenance["episode_index"]: e.rewards.copy() for e in load_episodes(online)}
    counts = relabel_online(online, folder, tmp_path / "relabelled", success_frames=2)
    got = {e.provenance["episode_index"]: e for e in load_episodes(tmp_path / "relabelled")}
    assert counts["episodes"] == 5 and counts["person_verdicts_kept"] == 1 and counts["online_successes_kept"] == 1
    for i in (0, 2):  # the square's last 3 frames: success from the second of them on (2 in a row)
        assert got[i].success and got[i].terminals.tolist() == [False] * 9 + [True, True]
        assert got[i].rewards.tolist() == [-1.0] * 9 + [0.0, 0.0]
        assert got[i].provenance["reward_model"]["model_id"] == load_reward_model(folder).model_id
    assert not got[1].success and not got[1].terminals.any()
    for i in (3, 4):  # kept as they were
        assert got[i].success and got[i].terminals[-1] and "reward_model" not in got[i].provenance
    assert counts["became_success"] == 2 and counts["successes_before"] == 2 and counts["successes_after"] == 4
    for e in load_episodes(online):  # the run's own dataset is untouched (the copy's arrays are hard links)
        np.testing.assert_array_equal(e.rewards, before[e.provenance["episode_index"]])
        assert not e.success or e.provenance["episode_index"] in (3, 4)


# ------------------------------------------------------------------ the simulated person of experiments


def test_a_simulated_person_says_success_when_the_reward_misses_and_undo_when_it_ends_too_early():
    from robofume_ros.reward.simulated_person import SimulatedPerson

    p = SimulatedPerson(budget=2, reaction=2)
    assert p.phase(0, "drawer-open", 0) == []
    assert [p.ground_truth("drawer-open", ok) for ok in (True, True, False, True, True)] == [[]] * 5  # not yet
    assert p.ground_truth("drawer-close", True) == []  # another task's flag
    assert p.ground_truth("drawer-open", True) == [(SUCCESS, 0)]  # done for 3 ticks, the episode still runs
    assert p.ground_truth("drawer-open", True) == []  # once per episode
    assert p.phase(0, "drawer-open", 0) == []  # the latched phase again
    assert p.phase(1, "drawer-close", REASON_SUCCESS) == []  # its own verdict ended episode 0
    p.ground_truth("drawer-close", False)
    assert p.phase(2, "drawer-open", REASON_SUCCESS) == [(UNDO, 1)]  # ended as a success, not done
    p.ground_truth("drawer-open", False)
    assert p.phase(3, "drawer-close", REASON_SUCCESS) == []  # the budget is spent
    assert p.phase(4, "drawer-open", REASON_TIMEOUT) == [] and p.used == 2
    assert p.given == [(SUCCESS, 0), (UNDO, 1)]
