"""Bench: bag -> dataset conversion speed vs raw rosbags read speed of the same bag; the CDR
parsers generated from msg/ (data/bags/cdr.py) vs rosbags' generic deserializer on the bag's own
messages; dataset sampling throughput (batch 256, 100x100 images).

    python bench/bench_dataset.py [--steps 2000] [--episodes 20] [--size 100]
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from robofume_ros.data import bags as B
from robofume_ros.data.convert import convert_bags
from robofume_ros.data.dataset import TransitionSampler, load_episodes
from robofume_ros.data.episode import Episode


def make_episodes(n_eps, T, size, seed=0):
    rng = np.random.default_rng(seed)
    img0 = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    eps = []
    for _ in range(n_eps):
        imgs = rng.integers(0, 255, (T + 1, size, size, 3), dtype=np.uint8)
        imgs[0] = img0
        img0 = imgs[-1]
        r = -np.ones(T, np.float32)
        r[-1] = 0
        eps.append(
            Episode(
                imgs,
                rng.normal(size=(T + 1, 9)).astype(np.float32),
                rng.uniform(-1, 1, (T, 4)).astype(np.float32),
                r,
                r == 0,
                "open the drawer",
                "drawer-open",
                success=True,
            )
        )
    return eps


def parse_vs_generic(bag, repeats):
    """Per hot message type: generated parser vs rosbags.deserialize_cdr over every message of that
    type in the bag, in alternating blocks (medians of `repeats` + 1 pairs, first pair dropped)."""
    from robofume_ros.data.bags.reader import BagReader

    parsers = {
        B.MSGTYPES["observation"]: B.parse_observation,
        B.MSGTYPES["command"]: B.parse_command,
        B.MSGTYPES["reward"]: B.parse_reward,
    }
    msgs = {t: [] for t in parsers}
    with BagReader(bag) as r:
        for _, msgtype, data, _ in r.raw_tuples(None):
            if msgtype in msgs:
                msgs[msgtype].append(bytes(data))
    store = B.typestore()
    for t, batch in msgs.items():
        if not batch:
            continue
        fast, generic = [], []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            for d in batch:
                parsers[t](d)
            t1 = time.perf_counter()
            for d in batch:
                store.deserialize_cdr(d, t)
            t2 = time.perf_counter()
            fast.append(t1 - t0)
            generic.append(t2 - t1)
        f, g = float(np.median(fast[1:])), float(np.median(generic[1:]))
        print(
            f"parse {t.rsplit('/', 1)[-1]} x{len(batch)}: generated {1e6 * f / len(batch):.2f} us/msg, "
            f"rosbags {1e6 * g / len(batch):.2f} us/msg; RATIO rosbags/generated = {g / f:.2f}"
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3, help="timed conversions (median)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ds_"))
    try:
        T = a.steps // a.episodes
        eps = make_episodes(a.episodes, T, a.size)
        t = time.perf_counter()
        bag = B.write_episodes_bag(eps, tmp / "bag", rate_hz=5.0)
        tw = time.perf_counter() - t
        n_obs = a.episodes * T + 1
        print(
            f"bag: {n_obs} observations {a.size}x{a.size}, written in {tw:.2f} s "
            f"({n_obs / tw:.0f} obs/s incl. serialization), "
            f"{sum(f.stat().st_size for f in bag.glob('*')) / 1e6:.1f} MB"
        )

        from rosbags.rosbag2 import Reader

        # warm the page cache once, then time raw reading of every message (bytes only; median)
        raw_times = []
        for _ in range(1 + a.repeats):
            t = time.perf_counter()
            nb = nm = 0
            with Reader(bag) as r:
                for _, _, data in r.messages():
                    nb += len(data)
                    nm += 1
            raw_times.append(time.perf_counter() - t)
        t_raw = float(np.median(raw_times[1:]))
        raw_fps = n_obs / t_raw
        print(f"raw rosbags read: {nm} msgs ({nb / 1e6:.1f} MB) in {t_raw:.3f} s = {raw_fps:.0f} obs-frames/s")

        parse_vs_generic(bag, a.repeats)

        from robofume_ros.data.dataset import DatasetWriter

        def convert(dst):
            t = time.perf_counter()
            rep = convert_bags([bag], dst, labels="phase", progress=False, sync=False)
            return rep, time.perf_counter() - t

        # like the raw read (timed on its second pass), the conversion is timed after one
        # warm-up pass into a throwaway dataset; the cold first pass is printed too
        _, t_cold = convert(tmp / "ds_warmup")
        shutil.rmtree(tmp / "ds_warmup")
        times = []
        for i in range(a.repeats):
            rep, t_conv = convert(tmp / f"ds{i}")
            times.append(t_conv)
            if i:
                shutil.rmtree(tmp / f"ds{i}")
        t_conv = float(np.median(times))
        t = time.perf_counter()
        w = DatasetWriter(tmp / "ds0")
        w.written = 1
        w.sync()
        t_sync = time.perf_counter() - t
        conv_fps = n_obs / t_conv
        ratio = conv_fps / raw_fps
        print(
            f"convert bag -> dataset: {rep.episodes} episodes, {rep.transitions} transitions in "
            f"{t_conv:.3f} s (median of {a.repeats}; cold first pass {t_cold:.3f} s) = {conv_fps:.0f} frames/s; "
            f"+ final disk sync {t_sync:.3f} s ({n_obs / (t_conv + t_sync):.0f} frames/s including it)"
        )
        print(f"RATIO convert/raw = {ratio:.2f} ({100 * ratio:.0f}% of raw rosbags read; target >= 50%)")

        ds = tmp / "ds0"
        t = time.perf_counter()
        loaded = load_episodes(ds)
        s = TransitionSampler(loaded)
        t_load = time.perf_counter() - t
        s.sample(256)
        t = time.perf_counter()
        for _ in range(a.batches):
            b = s.sample(256)
        t_s = time.perf_counter() - t
        print(
            f"sampling: load+index {t_load:.3f} s; batch 256 ({b['obs'].shape} obs + next_obs): "
            f"{a.batches / t_s:.0f} batches/s = {256 * a.batches / t_s:.0f} transitions/s"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
