"""Measure the reset-free world: scripted cycle success/lengths and steps per second.

    MUJOCO_GL=egl python -m robofume_ros.sim.bench --pair drawer --cycles 10 --sizes 100 128

Steps/s are for world.step() with the scripted expert choosing actions (the expert's own cost
is included; it is small), measured over whole scripted cycles.
"""

from __future__ import annotations

import argparse
import time

from robofume_ros.sim.check import scripted_cycles
from robofume_ros.sim.world import ResetFreeWorld


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pair", default="drawer")
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100, 128])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for size in [None] + list(args.sizes):
        w = ResetFreeWorld(args.pair, seed=args.seed, render=size is not None, image_size=size or 100)
        w.reset()
        t0 = time.perf_counter()
        s0 = w.sim_step
        res = scripted_cycles(w, args.cycles, noise_std=args.noise, seed=args.seed)
        dt = time.perf_counter() - t0
        ok = sum(f is not None and b is not None for f, b in zip(res["forward"], res["backward"]))
        tag = "no render" if size is None else f"render {size}x{size}"
        print(
            f"[{args.pair} | {tag}] {(w.sim_step - s0) / dt:.1f} steps/s; cycles ok {ok}/{args.cycles}; "
            f"forward steps {res['forward']}; backward steps {res['backward']}; resets {w.reset_count}"
        )
        w.close()


if __name__ == "__main__":
    main()
