"""Simulated offline data for RoboFuME on a reset-free Meta-World pair (default: drawer).

    robofume dataset generate -o DIR [--seed S] [--quick] [--pair drawer] [--prior-tasks N]
                                     [--prior-episodes N] [--demos N] [--failures N] [--bags]

Output: DIR is ONE dataset (robofume_ros.data.dataset) holding every source; select with
`load_episodes(DIR, sources=...)`:

  prior        N tasks x M noisy scripted-expert episodes of OTHER Meta-World tasks
               (prior_tasks(pair)), rendered by SingleTaskWorld with a perturbed camera and
               lighting per task (stands in for "collected at another institution"); reset per
               episode, up to 200 steps.
  target_demo  --demos forward AND --demos backward demos of the pair, collected reset-free in
               one ResetFreeWorld (reset once): forward, switch, backward, switch, ... with the
               scripted expert + small noise; up to 250 steps each. Before each demo the arm goes
               home +- --home-jitter (ResetFreeWorld.home), the same protocol as online fine-tuning. Only ground-truth successes
               are kept (failed attempts are dropped, counted in generate.json).
  failure      --failures episodes of the pair's tasks in the target scene/camera that do NOT
               achieve their task: uniform random actions, heavy-noise expert, the other task's
               expert, or the expert stopped early then random ("near misses"); fixed length.
               Every frame is checked by ground truth; an attempt that succeeded anywhere is
               dropped (counted), so the label "failure" is honest.

Labels (RoboFuME's related code): a successful episode runs k-1 extra expert steps after the
first success, then its last k=3 transitions get reward 0 and terminal, all others -1. Failures
and unsuccessful prior episodes: -1 everywhere, never terminal. `success_gt` holds the simulator's
success of the episode's task at every observation (evaluation only, never a training signal).

Also written: DIR/generate.json (config, counts, timings) and with --bags DIR/bags/<source>/ in
the recorder's layout (write_episodes_bag; consecutive episodes share their boundary frame there).

Deterministic for a given --seed (MuJoCo is deterministic; every episode draws its noise from its
own generator seeded by (seed, source, index)).

    robofume dataset collect demos|failures -o DIR [--episodes N] [--pair P] [--seed S] [--remote]

appends more scripted demos (per direction) or failures to a dataset, in the same scene as its
target data (the placement seed of DIR's generate.json), with noise of their own (--seed picks a
stream that never repeats the generated episodes); --remote asks a running graph's /collect action
(evaluator_node), which runs the same `collect()` with feedback per attempt and cancel.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .dataset import DatasetWriter
from .episode import Episode

K_POSITIVE = 3
_SOURCE_IDS = {"prior": 1, "target_demo": 2, "failure": 3}
FAILURE_MODES = ("random", "heavy_noise", "wrong_task", "stop_early")


@dataclass
class GenerateConfig:
    out: str
    seed: int = 0
    pair: str = "drawer"
    camera: str = "corner4"
    image_size: tuple = (100, 100)
    prior_tasks: int = 20
    prior_episodes: int = 10
    prior_noise: float = 0.1
    prior_max_steps: int = 200
    prior_keep_failures: bool = False  # keep unsuccessful prior episodes (labelled -1 everywhere)
    demos: int = 10  # per direction
    demo_noise: float = 0.1
    demo_max_steps: int = 250
    home_jitter: float = 0.03  # before each target demo / failure the arm goes home +- this (m per axis)
    failures: int = 30
    failure_length: int = 60
    k: int = K_POSITIVE
    bags: bool = False
    progress: bool = True
    stream: int = 0  # 0: generate's noise; collect() uses 1 + its seed (new episodes, same scene)

    @classmethod
    def quick(cls, out: str, **kw) -> "GenerateConfig":
        d = dict(prior_tasks=4, prior_episodes=3, demos=3, failures=6, failure_length=40)
        d.update(kw)
        return cls(out=out, **d)


def _rng(cfg: GenerateConfig, source: str, *idx: int) -> np.random.Generator:
    key = [int(cfg.seed), _SOURCE_IDS[source], *map(int, idx)]
    return np.random.default_rng(key + [int(cfg.stream)] if cfg.stream else key)


def _bar(total, desc, enable, unit="ep"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enable, dynamic_ncols=True, file=sys.stderr)


def _demo_labels(T: int, success: bool, k: int):
    r = -np.ones(T, np.float32)
    term = np.zeros(T, bool)
    if success:
        r[max(0, T - k) :] = 0.0
        term[max(0, T - k) :] = True
    return r, term


class _Rollout:
    """Collects o_0..o_T, a_0..a_{T-1} and per-frame ground truth of one episode."""

    def __init__(self, obs, world):
        self.images = [obs.image]
        self.proprio = [obs.proprio]
        self.gt = [bool(obs.success)]
        self.actions = []
        self.world = world

    def step(self, a):
        o = self.world.step(a)
        self.actions.append(np.asarray(a, np.float32))
        self.images.append(o.image)
        self.proprio.append(o.proprio)
        self.gt.append(bool(o.success))
        return o

    def __len__(self):
        return len(self.actions)

    def episode(self, source, task, instruction, success, k, provenance, labels="demo") -> Episode:
        T = len(self.actions)
        if labels == "demo":
            r, term = _demo_labels(T, success, k)
        else:
            r, term = -np.ones(T, np.float32), np.zeros(T, bool)
        return Episode(
            images=np.stack(self.images),
            proprio=np.stack(self.proprio).astype(np.float32),
            actions=np.stack(self.actions).astype(np.float32),
            rewards=r,
            terminals=term,
            instruction=instruction,
            task=task,
            source=source,
            success=bool(success),
            provenance=provenance,
            success_gt=np.asarray(self.gt, bool),
        )


def _expert_episode(world, obs, rng, noise, max_steps, k):
    """Run the (noisy) expert until first success + k-1 steps (or max_steps).
    Returns (rollout, success, first_success_step)."""
    ro = _Rollout(obs, world)
    first = None
    while len(ro) < max_steps:
        o = ro.step(world.scripted_action(noise, rng))
        if o.success and first is None:
            first = len(ro)
        if first is not None and len(ro) >= first + k - 1:
            break
    success = first is not None and all(ro.gt[-k:])  # the last k observations show success
    return ro, success, first


# --------------------------------------------------------------------------------------------


def gen_prior(cfg: GenerateConfig, writer: DatasetWriter, stats: dict, bag_eps: Optional[list]):
    from robofume_ros.sim import SingleTaskWorld, instruction, prior_tasks

    tasks = prior_tasks(cfg.pair, cfg.prior_tasks)
    bar = _bar(len(tasks) * cfg.prior_episodes, "prior", cfg.progress)
    frames = 0
    t0 = time.perf_counter()
    per_task = {}
    for ti, task in enumerate(tasks):
        world = SingleTaskWorld(
            task,
            camera=cfg.camera,
            image_size=cfg.image_size,
            seed=cfg.seed * 1000 + ti,
            render=True,
            visual_seed=cfg.seed * 1000 + 500 + ti,
        )
        kept = tried = 0
        try:
            # a few spare attempts so a rare noisy miss does not leave a task short
            while kept < cfg.prior_episodes and tried < 2 * cfg.prior_episodes + 2:
                rng = _rng(cfg, "prior", ti, tried)
                obs = world.reset()
                ro, ok, first = _expert_episode(world, obs, rng, cfg.prior_noise, cfg.prior_max_steps, cfg.k)
                tried += 1
                frames += len(ro) + 1
                if not ok and not cfg.prior_keep_failures:
                    continue
                ep = ro.episode(
                    "prior",
                    task,
                    instruction(task),
                    ok,
                    cfg.k,
                    {
                        "generator": "robofume dataset generate",
                        "world": "SingleTaskWorld",
                        "seed": world.seed,
                        "visual_seed": cfg.seed * 1000 + 500 + ti,
                        "attempt": tried - 1,
                        "noise_std": cfg.prior_noise,
                        "first_success_step": first,
                    },
                )
                writer.append(ep)
                if bag_eps is not None:
                    bag_eps.append(ep)
                kept += 1
                bar.update(1)
                bar.set_postfix(task=task, fps=f"{frames / (time.perf_counter() - t0):.0f}")
        finally:
            world.close()
        per_task[task] = {"kept": kept, "attempts": tried}
    bar.close()
    stats["prior"] = {
        "tasks": per_task,
        "episodes": sum(v["kept"] for v in per_task.values()),
        "frames_simulated": frames,
        "seconds": time.perf_counter() - t0,
    }


def gen_target_demos(cfg: GenerateConfig, writer: DatasetWriter, stats: dict, bag_eps: Optional[list], on_attempt=None):
    """Successful expert demos of both tasks in turn, reset-free; `on_attempt(task, kept)` after
    every attempt (it may raise to stop: what was written stays)."""
    from robofume_ros.sim import ResetFreeWorld

    world = ResetFreeWorld(cfg.pair, camera=cfg.camera, image_size=cfg.image_size, seed=cfg.seed, render=True)
    want = {"forward": cfg.demos, "backward": cfg.demos}
    got = {"forward": 0, "backward": 0}
    dropped = {"forward": 0, "backward": 0}
    bar = _bar(2 * cfg.demos, "target demos", cfg.progress)
    frames, t0, attempt = 0, time.perf_counter(), 0
    try:
        obs = world.reset()
        phase = "forward"
        while any(got[p] < want[p] for p in got) and attempt < 4 * (2 * cfg.demos) + 4:
            world.switch(phase)
            rng = _rng(cfg, "target_demo", attempt)
            world.home(cfg.home_jitter, rng)  # the reset-free protocol: the arm goes home between episodes
            obs = world.observe()
            ro, ok, first = _expert_episode(world, obs, rng, cfg.demo_noise, cfg.demo_max_steps, cfg.k)
            frames += len(ro) + 1
            kept = ok and got[phase] < want[phase]
            if kept:
                ep = ro.episode(
                    "target_demo",
                    world.task,
                    world.instruction,
                    True,
                    cfg.k,
                    {
                        "generator": "robofume dataset generate",
                        "world": "ResetFreeWorld",
                        "seed": cfg.seed,
                        "phase": phase,
                        "attempt": attempt,
                        "sim_step_end": world.sim_step,
                        "noise_std": cfg.demo_noise,
                        "first_success_step": first,
                    },
                )
                writer.append(ep)
                if bag_eps is not None:
                    bag_eps.append(ep)
                got[phase] += 1
                bar.update(1)
                bar.set_postfix(fps=f"{frames / (time.perf_counter() - t0):.0f}")
            elif not ok:
                dropped[phase] += 1
            attempt += 1
            if on_attempt is not None:
                on_attempt(world.task, kept)
            phase = "backward" if phase == "forward" else "forward"
    finally:
        world.close()
    bar.close()
    stats["target_demo"] = {
        "kept": got,
        "dropped_unsuccessful": dropped,
        "attempts": attempt,
        "frames_simulated": frames,
        "seconds": time.perf_counter() - t0,
        "reset_count": 1,
    }


def _failure_action(world, mode, rng, t, stop_at):
    if mode == "random":
        return rng.uniform(-1, 1, 4).astype(np.float32)
    if mode == "heavy_noise":
        return world.scripted_action(1.0, rng)
    if mode == "wrong_task":  # the other task's expert (prepared by the caller)
        return world._wrong_expert(rng)
    if mode == "stop_early":  # expert for part of the way, then random dithering (near misses)
        if t < stop_at:
            return world.scripted_action(0.1, rng)
        return rng.uniform(-0.3, 0.3, 4).astype(np.float32)
    raise ValueError(mode)


def gen_failures(cfg: GenerateConfig, writer: DatasetWriter, stats: dict, bag_eps: Optional[list], on_attempt=None):
    """Failures of the pair's tasks in the target scene. Reset-free: between failure episodes the
    expert (not recorded, render-free) moves the scene to where the next task is not yet done.
    `on_attempt(task, kept)` after every recorded attempt (it may raise to stop)."""
    from robofume_ros.sim import ResetFreeWorld
    from robofume_ros.sim.world import expert_policy

    world = ResetFreeWorld(
        cfg.pair, camera=cfg.camera, image_size=cfg.image_size, seed=cfg.seed, render=True
    )  # the target scene, like the demos
    other = {"forward": world.pair.backward, "backward": world.pair.forward}
    experts = {t: expert_policy(t) for t in world.pair.tasks}

    def wrong(rng, _w=world):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            a = np.asarray(experts[other[_w.phase]].get_action(_w.state), np.float64)
        return np.clip(a + rng.normal(0, 0.05, 4), -1, 1).astype(np.float32)

    world._wrong_expert = wrong

    kept, dropped, modes = 0, 0, {m: 0 for m in FAILURE_MODES}
    bar = _bar(cfg.failures, "failures", cfg.progress)
    frames, t0, attempt = 0, time.perf_counter(), 0
    try:
        world.reset()
        phase = "forward"
        while kept < cfg.failures and attempt < 3 * cfg.failures + 6:
            # bring the scene to a state where `phase`'s task is not achieved (expert of the
            # opposite task, unrendered), then record a failure attempt at `phase`
            world.render_enabled = False
            opp = "backward" if phase == "forward" else "forward"
            world.switch(opp)
            prng = _rng(cfg, "failure", 100000 + attempt)
            n = 0
            while (not world.ground_truth_success() or n < 5) and n < cfg.demo_max_steps:
                world.step(world.scripted_action(0.05, prng))
                n += 1
            world.switch(phase)
            world.home(cfg.home_jitter, _rng(cfg, "failure", 200000 + attempt))
            world.render_enabled = True
            obs = world.observe()
            if obs.success:  # cannot start a failure from an already-done state; try the other
                attempt += 1
                phase = opp
                continue
            mode = FAILURE_MODES[attempt % len(FAILURE_MODES)]
            rng = _rng(cfg, "failure", attempt)
            stop_at = int(rng.integers(cfg.failure_length // 4, cfg.failure_length // 2 + 1))
            ro = _Rollout(obs, world)
            for t in range(cfg.failure_length):
                ro.step(_failure_action(world, mode, rng, t, stop_at))
            frames += len(ro) + 1
            attempt += 1
            if any(ro.gt):
                dropped += 1  # it succeeded somewhere: not an honest failure
            else:
                ep = ro.episode(
                    "failure",
                    world.task,
                    world.instruction,
                    False,
                    cfg.k,
                    {
                        "generator": "robofume dataset generate",
                        "world": "ResetFreeWorld",
                        "seed": cfg.seed,
                        "phase": phase,
                        "mode": mode,
                        "attempt": attempt - 1,
                        "stop_at": stop_at if mode == "stop_early" else None,
                    },
                    labels="none",
                )
                writer.append(ep)
                if bag_eps is not None:
                    bag_eps.append(ep)
                kept += 1
                modes[mode] += 1
                bar.update(1)
                bar.set_postfix(fps=f"{frames / (time.perf_counter() - t0):.0f}")
            if on_attempt is not None:
                on_attempt(world.task, not any(ro.gt))
            phase = opp
    finally:
        world.close()
    bar.close()
    stats["failure"] = {
        "kept": kept,
        "dropped_succeeded": dropped,
        "modes": modes,
        "attempts": attempt,
        "frames_simulated": frames,
        "seconds": time.perf_counter() - t0,
    }


def generate(cfg: GenerateConfig) -> dict:
    os.environ.setdefault("MUJOCO_GL", "egl")
    out = Path(cfg.out)
    if (out / "episodes").is_dir() and any((out / "episodes").glob("ep_*")):
        raise FileExistsError(f"{out} already holds a dataset; choose a new -o directory")
    t0 = time.perf_counter()
    writer = DatasetWriter(
        out, fsync=False, extra_meta={"generator": "robofume dataset generate", "config": _cfg_json(cfg)}
    )
    stats: dict = {}
    bag_sets = {s: ([] if cfg.bags else None) for s in ("target_demo", "failure", "prior")}
    gen_target_demos(cfg, writer, stats, bag_sets["target_demo"])
    gen_failures(cfg, writer, stats, bag_sets["failure"])
    gen_prior(cfg, writer, stats, bag_sets["prior"])
    writer.sync()
    if cfg.bags:
        from .bags import write_episodes_bag

        for src, eps in bag_sets.items():
            if eps:
                write_episodes_bag(eps, out / "bags" / src, rate_hz=5.0)
                eps.clear()
    from .dataset import dataset_info

    info = dataset_info(out)
    summary = {
        "config": _cfg_json(cfg),
        "stats": stats,
        "seconds": time.perf_counter() - t0,
        "episodes": info["episodes"],
        "transitions": info["transitions"],
        "by_source": _by_source(info),
        "bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file()),
    }
    (out / "generate.json").write_text(json.dumps(summary, indent=1))
    return summary


COLLECT_KINDS = ("demos", "failures")


def collect(
    kind: str,
    out,
    pair: str = "",
    episodes: int = 0,
    seed: int = 0,
    scene_seed: Optional[int] = None,
    on_attempt=None,
    progress: bool = False,
) -> dict:
    """Append `episodes` scripted demos (per direction) or failures of `pair` to the dataset `out`
    (created if missing), reset-free as `generate` makes them. An existing dataset gives the pair,
    the scene (its placement seed) and the image size; `seed` picks a noise stream of its own, so
    the new episodes never repeat the generated ones. `on_attempt(task, kept)` after every attempt
    may raise to stop: the episodes written stay. Returns the collection's record (also appended to
    `out`/collect.json). ValueError for an unknown kind or pair or a dataset of another pair."""
    from robofume_ros.sim import tasks

    from .dataset import dataset_pair

    if kind not in COLLECT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(COLLECT_KINDS)}, got {kind!r}")
    out = Path(out)
    gen = out / "generate.json"
    base = json.loads(gen.read_text())["config"] if gen.exists() else {}
    have = dataset_pair(out) if gen.exists() else None
    if pair and have and tasks.get_pair(pair).name != tasks.get_pair(have).name:
        raise ValueError(f"{out} holds pair {have!r}, not {pair!r}: collect into another folder")
    p = tasks.get_pair(pair or have or "drawer")
    n = int(episodes) or (GenerateConfig.demos if kind == "demos" else GenerateConfig.failures)
    cfg = GenerateConfig(
        out=str(out),
        seed=int(base.get("seed", seed) if scene_seed is None else scene_seed),
        pair=p.name,
        camera=base.get("camera", p.camera),
        image_size=tuple(base.get("image_size", GenerateConfig.image_size)),
        demos=n if kind == "demos" else 0,
        failures=n if kind == "failures" else 0,
        home_jitter=float(base.get("home_jitter", GenerateConfig.home_jitter)),
        progress=progress,
        stream=1 + int(seed),
    )
    os.environ.setdefault("MUJOCO_GL", "egl")
    t0 = time.perf_counter()
    writer = DatasetWriter(out, fsync=True, extra_meta={"generator": "robofume dataset collect"})
    stats: dict = {}
    counts = {"episodes": 0, "attempts": 0}

    def hook(task, kept):
        counts["attempts"] += 1
        counts["episodes"] += int(kept)
        if on_attempt is not None:
            on_attempt(task, kept)

    record = {"kind": kind, "pair": p.name, "config": _cfg_json(cfg), "counts": counts, "stopped": None}
    try:
        (gen_target_demos if kind == "demos" else gen_failures)(cfg, writer, stats, None, hook)
    except BaseException as e:
        record["stopped"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        writer.sync()
        record.update(stats=stats, seconds=time.perf_counter() - t0, finished=time.time())
        log = out / "collect.json"
        runs = json.loads(log.read_text()) if log.exists() else []
        log.write_text(json.dumps(runs + [record], indent=1))
        if not gen.exists():  # a new dataset: its pair and scene, as a generated one says them
            gen.write_text(json.dumps({"config": _cfg_json(cfg), "stats": stats, "collected": True}, indent=1))
    return record


def collect_main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="robofume dataset collect",
        description="append scripted demos or failures of a simulated pair to a dataset (same scene, new "
        "noise); --remote asks a running graph's /collect action",
    )
    ap.add_argument("kind", choices=COLLECT_KINDS)
    ap.add_argument("-o", "--out", default="", help="dataset folder (created or appended to)")
    ap.add_argument("--episodes", type=int, default=0, help="demos per direction, or failures in all")
    ap.add_argument("--pair", default="", help="task pair (default: the dataset's, else drawer)")
    ap.add_argument("--seed", type=int, default=0, help="noise stream (0, 1, ...: each gives new episodes)")
    ap.add_argument("--remote", action="store_true", help="send it to the graph's /collect action (evaluator_node)")
    ap.add_argument(
        "--source",
        choices=("scripted", "teleop"),
        default="scripted",
        help="--remote: the simulated pair's scripted experts (/collect), or a person driving the running graph "
        "(teleop:=true; /teleop/collect: every episode the task switcher ends, kept when it is what was asked)",
    )
    ap.add_argument("--namespace", default="", help="--remote: the graph's namespace")
    a = ap.parse_args(argv)
    if a.remote:
        from robofume_ros.ros.actions import collect_remote

        return collect_remote(a, "teleop/collect" if a.source == "teleop" else "collect")
    if a.source == "teleop":
        ap.error("--source teleop collects from a running graph: add --remote")
    if not a.out:
        ap.error("-o/--out is required (or --remote)")

    def show(task, kept):
        print(f"{task}: {'kept' if kept else 'not kept'}", flush=True)

    try:
        r = collect(a.kind, a.out, a.pair, a.episodes, a.seed, on_attempt=show)
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"robofume dataset collect: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stopped; the episodes written are in {a.out} (collect.json counts them)")
        return 130
    print(
        f"collected {r['counts']['episodes']} {a.kind} of {r['pair']} in {r['counts']['attempts']} attempts into {a.out}"
    )
    return 0


def _by_source(info):
    out = {}
    for g in info["groups"]:
        s = out.setdefault(g["source"], {"episodes": 0, "transitions": 0, "tasks": 0, "successes": 0})
        s["episodes"] += g["episodes"]
        s["transitions"] += g["transitions"]
        s["successes"] += g["successes"]
        s["tasks"] += 1
    return out


def _cfg_json(cfg):
    d = asdict(cfg)
    d["image_size"] = list(cfg.image_size)
    return d


def build_parser(prog="robofume dataset generate"):
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = GenerateConfig.__dataclass_fields__
    p.add_argument("-o", "--out", required=True, help="dataset directory to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick", action="store_true", help="small set for a smoke test (4 prior tasks x 3, 3+3 demos, 6 failures)"
    )
    p.add_argument("--pair", default=d["pair"].default, help="reset-free task pair (target task)")
    p.add_argument(
        "--prior-tasks", type=int, help=f"other tasks in the prior data (default {d['prior_tasks'].default})"
    )
    p.add_argument(
        "--prior-episodes", type=int, help=f"episodes per prior task (default {d['prior_episodes'].default})"
    )
    p.add_argument("--demos", type=int, help=f"target demos per direction (default {d['demos'].default})")
    p.add_argument("--failures", type=int, help=f"failure episodes (default {d['failures'].default})")
    p.add_argument("--failure-length", type=int, help=f"steps per failure (default {d['failure_length'].default})")
    p.add_argument(
        "--home-jitter",
        type=float,
        help=f"random offset (m per axis) of the arm's home pose before "
        f"each target demo and failure (default {d['home_jitter'].default})",
    )
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None)
    p.add_argument("--bags", action="store_true", help="also write DIR/bags/<source>/ rosbag2 bags")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(a) -> GenerateConfig:
    kw = {"seed": a.seed, "pair": a.pair, "bags": a.bags, "progress": not a.no_progress}
    for name in ("prior_tasks", "prior_episodes", "demos", "failures", "failure_length", "home_jitter"):
        v = getattr(a, name)
        if v is not None:
            kw[name] = v
    if a.image_size:
        kw["image_size"] = tuple(a.image_size)
    return GenerateConfig.quick(a.out, **kw) if a.quick else GenerateConfig(out=a.out, **kw)


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    cfg = config_from_args(a)
    try:
        s = generate(cfg)
    except (FileExistsError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {cfg.out}: {s['episodes']} episodes, {s['transitions']} transitions, "
        f"{s['bytes'] / 1e6:.1f} MB in {s['seconds']:.1f} s"
    )
    for src, v in s["by_source"].items():
        print(
            f"  {src:12s} {v['episodes']:4d} episodes ({v['tasks']} tasks), {v['transitions']:6d} "
            f"transitions, {v['successes']} successful"
        )
    st = s["stats"]
    print(
        f"  dropped: target demos unsuccessful {st['target_demo']['dropped_unsuccessful']}, "
        f"failures that succeeded {st['failure']['dropped_succeeded']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
