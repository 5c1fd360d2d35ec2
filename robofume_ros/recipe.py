"""The recipe: one set of tuning for every node and for `robofume main`'s offline stages.

A recipe is one or more ROS parameters files in config/recipes/ (or anywhere), layered in order as
ROS applies several --params-file: "default" is config/recipes/default.yaml; any other name or
path is layered on top of it ("quick" -> default.yaml + quick.yaml; "my.yaml" -> default.yaml +
my.yaml), so a variant file holds only what differs. The launch files, `robofume launch`,
`robofume main` and the experiments all go through `files()`; nodes read their sections as
ordinary parameters, and the `main` section (not a node) sizes the main job's offline stages.
No rclpy here: the core and the CLI read recipes too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from robofume_ros.ros.params import knob

DEFAULT = "default"
MAIN_SECTION = "main"


class RecipeError(ValueError):
    """A recipe file is missing or malformed; the message names the file."""


def recipes_dir() -> Path:
    from robofume_ros.ros.graph import package_share

    return package_share() / "config" / "recipes"


def _one(spec: str) -> Path:
    p = Path(spec).expanduser()
    if spec.endswith((".yaml", ".yml")) or p.is_file():
        if not p.is_file():
            raise RecipeError(f"recipe file {p} does not exist")
        return p
    named = recipes_dir() / f"{spec}.yaml"
    if not named.is_file():
        known = sorted(q.stem for q in recipes_dir().glob("*.yaml"))
        raise RecipeError(f"unknown recipe {spec!r}: no {named}; known: {', '.join(known)} (or a .yaml path)")
    return named


def files(spec: str = DEFAULT) -> list[Path]:
    """The params files of a recipe, in the order they apply: default.yaml first, then each
    comma-separated name or path of `spec` that is not "default"."""
    parts = [s.strip() for s in (spec or DEFAULT).split(",") if s.strip()]
    out = [_one(DEFAULT)]
    for s in parts:
        p = _one(s)
        if p not in out:
            out.append(p)
    return out


def _read(path: Path) -> dict:
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: cannot read the recipe ({e})") from e
    if not isinstance(d, dict):
        raise RecipeError(f"{path}: a recipe is a ROS parameters file (node: ros__parameters: ...)")
    out = {}
    for node, sec in d.items():
        if not isinstance(sec, dict) or set(sec) != {"ros__parameters"} or not isinstance(sec["ros__parameters"], dict):
            raise RecipeError(f"{path}: section {node!r} must hold exactly one 'ros__parameters' mapping")
        out[node] = dict(sec["ros__parameters"])
    return out


def load(spec: str = DEFAULT) -> dict:
    """{section: {parameter: value}} of a recipe, its files merged in order."""
    merged: dict = {}
    for f in files(spec):
        for node, params in _read(f).items():
            merged.setdefault(node, {}).update(params)
    return merged


def param(spec: str, node: str, name: str):
    """One node parameter as the recipe sets it (KeyError when the recipe leaves it to the node)."""
    return load(spec)[node][name]


@dataclass
class MainParams:
    """`robofume main`'s offline stages: the recipe's `main` section."""

    demos: int = knob(20, "target demos per direction (0: the dataset generator's own --quick sizes)")
    reward_epochs: int = knob(60, "reward classifier fine-tuning epochs")
    reward_max_fpr: float = knob(0.01, "FP-rate cap on held-out frames when the reward threshold is chosen")
    reward_threshold_method: str = knob(
        "fpr_floor",
        "how the reward threshold is chosen on held-out frames: fpr_floor (the lowest threshold within "
        "the FP-rate cap) or fpr_cap (the middle of the range that meets it)",
        choices=("fpr_floor", "fpr_cap"),
    )
    reward_threshold_neg_frac: float = knob(
        1.0,
        "the threshold is chosen with this first fraction of each held-out demo as negatives (1.0: every "
        "frame before its last ones, the almost-done frames as hard as online ones)",
        range=(0.0, 1.0),
    )
    reward_reverse_k: int = knob(3, "start frames of a demo used as positives of the paired task (its goal state)")
    reward_pair_negatives: int = knob(3, "end frames of a demo used as negatives of the paired task")
    reward_precision: str = knob(
        "fp32",
        "the reward's image-tower precision in training and in the loop: fp32 judges on the camera's shared "
        "features (one encoder pass per frame for the whole graph); bf16 (or auto) runs its own tower",
        choices=("fp32", "bf16", "auto"),
    )
    pretrain_steps: int = knob(3000, "Cal-QL offline pre-training gradient steps")
    budget_steps: int = knob(9000, "online environment steps of reset-free fine-tuning")
    retrain_algo: str = knob("calql", "OOO's pessimistic offline algorithm from scratch on all data: calql or iql")
    retrain_steps: int = knob(3000, "OOO retraining gradient steps")
    eval_trials: int = knob(20, "evaluation trials per task and policy")


def main_params(spec: str = DEFAULT) -> MainParams:
    sec = load(spec).get(MAIN_SECTION, {})
    known = {f.name for f in dataclasses.fields(MainParams)}
    bad = set(sec) - known
    if bad:
        raise RecipeError(f"recipe {spec!r}: unknown '{MAIN_SECTION}' parameters {sorted(bad)}; known: {sorted(known)}")
    return MainParams(**sec)
