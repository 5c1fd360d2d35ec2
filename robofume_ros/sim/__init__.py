"""sim: MuJoCo / Meta-World reset-free worlds (pure Python, never imports rclpy).

from robofume_ros.sim import ResetFreeWorld, SingleTaskWorld, PAIRS, prior_tasks
"""

from robofume_ros.sim.tasks import (
    ALL_TASKS,
    DEFAULT_PAIR,
    INSTRUCTIONS,
    PAIRS,
    RELIABLE_PRIOR_TASKS,
    TaskPair,
    env_name,
    get_pair,
    instruction,
    prior_tasks,
)
from robofume_ros.sim.world import (
    ACTION_DIM,
    DEFAULT_CAMERA,
    DEFAULT_IMAGE_SIZE,
    PHASES,
    PROPRIO_DIM,
    Obs,
    ResetFreeWorld,
    SingleTaskWorld,
    VisualPerturbation,
)

__all__ = [
    "ALL_TASKS",
    "DEFAULT_PAIR",
    "INSTRUCTIONS",
    "PAIRS",
    "RELIABLE_PRIOR_TASKS",
    "TaskPair",
    "env_name",
    "get_pair",
    "instruction",
    "prior_tasks",
    "ACTION_DIM",
    "DEFAULT_CAMERA",
    "DEFAULT_IMAGE_SIZE",
    "PHASES",
    "PROPRIO_DIM",
    "Obs",
    "ResetFreeWorld",
    "SingleTaskWorld",
    "VisualPerturbation",
]
