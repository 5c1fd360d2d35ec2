"""`robofume retrain`: OOO retraining (RoboFuME step 4): a pessimistic policy trained from scratch on all the data --
the offline dataset(s) and the run's online episodes -- for deployment. One implementation for the
main job's retrain stage and the graph's /retrain action (evaluator_node); the recipe's `main`
section sizes it (retrain_algo, retrain_steps) and its learner section says whether the actor's BC
term uses successful episodes only, as in pre-training and online.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional


def pretrain_overrides(recipe_spec: str, algo: str) -> list[str]:
    """The algorithm settings (KEY=VALUE) a recipe asks of offline training with `algo`."""
    from robofume_ros import recipe
    from robofume_ros.rl.learner import BC_ONLY_SUCCESSFUL

    bc_successful = bool(recipe.load(recipe_spec).get("learner", {}).get("bc_only_successful", False))
    return [f"{BC_ONLY_SUCCESSFUL[algo]}=True"] if bc_successful and algo in BC_ONLY_SUCCESSFUL else []


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
) -> int:
    """Train `algo` (default: the recipe's retrain_algo) for `steps` (default: retrain_steps) from
    scratch on `datasets`; the checkpoint goes to `out`/checkpoint.pt, `out`/DONE marks success.
    `on_log(step, steps, metrics)` is called at every log row and `stop(step)` after every update;
    either may raise to stop (the checkpoint of that step is saved first). Returns `robofume pretrain`'s exit code."""
    from robofume_ros import recipe
    from robofume_ros.pipeline.main_job import run_pretrain

    mp = recipe.main_params(recipe_spec)
    algo = algo or mp.retrain_algo
    if algo not in ("calql", "iql", "cql"):
        raise ValueError(f"retrain algorithm must be calql, iql or cql, got {algo!r}")
    missing = [str(d) for d in datasets if not Path(d).exists()]
    if missing:
        raise ValueError(f"no dataset at {', '.join(missing)}")
    return run_pretrain(
        list(datasets),
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
    if not ns.data or not ns.out:
        ap.error("--data and --out are required (or --remote)")
    try:
        return retrain(ns.data, Path(ns.out), ns.recipe, ns.seed, ns.device, ns.algo, ns.steps)
    except ValueError as e:
        print(f"robofume retrain: {e}")
        return 2
