"""`robofume tasks`: the task pairs, their instructions and time limits, and whether their scripted
reset-free cycle works (measured here, not remembered).

    robofume tasks                     # every pair, 3 scripted cycles each (seed 0)
    robofume tasks --cycles 10 --seeds 0 1 window
    robofume tasks --no-check          # the table only
    robofume tasks my_task.yaml        # a task file (your own pair) checked the same way

A cycle is what the robot does without resets: the scripted expert does the forward task, the arm
goes home (never the scene) with a random offset, the expert does the backward task, home again.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from robofume_ros.sim import tasks

# a pair works when its experts succeed this often each way: data generation keeps only successful
# demos and evaluation skips a trial whose scripted setup failed, so a rare expert miss costs time only
WORKS_RATE = 0.9


def scripted_cycles(
    world, cycles: int, budget: int = 300, noise_std: float = 0.0, seed: int = 0, home_jitter: float = 0.0
) -> dict:
    """Forward/backward scripted episodes on a reset ResetFreeWorld; the arm goes home (+- home_jitter,
    m per axis) before each episode when home_jitter > 0. Returns {"forward": [...], "backward": [...]}:
    steps to success of each episode (None = failed within budget) and "done_at_start": episodes whose
    task was already done when they started (homing the arm closed a drawer, or the other task failed)."""
    rng = np.random.default_rng(seed)
    out = {"forward": [], "backward": [], "done_at_start": 0}
    for _ in range(cycles):
        for phase in ("forward", "backward"):
            world.switch(phase)
            if home_jitter > 0:
                world.home(home_jitter, rng)
            if world.ground_truth_success():
                out["done_at_start"] += 1
            n = None
            for k in range(budget):
                if world.step(world.scripted_action(noise_std, rng)).success:
                    n = k + 1
                    break
            out[phase].append(n)
    return out


def check_pair(pair, cycles: int, seeds=(0,), home_jitter: float = 0.1, noise_std: float = 0.1) -> dict:
    """Scripted reset-free cycles of one pair on each scene seed, unrendered."""
    from robofume_ros.sim.world import ResetFreeWorld

    p = tasks.get_pair(pair)
    res = {"forward": [], "backward": [], "done_at_start": 0}
    t0 = time.monotonic()
    for seed in seeds:
        w = ResetFreeWorld(p, camera=p.camera, seed=seed, render=False)
        try:
            w.reset()
            r = scripted_cycles(w, cycles, noise_std=noise_std, seed=seed, home_jitter=home_jitter)
        finally:
            w.close()
        for k in ("forward", "backward"):
            res[k] += r[k]
        res["done_at_start"] += r["done_at_start"]
    ok = {k: sum(x is not None for x in res[k]) for k in ("forward", "backward")}
    steps = {k: [x for x in res[k] if x is not None] for k in ("forward", "backward")}
    return {
        "pair": p.name,
        "episodes": len(res["forward"]),
        "successes": ok,
        "steps": steps,
        "done_at_start": res["done_at_start"],
        "seconds": round(time.monotonic() - t0, 1),
        "works": all(v >= WORKS_RATE * len(res["forward"]) for v in ok.values()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="robofume tasks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("pairs", nargs="*", help="pair names or task files (default: every configured pair)")
    ap.add_argument("--cycles", type=int, default=3, help="scripted reset-free cycles per scene seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="scene (placement) seeds")
    ap.add_argument("--no-check", action="store_true", help="list the pairs without running them")
    ap.add_argument("--json", help="write the results here")
    ns = ap.parse_args(argv)
    try:
        pairs = [tasks.get_pair(p) for p in (ns.pairs or list(tasks.PAIRS))]
    except (KeyError, ValueError) as e:
        print(f"robofume tasks: {e.args[0] if e.args else e}")
        return 2
    rows = []
    for p in pairs:
        row = {"pair": p.as_dict()}
        line = (
            f"{p.name:17s} forward {p.forward!r} \"{p.forward_instruction}\"; backward {p.backward!r} "
            f"\"{p.backward_instruction}\"; time limits {p.time_limits[0]}/{p.time_limits[1]}"
        )
        if not ns.no_check and p.simulated:
            c = check_pair(p, ns.cycles, ns.seeds)
            row["check"] = c
            fmt = lambda s: f"{min(s)}-{max(s)}" if s else "-"
            line += (
                f"\n{'':17s} scripted reset-free cycle {'works' if c['works'] else 'FAILS'}: forward "
                f"{c['successes']['forward']}/{c['episodes']} ({fmt(c['steps']['forward'])} steps), backward "
                f"{c['successes']['backward']}/{c['episodes']} ({fmt(c['steps']['backward'])} steps)"
                + (
                    f", {c['done_at_start']} already done at their start (homing, or the other direction failed)"
                    if c["done_at_start"]
                    else ""
                )
                + f"; {c['seconds']:.0f} s"
            )
        elif not p.simulated:
            line += " (a real robot's task: nothing to simulate)"
        print(line, flush=True)
        rows.append(row)
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r.get("check", {}).get("works", True) for r in rows) else 1
