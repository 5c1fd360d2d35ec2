"""The one description of the node graph.

`launch/*.launch.py` (for `ros2 launch` on a ROS 2 distro) and `robofume launch` (the package's
own runner, for machines without ros2launch) both call `nodes(graph_name, args)` and start exactly
what it returns: same executables, node names, parameter files, overrides and remappings.

Topic names live in TOPICS; nodes take them as their defaults, so remapping is the only way to
change them and both launchers apply the same remappings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

# --- topics every node agrees on ------------------------------------------------------------
TOPICS = {
    "image": "/camera/image_raw",          # sensor_msgs/Image from the sim or a real camera
    "observation": "/observation",         # robofume_ros/Observation, control rate
    "command": "/robot/command",           # robofume_ros/ArmCommand, from policy / scripted / teleop
    "intervention": "/robot/intervention", # robofume_ros/ArmCommand from a human; overrides the policy
    "state": "/robot/state",               # robofume_ros/RobotState
    "stop": "/robot/stop",                 # std_msgs/Bool: true halts the arm within one tick, false releases
    "expert_state": "/sim/expert_state",   # std_msgs/Float64MultiArray: privileged sim state for scripted experts
    "reward": "/reward",                   # robofume_ros/Reward
    "task_phase": "/task_phase",           # robofume_ros/TaskPhase (latched)
    "ground_truth": "/eval/ground_truth",  # robofume_ros/GroundTruth: evaluation only, never a reward
    "weights": "/policy/weights",          # robofume_ros/PolicyWeights (latched)
    "help": "/task_switcher/help",         # std_msgs/String: the switcher asks a human for help
    "safety": "/robot/safety",             # std_msgs/String (latched JSON): safety envelope counts and state
}

GRAPHS = ("sim", "finetune")


@dataclass(frozen=True)
class Override:
    node: str          # node name the parameter belongs to
    param: str         # parameter name on that node
    kind: type = str   # how the launch argument's string is converted


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    overrides: tuple = ()   # parameters this argument sets when it is not empty


def _ov(*items) -> tuple:
    return tuple(Override(*i) for i in items)


ARGUMENTS: list[LaunchArg] = [
    LaunchArg("world", "drawer", "simulated reset-free pair: drawer, window, handle or door-lock "
              "(selects config/sim_<world>.yaml unless params_file is given)"),
    LaunchArg("robot", "sim", "sim (MuJoCo) or a real arm config name (franka, widowx): selects config/<robot>.yaml"),
    LaunchArg("params_file", "", "ROS parameters file for every node (default: from world/robot)"),
    LaunchArg("policy", "scripted", "who commands the arm: scripted (Meta-World experts) or learned (policy_node)"),
    LaunchArg("use_sim_time", "false", "run every node on /clock published by the simulator",
              _ov(*[(n, "use_sim_time", bool) for n in ("sim", "camera", "scripted_policy", "policy",
                                                         "task_switcher", "reward", "learner", "recorder")])),
    LaunchArg("fast", "false", "step the simulator as fast as the loop allows (lockstep with the policy) "
              "and publish /clock; use with use_sim_time:=true", _ov(("sim", "lockstep", bool))),
    LaunchArg("control_rate_hz", "", "control rate in Hz (default from params file)",
              _ov(("sim", "control_rate_hz", float), ("camera", "control_rate_hz", float),
                  ("task_switcher", "control_rate_hz", float))),
    LaunchArg("seed", "", "random seed for the simulator and the stochastic policies",
              _ov(("sim", "seed", int), ("standin_driver", "seed", int), ("scripted_policy", "seed", int),
                  ("policy", "seed", int), ("learner", "seed", int))),
    LaunchArg("max_episode_steps", "", "time limit of one forward or backward episode, in control ticks",
              _ov(("task_switcher", "max_episode_steps", int))),
    LaunchArg("backward_max_episode_steps", "", "time limit of a backward (reset) episode, in control ticks "
              "(0: max_episode_steps)", _ov(("task_switcher", "backward_max_episode_steps", int))),
    LaunchArg("success_frames", "", "consecutive frames the success source must say done before an episode "
              "ends (debounces reward false positives)", _ov(("task_switcher", "success_frames", int))),
    LaunchArg("help_after_timeouts", "", "consecutive timeouts before the switcher pauses and asks a human "
              "for help (0 = never, e.g. unattended simulation)", _ov(("task_switcher", "help_after_timeouts", int))),
    LaunchArg("success_source", "", "what ends an episode as a success: reward (the learned /reward) or "
              "ground_truth (simulator, for scripted data collection only)", _ov(("task_switcher", "success_source", str))),
    LaunchArg("home_on_switch", "", "simulator: the arm goes home (scene untouched) at every task switch",
              _ov(("sim", "home_on_switch", bool))),
    LaunchArg("home_jitter", "", "simulator: random offset of the arm's home pose at a switch, metres per axis "
              "(start-state diversity)", _ov(("sim", "home_jitter_m", float))),
    LaunchArg("action_noise", "", "std of Gaussian noise added to scripted actions",
              _ov(("scripted_policy", "noise_std", float))),
    LaunchArg("record", "true", "record every observation, command, reward and switch to a rosbag2 (MCAP)"),
    LaunchArg("bag_dir", "", "where the recorder writes (default: <run_dir>/bags)", _ov(("recorder", "output_dir", str))),
    LaunchArg("policy_checkpoint", "", "actor checkpoint for the learned policy",
              _ov(("policy", "checkpoint", str), ("learner", "init_checkpoint", str))),
    LaunchArg("reward_model", "", "reward model checkpoint folder", _ov(("reward", "model_path", str))),
    LaunchArg("reward_threshold", "", "decision threshold of the reward (default: the one stored with the model)",
              _ov(("reward", "threshold", float))),
    LaunchArg("offline_dataset", "", "dataset folder(s), comma-separated, mixed into online training (Cal-QL 50/50)",
              _ov(("learner", "offline_dataset", list))),
    LaunchArg("budget_steps", "", "online environment steps before the learner finishes",
              _ov(("learner", "budget_steps", int))),
    LaunchArg("exploration_noise", "", "learned policy: its action std while fine-tuning is scaled by this "
              "(1: the actor's own, 0: deterministic)", _ov(("policy", "noise_scale", float))),
    LaunchArg("exploration_correlation", "", "learned policy: AR(1) correlation of its exploration noise between "
              "ticks (0: white; 0.9: deviations lasting ~10 ticks)", _ov(("policy", "noise_correlation", float))),
    LaunchArg("n_step", "", "critics' TD horizon while fine-tuning, in steps (0: the pre-trained checkpoint's)",
              _ov(("learner", "n_step", int))),
    LaunchArg("bc_weight", "", "actor BC weight while fine-tuning (-1: the pre-trained checkpoint's)",
              _ov(("learner", "bc_weight", float))),
    LaunchArg("bc_only_successful", "", "actor BC term only on episodes that succeeded (true/false; default "
              "from the params file)", _ov(("learner", "bc_only_successful", bool))),
    LaunchArg("bc_online", "", "actor BC term also on online attempts (true/false; false: offline data only)",
              _ov(("learner", "bc_online", bool))),
    LaunchArg("bc_self_imitation", "", "online attempts cloned only where their return beat the critic's value of "
              "the deterministic policy (true/false; with bc_online true)", _ov(("learner", "bc_self_imitation", bool))),
    LaunchArg("bc_online_pre_tanh", "", "online attempts cloned in pre-tanh space, unbiased for the policy's own "
              "noisy actions (true/false; with bc_online true)", _ov(("learner", "bc_online_pre_tanh", bool))),
    LaunchArg("run_dir", "", "folder for logs, bags, checkpoints (default: runs/<timestamp>)",
              _ov(("learner", "run_dir", str))),
]
ARGUMENTS += [   # real-arm launch arguments (robot != sim)
    LaunchArg("standin_driver", "false", "real-arm graph without an arm: a MuJoCo stand-in plays the arm driver "
              "(Servo twist / joint trajectory in, joint states out) and the camera"),
    LaunchArg("teleop", "false", "start teleop_node (sensor_msgs/Joy or geometry_msgs/Twist -> /robot/intervention, "
              "~/request_reset)"),
    LaunchArg("arm_interface", "", "override the config's arm interface: servo (MoveIt Servo) or joint_trajectory "
              "(ros2_control + IK)", _ov(("arm_bridge", "interface", str))),
]
ARGUMENT_NAMES = [a.name for a in ARGUMENTS]


@dataclass
class NodeSpec:
    name: str                       # ROS node name (also the section in the params file)
    executable: str                 # robofume_ros/nodes/<executable>.py, installed as an executable
    params_file: str                # the world's / robot's params file
    parameters: dict = field(default_factory=dict)    # overrides from launch arguments
    remappings: list = field(default_factory=list)    # (from, to)
    required: bool = True           # the run stops when a required node dies
    respawn: bool = False           # restart it instead (e.g. the learner resumes from its checkpoint)


def package_share() -> Path:
    """Folder holding config/ and launch/: the checkout, or share/robofume_ros when installed."""
    here = Path(__file__).resolve().parent.parent
    if (here / "config").is_dir():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory("robofume_ros"))
    except Exception as e:  # noqa: BLE001
        raise FileNotFoundError("cannot find robofume_ros config/: not a checkout and not installed "
                                f"in the ament index ({e})") from e


def defaults() -> dict:
    return {a.name: a.default for a in ARGUMENTS}


def resolve_args(args: Optional[dict] = None) -> dict:
    out = defaults()
    for k, v in (args or {}).items():
        if k not in out:
            raise KeyError(f"unknown launch argument {k!r}; known: {', '.join(ARGUMENT_NAMES)}")
        out[k] = str(v)
    return out


def params_file_for(args: dict) -> Path:
    if args.get("params_file"):
        p = Path(args["params_file"]).expanduser()
    elif args.get("robot", "sim") == "sim":
        p = package_share() / "config" / f"sim_{args.get('world', 'drawer')}.yaml"
    else:
        p = package_share() / "config" / f"{args['robot']}.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"params file {p} does not exist (world={args.get('world')!r}, robot={args.get('robot')!r})")
    return p


def _convert(value: str, kind: type):
    if kind is list:
        return [v.strip() for v in value.split(",") if v.strip()]
    if kind is bool:
        v = value.strip().lower()
        if v not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true/false, got {value!r}")
        return v in ("true", "1")
    return kind(value)


def _truthy(v: str) -> bool:
    return _convert(v, bool)


def nodes(graph: str, args: Optional[dict] = None) -> list[NodeSpec]:
    """The nodes of `graph` ("sim" or "finetune") for the given launch arguments."""
    if graph not in GRAPHS:
        raise KeyError(f"unknown graph {graph!r}; known: {', '.join(GRAPHS)}")
    a = resolve_args(args)
    pf = str(params_file_for(a))
    specs: list[NodeSpec] = []

    def add(name, executable, **kw):
        specs.append(NodeSpec(name=name, executable=executable, params_file=pf, **kw))

    # the robot: the MuJoCo world, or the bridge to a real arm's driver
    if a["robot"] == "sim":
        add("sim", "sim_node")
    else:
        # a real arm: the bridge to its driver (config/<robot>.yaml names the driver's topics);
        # standin_driver:=true plays the driver + camera on the MuJoCo world (no arm needed)
        add("arm_bridge", "arm_bridge_node")
        if _truthy(a["standin_driver"]):
            add("standin_driver", "standin_driver_node")
        if _truthy(a["teleop"]):
            add("teleop", "teleop_node", required=False)
    add("camera", "camera_node")
    add("task_switcher", "task_switcher_node")
    policy = "scripted" if graph == "sim" else a["policy"]
    if graph == "finetune" and a["policy"] == "scripted":
        policy = "learned"   # fine-tuning always runs the learned policy
    if policy == "scripted":
        add("scripted_policy", "scripted_policy_node")
    elif policy == "learned":
        add("policy", "policy_node")
    else:
        raise ValueError(f"policy must be scripted or learned, got {a['policy']!r}")
    if graph == "finetune":
        # without the reward the switcher falls back to time limits: not fatal, restarted
        add("reward", "reward_node", required=False, respawn=True)
        add("learner", "learner_node", required=False, respawn=True)
    if _truthy(a["record"]):
        add("recorder", "recorder_node")

    by_name = {s.name: s for s in specs}
    for arg in ARGUMENTS:
        value = a[arg.name]
        if value == "":
            continue
        for ov in arg.overrides:
            if ov.node in by_name:
                by_name[ov.node].parameters[ov.param] = _convert(value, ov.kind)
    if graph == "sim" and "task_switcher" in by_name:
        # scripted data collection ends episodes on the simulator's verdict unless told otherwise
        by_name["task_switcher"].parameters.setdefault("success_source", "ground_truth")
    return specs


def node_command(spec: NodeSpec, python: str, extra_params_file: Optional[str] = None) -> list[str]:
    """The command line the runner uses for one node (what `ros2 run` + launch would do)."""
    cmd = [python, "-m", f"robofume_ros.nodes.{spec.executable}", "--ros-args",
           "-r", f"__node:={spec.name}", "--params-file", spec.params_file]
    if extra_params_file:
        cmd += ["--params-file", extra_params_file]
    for src, dst in spec.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def overrides_yaml(spec: NodeSpec) -> str:
    """The launch-argument overrides of one node as a ROS params file."""
    import yaml
    return yaml.safe_dump({spec.name: {"ros__parameters": dict(spec.parameters)}}, sort_keys=True)


def executables() -> list[str]:
    """Node executables that exist in this package (robofume_ros/nodes/*_node.py)."""
    return sorted(p.stem for p in (Path(__file__).resolve().parent / "nodes").glob("*_node.py"))


def ros_env(domain_id: Optional[int] = None, log_dir: Optional[str] = None, localhost_only: bool = True) -> dict:
    """Environment for an isolated graph: own domain, discovery on this host, logs in a folder."""
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    if localhost_only:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if log_dir:
        env["ROS_LOG_DIR"] = log_dir
    return env
