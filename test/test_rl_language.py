"""Instruction embeddings: standardisation makes close instructions distinguishable, and survives
a checkpoint round trip (old checkpoints without statistics load as identity)."""

import numpy as np

from robofume_ros.rl.language import LanguageTable


def test_standardised_rows_separate_related_instructions():
    t = LanguageTable("minilm")
    instr = ["open the drawer", "close the drawer", "open the window", "push the button"]
    for s in instr:
        t.index(s)
    raw_gap = np.linalg.norm(t.raw[0] - t.raw[1])
    t.fit_stats([100, 100, 500, 500])
    std_gap = np.linalg.norm(t.table[0] - t.table[1])
    assert std_gap > 5 * raw_gap, (raw_gap, std_gap)
    # weighted mean of the standardised rows is zero, their per-dimension spread is at most 1
    w = np.array([100, 100, 500, 500], float) / 1200
    assert np.abs((w[:, None] * t.table).sum(0)).max() < 1e-4
    # an instruction added later goes through the same statistics
    new = t.embed(["slide the drawer open"])[0]
    i = t.ids["slide the drawer open"]
    assert np.allclose(new, (t.raw[i] - t.mean) / t.std, atol=1e-6)

    back = LanguageTable.from_state_dict(t.state_dict())
    assert np.array_equal(back.table, t.table) and back.ids == t.ids

    old = t.state_dict()
    del old["mean"], old["std"]
    legacy = LanguageTable.from_state_dict(old)
    assert np.allclose(legacy.table, t.raw)


def test_onehot_is_not_standardised():
    t = LanguageTable("onehot", max_instructions=4)
    t.index("a"), t.index("b")
    t.fit_stats([3, 1])
    assert np.array_equal(t.table, np.eye(4, dtype=np.float32)[:2])
