"""The graph's interfaces in one place, without ROS imports: every topic's name and message type,
where the .msg files are, and the constants they define (read from msg/*.msg, so the core and the
nodes use exactly the values the generated messages carry).

    from robofume_ros.interfaces import TOPICS, MSGTYPES, TASK_PHASE
    TOPICS["task_phase"], MSGTYPES["task_phase"], TASK_PHASE["REASON_SUCCESS"]
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

PACKAGE = "robofume_ros"

# topic key -> (name, message type). Names are relative: a node resolves them in its namespace
# (`namespace:=robot1` puts the graph's topics under /robot1/...; without one they are /observation,
# /robot/command, ...). /diagnostics stays global, as ROS tools expect it. Nodes take the names as
# their defaults, so remapping is the only way to change them, and both launchers apply the same
# remappings.
_TABLE = {
    "image": ("camera/image_raw", "sensor_msgs/msg/Image"),  # from the sim or a real camera
    "observation": ("observation", "robofume_ros/msg/Observation"),  # control rate
    # nothing is published here: a node that can use the camera's shared image features subscribes,
    # and the camera computes them only while someone does (a lazy publisher, as image_transport's)
    "features_wanted": ("observation/features_wanted", "std_msgs/msg/Empty"),
    "command": ("robot/command", "robofume_ros/msg/ArmCommand"),  # from policy / scripted / teleop
    "intervention": ("robot/intervention", "robofume_ros/msg/ArmCommand"),  # a human's; overrides the policy
    # what the arm executed while a person had it, stamped with the observation it answered (the
    # newest policy command's stamp): the learner and the dataset tools store it as that step's action
    "executed": ("robot/executed", "robofume_ros/msg/ArmCommand"),
    "state": ("robot/state", "robofume_ros/msg/RobotState"),
    "stop": ("robot/stop", "std_msgs/msg/Bool"),  # true halts the arm within one tick, false releases
    "expert_state": ("sim/expert_state", "std_msgs/msg/Float64MultiArray"),  # privileged sim state, scripted experts
    "reward": ("reward", "robofume_ros/msg/Reward"),
    "task_phase": ("task_phase", "robofume_ros/msg/TaskPhase"),  # latched
    "reward_override": ("reward_override", "robofume_ros/msg/RewardOverride"),  # a person's verdict
    "ground_truth": ("eval/ground_truth", "robofume_ros/msg/GroundTruth"),  # evaluation only, never a reward
    "weights": ("policy/weights", "robofume_ros/msg/PolicyWeights"),  # latched
    # how far the learner's updates cover the robot's steps, and how far it has received them: a
    # lockstep simulator waits on it, so sim time runs as fast as learning allows
    "learner_pace": ("learner/pace", "robofume_ros/msg/LearnerPace"),
    "help": ("task_switcher/help", "std_msgs/msg/String"),  # the switcher asks a human for help
    "safety": ("robot/safety", "std_msgs/msg/String"),  # latched JSON: safety envelope counts and state
    "diagnostics": ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray"),  # every node's health, 1 Hz
    # backfill: a learner that was down or cut off asks the recorder for what it missed (JSON
    # {"request": id, "since_ns": stamp}); the recorder replays it on backfill/<topic>, then "done"
    "backfill_request": ("backfill/request", "std_msgs/msg/String"),
    "backfill_done": ("backfill/done", "std_msgs/msg/String"),
}
TOPICS: dict[str, str] = {k: v[0] for k, v in _TABLE.items()}
MSGTYPES: dict[str, str] = {k: v[1] for k, v in _TABLE.items()}
BACKFILL_KEYS = ("observation", "command", "executed", "reward", "task_phase")  # the learner's inputs, replayable


def normalize_namespace(namespace: str) -> str:
    """'robot1', '/robot1/' -> '/robot1'; '' and '/' -> '' (the root). A namespace is made of ROS
    name tokens (letters, digits, underscores, not starting with a digit) separated by '/'."""
    parts = [t for t in (namespace or "").strip().split("/") if t]
    for t in parts:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", t):
            raise ValueError(
                f"invalid namespace {namespace!r}: {t!r} is not a ROS name token "
                "(letters, digits and underscores, not starting with a digit)"
            )
    return "".join("/" + t for t in parts)


def topic_name(key: str, namespace: str = "") -> str:
    """The absolute name of topic `key` in a graph under `namespace` ('' = the root), as a bag
    records it: topic_name("observation") == "/observation", topic_name("reward", "robot1") ==
    "/robot1/reward"; global names (/diagnostics) stay as they are."""
    return resolve_name(TOPICS[key], namespace)


def resolve_name(name: str, namespace: str = "") -> str:
    """A topic name as a node in `namespace` resolves it: absolute names stay, relative ones go
    under the namespace ('reward', 'robot1' -> '/robot1/reward')."""
    return name if name.startswith("/") else f"{normalize_namespace(namespace)}/{name}"


def topic_key(topic: str):
    """The table's key of a topic name, relative or absolute, in any namespace ('/robot1/reward'
    -> 'reward'); None for a topic that is not the graph's."""
    t = "/" + topic.strip("/")
    matches = [
        (len(name), k)
        for k, name in TOPICS.items()
        if t == "/" + name.strip("/") or (not name.startswith("/") and t.endswith("/" + name))
    ]
    return max(matches)[1] if matches else None


def bag_namespace(topics, key: str = "observation") -> str:
    """The namespace a recording's graph ran under, from the topic names in it: the prefix of its
    `key` topic ('' for /observation, '/robot1' for /robot1/observation). Backfill replays are not
    the graph's topics. ValueError when several namespaces hold it (say which one to read)."""
    suffix = "/" + TOPICS[key]
    found = sorted({t[: -len(suffix)] for t in topics if t.endswith(suffix) and "/backfill/" not in t + "/"})
    if len(found) > 1:
        raise ValueError(
            f"the recording holds {TOPICS[key]} of several namespaces ({', '.join(f or '/' for f in found)}); "
            "choose one (namespace=...)"
        )
    return found[0] if found else ""


def backfill_topic(key: str) -> str:
    """Where the recorder replays topic `key` for a backfill: backfill/<its name>."""
    return "backfill/" + TOPICS[key]


def msg_dir() -> Path:
    """The folder with robofume_ros' .msg files: $ROBOFUME_MSG_DIR, the checkout's msg/, or the
    installed share/robofume_ros/msg (found with ament_index_python)."""
    tried = []
    env = os.environ.get("ROBOFUME_MSG_DIR")
    if env:
        tried.append(Path(env))
    tried.append(Path(__file__).resolve().parents[1] / "msg")
    try:
        from ament_index_python.packages import get_package_share_directory  # no rclpy inside

        tried.append(Path(get_package_share_directory(PACKAGE)) / "msg")
    except Exception:  # noqa: BLE001 - not installed / ament_index not importable / AMENT_PREFIX_PATH unset
        pass
    for p in tried:
        if p.is_dir() and any(p.glob("*.msg")):
            return p
    raise FileNotFoundError(
        "cannot find robofume_ros .msg files; looked in "
        + ", ".join(str(p) for p in tried)
        + " (set ROBOFUME_MSG_DIR or install the package so share/robofume_ros/msg exists)"
    )


_CONST = re.compile(r"^\s*(u?int\d+|float\d+|bool|string)\s+([A-Z][A-Z0-9_]*)\s*=\s*(\S+)")


@lru_cache(maxsize=None)
def msg_constants(name: str) -> dict:
    """The constants a robofume_ros message defines, e.g. msg_constants("TaskPhase")["REASON_SUCCESS"]."""
    path = msg_dir() / f"{name}.msg"
    out = {}
    for line in path.read_text().splitlines():
        m = _CONST.match(line.split("#", 1)[0])
        if m:
            kind, key, value = m.groups()
            out[key] = int(value) if "int" in kind else float(value) if "float" in kind else value
    return out


TASK_PHASE = msg_constants("TaskPhase")


def command_to_action(msg, action_dim: int):
    """An ArmCommand (an rclpy message or a bag's deserialised one) -> the normalized action of
    `action_dim` (4: xyz + gripper, 7: xyz + rpy + gripper) components, float64 as sent."""
    import numpy as np

    t = msg.translation
    if action_dim == 4:
        return np.array([t.x, t.y, t.z, msg.gripper], dtype=np.float64)
    if action_dim == 7:
        r = msg.rotation
        return np.array([t.x, t.y, t.z, r.x, r.y, r.z, msg.gripper], dtype=np.float64)
    raise ValueError(f"action_dim must be 4 or 7, got {action_dim}")
