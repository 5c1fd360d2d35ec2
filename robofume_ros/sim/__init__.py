"""sim: MuJoCo / Meta-World reset-free worlds (pure Python, never imports rclpy).

from robofume_ros.sim import ResetFreeWorld, SingleTaskWorld, PAIRS, prior_tasks
"""

from robofume_ros.sim.tasks import (  # noqa: F401
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
from robofume_ros.sim.world import (  # noqa: F401
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
