"""`robofume retrain`: OOO retraining (RoboFuME step 4): a pessimistic policy trained from scratch on all the data --
the offline dataset(s) and the run's online episodes -- for deployment. One implementation for the
main job's retrain stage and the graph's /retrain action (evaluator_node); the recipe's `main`
section sizes it (retrain_algo, retrain_steps) and its learner section says whether the actor's BC
term uses successful episodes only, as in pre-training and online.

Before it trains, the run's online episodes that ended without a success are relabelled with the
final reward model (the newest version the reward adapted online, else the one it started with):
per frame its debounced verdict with the pair veto, as the task switcher would have judged it; the
loop's successes and the episodes whose outcome a person gave keep their labels. The relabelled copy sits beside the checkpoint (`online_relabelled/`,
its arrays hard links of the run's), and `relabel.json` says what changed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np


def pretrain_overrides(recipe_spec: str, algo: str) -> list[str]:
    """The algorithm settings (KEY=VALUE) a recipe asks of offline training with `algo`."""
    from robofume_ros import recipe
    from robofume_ros.rl.learner import BC_ONLY_SUCCESSFUL

    bc_successful = bool(recipe.load(recipe_spec).get("learner", {}).get("bc_only_successful", False))
    return [f"{BC_ONLY_SUCCESSFUL[algo]}=True"] if bc_successful and algo in BC_ONLY_SUCCESSFUL else []


def person_gave_verdict(meta: dict, success_frames: int) -> bool:
    """A stored online episode whose outcome is not the reward's own debounced verdict: a person's
    override (success now, not a success, undo) decided it."""
    from robofume_ros.reward.debounce import debounce

    prov = meta.get("provenance") or {}
    if prov.get("relabelled") == "override":
        return True
    fired = bool(debounce(prov.get("reward_success") or [], max(1, success_frames)).any())
    return "reward_success" in prov and bool(meta.get("success")) != fired


def _judge(model, images, instruction: str, partner, batch_size: int):
    """P(done) per frame for the instruction and, with a partner, for it too: the image tower runs
    once per frame where the model has one (dual encoders), else the model judges each."""
    if hasattr(model, "image_features"):
        f = model.image_features(images, batch_size=batch_size)
        q = model.predict_proba_features(f, partner) if partner else None
        return model.predict_proba_features(f, instruction), q
    q = model.predict_proba(images, partner, batch_size=batch_size) if partner else None
    return model.predict_proba(images, instruction, batch_size=batch_size), q


def relabel_online(
    online, reward_model, out, success_frames: int = 1, pair=(), batch_size: int = 64, stop=None
) -> dict:
    """Copy the online dataset `online` to `out`, the episodes that ended without a success
    relabelled by `reward_model`: terminal_t where the frame after step t is a success
    (`success_frames` in a row, vetoed when the paired instruction is done too); r = 0 there, -1
    elsewhere. Episodes a person judged keep their labels, and so do the successes the loop ended on:
    the final reward only finds successes the loop missed (withdrawing them was measured wrong: in
    a drawer run with a person's verdicts the adapted reward withdrew 10 successes, 9 of them real). `stop(0)` is called before each episode (it may raise to stop; `out` is then not written).
    Returns the counts (also written to `out`/relabel.json)."""
    from robofume_ros.data.dataset import DatasetError, episode_dirs, load_episode
    from robofume_ros.reward.base import load_reward_model
    from robofume_ros.reward.debounce import debounce, frame_success

    online, out = Path(online), Path(out)
    model = load_reward_model(reward_model)
    thr = float(model.threshold)
    pair = list(pair)
    partner = dict(zip(pair, reversed(pair))) if len(pair) == 2 else {}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(online, tmp, copy_function=os.link)  # hard links: the run's arrays are not copied
    counts = {"episodes": 0, "person_verdicts_kept": 0, "successes_before": 0, "successes_after": 0}
    counts.update({"became_success": 0, "online_successes_kept": 0})
    for d in episode_dirs(tmp):
        if stop is not None:
            stop(0)
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError) as e:
            raise DatasetError(f"cannot relabel {d}: its meta.json cannot be read ({e})") from e
        counts["episodes"] += 1
        counts["successes_before"] += bool(meta.get("success"))
        by_person = person_gave_verdict(meta, success_frames)
        if by_person or meta.get("success"):
            counts["person_verdicts_kept" if by_person else "online_successes_kept"] += 1
            counts["successes_after"] += bool(meta.get("success"))
            continue
        try:
            ep = load_episode(d)
        except DatasetError as e:
            raise DatasetError(f"cannot relabel {d}: {e}") from e
        p, q = _judge(model, ep.images, ep.instruction, partner.get(ep.instruction), batch_size)
        ok = debounce([frame_success(p[t], thr, None if q is None else q[t]) for t in range(len(p))], success_frames)
        terminals = ok[1:].copy()
        rewards = np.where(terminals, 0.0, -1.0).astype(np.float32)
        success = bool(terminals.any())
        counts["successes_after"] += success
        counts["became_success"] += success
        for name, arr in (("rewards.npy", rewards), ("terminals.npy", terminals)):
            with open(d / (name + ".tmp"), "wb") as f:
                np.save(f, arr)
            os.replace(d / (name + ".tmp"), d / name)  # a new file: the hard link to the run's stays intact
        meta["success"] = success
        meta["return"] = float(rewards.sum())
        meta.setdefault("provenance", {})["reward_model"] = {
            "model_id": model.model_id,
            "threshold": thr,
            "success_frames": int(success_frames),
        }
        (d / "meta.json.tmp").write_text(json.dumps(meta, indent=1))
        os.replace(d / "meta.json.tmp", d / "meta.json")
    counts.update({"model": str(reward_model), "model_id": model.model_id, "threshold": thr})
    (tmp / "relabel.json").write_text(json.dumps(counts, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return counts


def online_pair(online) -> tuple:
    """The two instructions of a reset-free pair the online dataset practised (the pair veto of the
    relabelling); () when it holds another number of them (a fleet on several pairs: no veto)."""
    from robofume_ros.data.dataset import load_episodes

    instructions = sorted({e.instruction for e in load_episodes(online, mmap=True)})
    return tuple(instructions) if len(instructions) == 2 else ()


def recipe_success_frames(recipe_spec: str) -> int:
    """The task switcher's debounce in a recipe: how many frames in a row make a success."""
    from robofume_ros import recipe

    return int(recipe.load(recipe_spec).get("task_switcher", {}).get("success_frames", 1))


def retrain(
    datasets: list,
    out: Path,
    recipe_spec: str = "default",
    seed: int = 0,
    device: str = "auto",
    algo: str = "",
    steps: int = 0,
    on_log: Optional[Callable[[int, int, dict], None]] = None,
    stop: Optional[Callable[[int], None]] = None,
    online: list = (),
    reward_model=None,
    success_frames: int = 1,
    pair=(),
) -> int:
    """Train `algo` (default: the recipe's retrain_algo) for `steps` (default: retrain_steps) from
    scratch on `datasets`; the checkpoint goes to `out`/checkpoint.pt, `out`/DONE marks success.
    `on_log(step, steps, metrics)` is called at every log row and `stop(step)` after every update;
    either may raise to stop (the checkpoint of that step is saved first). `online` datasets are
    trained on too, relabelled first with `reward_model` when one is given (relabel_online, into
    `out`/online_relabelled...). Returns `robofume pretrain`'s exit code."""
    from robofume_ros import recipe
    from robofume_ros.pipeline.main_job import run_pretrain

    mp = recipe.main_params(recipe_spec)
    algo = algo or mp.retrain_algo
    if algo not in ("calql", "iql", "cql"):
        raise ValueError(f"retrain algorithm must be calql, iql or cql, got {algo!r}")
    missing = [str(d) for d in [*datasets, *online] if not Path(d).exists()]
    if missing:
        raise ValueError(f"no dataset at {', '.join(missing)}")
    datasets = list(datasets)
    for i, d in enumerate(online):
        if reward_model is None:
            datasets.append(d)
            continue
        dst = Path(out) / ("online_relabelled" + (f"_{i}" if i else ""))
        c = relabel_online(d, reward_model, dst, success_frames, pair, stop=stop)
        print(
            f"[retrain] relabelled the {c['episodes'] - c['online_successes_kept'] - c['person_verdicts_kept']} "
            f"online episodes of {d} that ended without a success with {c['model_id']}: {c['became_success']} "
            f"successes found; successes {c['successes_before']} -> {c['successes_after']} "
            f"({c['person_verdicts_kept']} episodes a person judged kept)",
            flush=True,
        )
        datasets.append(dst)
    return run_pretrain(
        datasets,
        Path(out),
        algo,
        int(steps or mp.retrain_steps),
        seed,
        pretrain_overrides(recipe_spec, algo),
        ["--device", device],
        on_log=on_log,
        stop=stop,
    )


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="robofume retrain",
        description="OOO retraining: a pessimistic policy from scratch on all data (offline datasets and a "
        "run's online episodes), sized by the recipe; --remote asks a running graph's /retrain action",
    )
    ap.add_argument(
        "--data",
        action="append",
        help="dataset folder (repeat); e.g. runs/main_drawer/data and runs/main_drawer/finetune/learner/online",
    )
    ap.add_argument(
        "--online", action="append", default=[], help="a run's online dataset (repeat): relabelled with --reward-model"
    )
    ap.add_argument(
        "--reward-model",
        default=None,
        help="relabel the --online episodes with this reward model first (a person's verdicts are kept)",
    )
    ap.add_argument(
        "--success-frames",
        type=int,
        default=0,
        help="--reward-model: frames in a row that are a success (default: the recipe's)",
    )
    ap.add_argument("--out", help="output folder (checkpoint.pt)")
    ap.add_argument(
        "--recipe", default="default", help="recipe whose main section sizes it (retrain_algo, retrain_steps)"
    )
    ap.add_argument("--algo", default="", help="calql, iql or cql (default: the recipe's retrain_algo)")
    ap.add_argument("--steps", type=int, default=0, help="gradient steps (default: the recipe's retrain_steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--remote", action="store_true", help="send it to the graph's /retrain action (evaluator_node)")
    ap.add_argument("--namespace", default="", help="--remote: the graph's namespace")
    ns = ap.parse_args(argv)
    if ns.remote:
        from robofume_ros.ros.actions import retrain_remote

        return retrain_remote(ns)
    if not (ns.data or ns.online) or not ns.out:
        ap.error("--data (or --online) and --out are required (or --remote)")
    try:
        pair = online_pair(ns.online[0]) if ns.reward_model and ns.online else ()
        return retrain(
            ns.data or [],
            Path(ns.out),
            ns.recipe,
            ns.seed,
            ns.device,
            ns.algo,
            ns.steps,
            online=ns.online,
            reward_model=ns.reward_model,
            success_frames=ns.success_frames or recipe_success_frames(ns.recipe),
            pair=pair,
        )
    except (ValueError, RuntimeError) as e:  # bad arguments, a broken dataset or reward model
        print(f"robofume retrain: {e}")
        return 2
