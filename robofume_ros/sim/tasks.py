"""Meta-World v3 task table: task ids, language instructions, reset-free pairs and prior tasks.

Task ids are Meta-World names without the ``-v3`` suffix (``"drawer-open"``); use
:func:`env_name` to get the Meta-World key. Nothing here imports MuJoCo or Meta-World,
so the table is cheap to import from anywhere (reward models, dataset tools, nodes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

METAWORLD_SUFFIX = "-v3"

# One instruction per task, phrased like BridgeData / RoboFuME prompts (imperative, lower case).
INSTRUCTIONS: dict[str, str] = {
    "assembly": "put the ring on the peg",
    "basketball": "put the ball into the basketball hoop",
    "bin-picking": "move the cube from one bin to the other bin",
    "box-close": "put the lid on the box",
    "button-press-topdown": "press the button from the top",
    "button-press-topdown-wall": "press the button behind the wall from the top",
    "button-press": "press the button",
    "button-press-wall": "press the button behind the wall",
    "coffee-button": "press the button on the coffee machine",
    "coffee-pull": "pull the mug away from the coffee machine",
    "coffee-push": "push the mug under the coffee machine",
    "dial-turn": "turn the dial",
    "disassemble": "take the ring off the peg",
    "door-close": "close the door",
    "door-lock": "lock the door",
    "door-open": "open the door",
    "door-unlock": "unlock the door",
    "hand-insert": "move your hand into the hole",
    "drawer-close": "close the drawer",
    "drawer-open": "open the drawer",
    "faucet-open": "open the faucet",
    "faucet-close": "close the faucet",
    "hammer": "hammer the nail into the wall",
    "handle-press-side": "press the handle down from the side",
    "handle-press": "press the handle down",
    "handle-pull-side": "pull the handle up from the side",
    "handle-pull": "pull the handle up",
    "lever-pull": "pull the lever up",
    "pick-place-wall": "pick up the puck and place it behind the wall",
    "pick-out-of-hole": "pick the peg out of the hole",
    "pick-place": "pick up the puck and place it at the goal",
    "plate-slide": "slide the plate into the cabinet",
    "plate-slide-side": "slide the plate sideways into the cabinet",
    "plate-slide-back": "slide the plate out of the cabinet",
    "plate-slide-back-side": "slide the plate sideways out of the cabinet",
    "peg-insert-side": "insert the peg into the hole from the side",
    "peg-unplug-side": "unplug the peg from the side",
    "soccer": "kick the ball into the goal",
    "stick-push": "push the thermos with the stick",
    "stick-pull": "pull the thermos with the stick",
    "push": "push the puck to the goal",
    "push-wall": "push the puck to the goal around the wall",
    "push-back": "pull the puck back to the goal",
    "reach": "reach to the goal",
    "reach-wall": "reach to the goal over the wall",
    "shelf-place": "put the puck on the shelf",
    "sweep-into": "sweep the puck into the hole",
    "sweep": "sweep the puck off the table",
    "window-open": "open the window",
    "window-close": "close the window",
}

ALL_TASKS: tuple[str, ...] = tuple(INSTRUCTIONS)


TIME_LIMIT_FACTOR = 1.5  # an episode's time limit: this times the longest demo of its direction


@dataclass(frozen=True)
class TaskPair:
    """A reset-free pair: the forward task's end state is the backward task's start and vice versa.

    The one definition of a task that data generation, the sim node, the task switcher, the reward
    node's paired instructions, evaluation and the report read. ``forward`` / ``backward`` are task
    ids (Meta-World ids for the simulated pairs; any name for a real robot's task);
    instructions default to the Meta-World table's. ``time_limits`` (forward, backward) are used
    where no demos are at hand to derive them from (:func:`time_limits`). ``camera`` is the
    simulated scene's camera (Meta-World camera name)."""

    name: str
    forward: str
    backward: str
    forward_instruction: str = ""
    backward_instruction: str = ""
    time_limits: tuple = (150, 150)
    camera: str = "corner4"
    simulated: bool = True  # False: a real robot's task (no Meta-World world to build)
    # Meta-World pairs whose backward env reads the shared placement as its own (object start, goal):
    # with inverse_placement the backward task's object start is the forward goal and its goal the
    # forward object start, and the bodies in shared_bodies (moved by each env's reset in its own
    # model) are taken from the forward model, so both tasks see one scene
    inverse_placement: bool = False
    shared_bodies: tuple = ()

    def __post_init__(self):
        for phase in ("forward", "backward"):
            if not getattr(self, f"{phase}_instruction"):
                task = getattr(self, phase)
                if task not in INSTRUCTIONS:
                    raise ValueError(
                        f"pair {self.name!r}: no {phase}_instruction and {task!r} is not a "
                        f"Meta-World task with a known instruction"
                    )
                object.__setattr__(self, f"{phase}_instruction", INSTRUCTIONS[task])
        if self.forward_instruction == self.backward_instruction:
            raise ValueError(f"pair {self.name!r}: the two instructions must differ")
        lim = tuple(int(x) for x in self.time_limits)
        if len(lim) != 2 or min(lim) <= 0:
            raise ValueError(
                f"pair {self.name!r}: time_limits must be two positive step counts, got {self.time_limits}"
            )
        object.__setattr__(self, "time_limits", lim)
        object.__setattr__(self, "shared_bodies", tuple(self.shared_bodies))

    def task(self, phase: str) -> str:
        if phase == "forward":
            return self.forward
        if phase == "backward":
            return self.backward
        raise ValueError(f"phase must be 'forward' or 'backward', got {phase!r}")

    def instruction(self, phase: str) -> str:
        self.task(phase)
        return getattr(self, f"{phase}_instruction")

    @property
    def tasks(self) -> tuple[str, str]:
        return (self.forward, self.backward)

    @property
    def instructions(self) -> tuple[str, str]:
        return (self.forward_instruction, self.backward_instruction)

    def as_dict(self) -> dict:
        """The definition as plain data (lists, not tuples: it goes into YAML and JSON)."""
        return {**asdict(self), "time_limits": list(self.time_limits), "shared_bodies": list(self.shared_bodies)}


# Meta-World pairs whose scripted experts succeed both ways, reset-free, on one shared scene
# (`robofume tasks --cycles 10 --seeds 0 1` measures it). time_limits: TIME_LIMIT_FACTOR x the longest
# scripted episode of each direction in 20 reset-free cycles (scene seeds 0 and 1, expert noise 0.1,
# arm homed +- 10 cm), rounded up to 10 steps; with a dataset at hand they come from its demos instead.
# Measured and left out: faucet (faucet-close does not close the opened faucet), door (door-open
# fails 20-40%), coffee (coffee-pull fails often even with inverse_placement).
PAIRS: dict[str, TaskPair] = {
    p.name: p
    for p in (
        TaskPair("drawer", "drawer-open", "drawer-close", time_limits=(160, 160)),
        TaskPair("window", "window-open", "window-close", time_limits=(140, 140)),
        TaskPair("handle", "handle-press", "handle-pull", time_limits=(90, 230)),
        TaskPair("door-lock", "door-lock", "door-unlock", time_limits=(240, 230)),
        TaskPair("handle-side", "handle-press-side", "handle-pull-side", time_limits=(90, 240)),
        TaskPair(
            "plate-slide",
            "plate-slide",
            "plate-slide-back",
            time_limits=(100, 140),
            inverse_placement=True,
            shared_bodies=("puck_goal",),
        ),
        TaskPair(
            "plate-slide-side",
            "plate-slide-side",
            "plate-slide-back-side",
            time_limits=(270, 100),
            inverse_placement=True,
            shared_bodies=("puck_goal",),
        ),
    )
}
DEFAULT_PAIR = "drawer"

# Tasks whose Meta-World v3 scripted expert (metaworld.policies, no noise) reached
# info['success'] in all 16 surveyed episodes (2 seeds x 6 and 10 fresh placements, 500-step
# budget; mujoco 3.3.0, metaworld 3.1.1), ordered by mean steps to first success.
# Left out for failing at least once: basketball, box-close, button-press-wall, disassemble,
# peg-insert-side, soccer, stick-pull.
# The list still holds the reset-free pairs' tasks; prior_tasks() drops the target pair's.
RELIABLE_PRIOR_TASKS: tuple[str, ...] = (
    "handle-press",  # mean 32 steps, max 41
    "coffee-button",  # mean 36 steps, max 42
    "handle-press-side",  # mean 43 steps, max 53
    "door-unlock",  # mean 43 steps, max 47
    "reach-wall",  # mean 45 steps, max 51
    "plate-slide-back-side",  # mean 45 steps, max 55
    "reach",  # mean 46 steps, max 57
    "plate-slide-side",  # mean 48 steps, max 52
    "plate-slide",  # mean 51 steps, max 54
    "pick-place",  # mean 52 steps, max 58
    "sweep-into",  # mean 54 steps, max 64
    "coffee-push",  # mean 55 steps, max 58
    "button-press-topdown-wall",  # mean 58 steps, max 64
    "faucet-open",  # mean 59 steps, max 64
    "hand-insert",  # mean 60 steps, max 69
    "push",  # mean 60 steps, max 70
    "button-press",  # mean 60 steps, max 63
    "faucet-close",  # mean 65 steps, max 69
    "door-close",  # mean 66 steps, max 76
    "plate-slide-back",  # mean 66 steps, max 84
    "hammer",  # mean 66 steps, max 73
    "button-press-topdown",  # mean 67 steps, max 75
    "dial-turn",  # mean 73 steps, max 81
    "stick-push",  # mean 74 steps, max 78
    "push-wall",  # mean 77 steps, max 88
    "lever-pull",  # mean 78 steps, max 92
    "drawer-close",  # mean 78 steps, max 79
    "coffee-pull",  # mean 79 steps, max 87
    "door-lock",  # mean 81 steps, max 126
    "window-close",  # mean 81 steps, max 88
    "door-open",  # mean 82 steps, max 119
    "pick-place-wall",  # mean 83 steps, max 96
    "handle-pull-side",  # mean 86 steps, max 115
    "sweep",  # mean 87 steps, max 104
    "window-open",  # mean 88 steps, max 96
    "drawer-open",  # mean 88 steps, max 92
    "assembly",  # mean 89 steps, max 97
    "peg-unplug-side",  # mean 100 steps, max 132
    "handle-pull",  # mean 102 steps, max 126
    "shelf-place",  # mean 108 steps, max 266
    "pick-out-of-hole",  # mean 116 steps, max 127
    "bin-picking",  # mean 118 steps, max 157
    "push-back",  # mean 188 steps, max 352
)


def env_name(task: str) -> str:
    """Meta-World key for a task id: ``"drawer-open"`` -> ``"drawer-open-v3"``."""
    check_task(task)
    return task + METAWORLD_SUFFIX


def check_task(task: str) -> str:
    if task not in INSTRUCTIONS:
        raise KeyError(f"unknown Meta-World task {task!r}; known: {', '.join(ALL_TASKS)}")
    return task


def instruction(task: str) -> str:
    """Language instruction for a task id."""
    return INSTRUCTIONS[check_task(task)]


def load_pair_file(path) -> TaskPair:
    """A task pair from a YAML file (a user's own task: no code change), e.g.

    name: cup
    forward: cup-place          # task ids: Meta-World ids to simulate, any name on a real robot
    backward: cup-remove
    forward_instruction: put the cup on the saucer
    backward_instruction: take the cup off the saucer
    time_limits: [200, 200]     # control ticks per episode when no demos give them
    simulated: false            # a real robot's task (no Meta-World scene)
    """
    import yaml

    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read the task file ({e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a task file is a YAML mapping with name, forward, backward, ...")
    known = {f.name for f in fields(TaskPair)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    missing = {"forward", "backward"} - set(d)
    if missing:
        raise ValueError(f"{path}: missing {sorted(missing)}")
    d.setdefault("name", path.stem)
    if "time_limits" in d:
        d["time_limits"] = tuple(d["time_limits"])
    try:
        pair = TaskPair(**d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e
    if pair.simulated:
        for t in pair.tasks:
            if t not in INSTRUCTIONS:
                raise ValueError(f"{path}: {t!r} is not a Meta-World task (set simulated: false for a real task)")
    return pair


def get_pair(pair: "str | TaskPair") -> TaskPair:
    """A pair by name (PAIRS) or from a task file path (ending in .yaml / .yml)."""
    if isinstance(pair, TaskPair):
        return pair
    if isinstance(pair, str) and pair.endswith((".yaml", ".yml")):
        return load_pair_file(pair)
    if pair not in PAIRS:
        raise KeyError(f"unknown reset-free pair {pair!r}; known: {', '.join(PAIRS)} (or a task file .yaml)")
    return PAIRS[pair]


def time_limits(pair: "str | TaskPair", demo_lengths: "dict | None" = None) -> tuple[int, int]:
    """(forward, backward) episode time limits: TIME_LIMIT_FACTOR x the longest demo of each
    direction, rounded up to 10 steps (`demo_lengths`: {"forward": [...], "backward": [...]});
    the pair's own time_limits for a direction without demos."""
    p = get_pair(pair)
    out = []
    for i, phase in enumerate(("forward", "backward")):
        lengths = (demo_lengths or {}).get(phase) or []
        if lengths:
            out.append(int(math.ceil(TIME_LIMIT_FACTOR * max(lengths) / 10.0) * 10))
        else:
            out.append(p.time_limits[i])
    return out[0], out[1]


def prior_tasks(pair: "str | TaskPair" = DEFAULT_PAIR, n: int | None = None) -> list[str]:
    """Tasks usable as prior data for a target pair: reliable scripted experts, excluding the
    pair's own tasks. ``n`` keeps the first n (raises if fewer are available)."""
    p = get_pair(pair)
    out = [t for t in RELIABLE_PRIOR_TASKS if t not in p.tasks]
    if n is not None:
        if n > len(out):
            raise ValueError(f"only {len(out)} prior tasks available for pair {p.name!r}, asked {n}")
        out = out[:n]
    return out
