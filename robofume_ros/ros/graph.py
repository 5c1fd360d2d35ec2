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
from typing import Optional

from robofume_ros.interfaces import TOPICS, topic_name  # noqa: F401 - the one topic table, as graph.TOPICS

LEARNER_RUN_DIR = "runs/learner"  # the learner's run folder when no run_dir is given

GRAPHS = ("sim", "finetune")


@dataclass(frozen=True)
class Override:
    node: str  # node name the parameter belongs to
    param: str  # parameter name on that node
    kind: type = str  # how the launch argument's string is converted


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    overrides: tuple = ()  # parameters this argument sets when it is not empty


def _ov(*items) -> tuple:
    return tuple(Override(*i) for i in items)


# Launch arguments are system switches (which task, which robot, which files, how long, which seed);
# tuning lives in the recipe (config/recipes/*.yaml), as Nav2's bringup keeps it in its params file.
ARGUMENTS: list[LaunchArg] = [
    LaunchArg(
        "world",
        "drawer",
        "task pair: a name from `robofume tasks` (drawer, window, ...) or a task file "
        "(.yaml, your own task); sets the scene, the task switcher's tasks and time limits, the reward's "
        "paired instructions",
    ),
    LaunchArg(
        "robot",
        "sim",
        "sim (MuJoCo, config/sim.yaml) or a real arm config name (franka, widowx): selects config/<robot>.yaml",
    ),
    LaunchArg("params_file", "", "robot params file for every node, instead of config/sim.yaml or config/<robot>.yaml"),
    LaunchArg(
        "recipe",
        "default",
        "the tuning, layered after the robot's params file: a name in config/recipes/ "
        "(default, quick) or a .yaml variant layered on default (comma-separated for several)",
    ),
    LaunchArg(
        "namespace",
        "",
        "run the whole graph under this namespace (robot1): its topics, services and actions become "
        "/robot1/...; /diagnostics and /clock stay global. Graphs in different namespaces share a ROS "
        "domain without hearing each other",
    ),
    LaunchArg(
        "robots",
        "",
        "a fleet: N (robots:=2 -> robot1, robot2) or names (robots:=left,right). Each robot runs its "
        "own robot side, camera, policy, reward, task switcher and recorder under /<robot>, with seed "
        "seed+i; one learner (and evaluator) trains on all of them and pushes weights to each. "
        "world:=drawer,window gives robot i the i-th pair (cycled)",
    ),
    LaunchArg(
        "policy",
        "scripted",
        "who commands the arm: scripted (Meta-World experts), learned (policy_node) or none (a person "
        "drives with teleop:=true: demonstrations by hand, recorded)",
    ),
    LaunchArg(
        "use_sim_time",
        "false",
        "run every node on /clock published by the simulator",
        _ov(
            *[
                (n, "use_sim_time", bool)
                for n in (
                    "sim",
                    "camera",
                    "scripted_policy",
                    "policy",
                    "task_switcher",
                    "reward",
                    "learner",
                    "recorder",
                )
            ]
        ),
    ),
    LaunchArg(
        "fast",
        "false",
        "step the simulator as fast as the loop allows (lockstep with the policy) "
        "and publish /clock; use with use_sim_time:=true",
        _ov(("sim", "lockstep", bool)),
    ),
    LaunchArg(
        "control_rate_hz",
        "",
        "control rate in Hz (default from params file)",
        _ov(
            ("sim", "control_rate_hz", float),
            ("camera", "control_rate_hz", float),
            ("task_switcher", "control_rate_hz", float),
        ),
    ),
    LaunchArg(
        "seed",
        "",
        "random seed of the run: the simulator's home jitter, the stochastic policies, the learner "
        "(the scene is scene_seed's)",
        _ov(
            ("sim", "seed", int),
            ("standin_driver", "seed", int),
            ("scripted_policy", "seed", int),
            ("policy", "seed", int),
            ("learner", "seed", int),
        ),
    ),
    LaunchArg(
        "scene_seed",
        "",
        "object placement seed of the simulated scene (default: the first offline dataset's, where its "
        "demos were recorded, else seed)",
        _ov(("sim", "scene_seed", int), ("standin_driver", "scene_seed", int)),
    ),
    LaunchArg(
        "success_source",
        "",
        "what ends an episode as a success: reward (the learned /reward) or "
        "ground_truth (simulator, for scripted data collection only)",
        _ov(("task_switcher", "success_source", str)),
    ),
    LaunchArg("record", "true", "record every observation, command, reward and switch to a rosbag2 (MCAP)"),
    LaunchArg(
        "bag_dir", "", "where the recorder writes (default: <run_dir>/bags)", _ov(("recorder", "output_dir", str))
    ),
    LaunchArg(
        "policy_checkpoint",
        "",
        "actor checkpoint for the learned policy",
        _ov(("policy", "checkpoint", str), ("learner", "init_checkpoint", str), ("evaluator", "checkpoint", str)),
    ),
    LaunchArg(
        "reward_model",
        "",
        "reward model checkpoint folder",
        _ov(("reward", "model_path", str), ("evaluator", "reward_model", str)),
    ),
    LaunchArg(
        "offline_dataset",
        "",
        "dataset folder(s), comma-separated, mixed into online training (Cal-QL 50/50); "
        "its target demos also set the episodes' time limits",
        _ov(("learner", "offline_dataset", list), ("evaluator", "dataset", list)),
    ),
    LaunchArg(
        "budget_steps",
        "",
        "online environment steps before the learner finishes",
        _ov(("learner", "budget_steps", int)),
    ),
    LaunchArg(
        "run_dir",
        "",
        "folder for logs, bags, checkpoints (default: runs/<timestamp>)",
        _ov(("learner", "run_dir", str), ("evaluator", "run_dir", str), ("teleop", "run_dir", str)),
    ),
    LaunchArg(
        "simulated_person",
        "0",
        "experiments in simulation: a stand-in for a person who overrules the reward, watching the simulator, "
        "with this many verdicts (0: none; never part of the recipe)",
        _ov(("simulated_person", "budget", int)),
    ),
    LaunchArg(
        "learner_device",
        "",
        "where the learner (and /retrain) trains: auto (a CUDA GPU when torch sees one, else CPU), cpu, cuda or cuda:N",
        _ov(("learner", "device", str), ("evaluator", "device", str)),
    ),
    LaunchArg(
        "background_nice",
        "10",
        "CPU niceness of the background work (learner, recorder, evaluator; the reward half of it): it "
        "yields the cores to the control path (robot, camera, policy) whenever that has a frame to "
        "process; 0 runs everything alike",
    ),
    LaunchArg(
        "weights_key",
        "",
        "the learner's Ed25519 key pair that signs policy weights (<weights_key> private, made when "
        "missing; <weights_key>.pub trusted by the policy; default <run_dir>/keys/learner_ed25519)",
    ),
]
ARGUMENTS += [  # real-arm launch arguments (robot != sim)
    LaunchArg(
        "standin_driver",
        "false",
        "real-arm graph without an arm: a MuJoCo stand-in plays the arm driver "
        "(Servo twist / joint trajectory in, joint states out) and the camera",
    ),
    LaunchArg(
        "teleop",
        "false",
        "start teleop_node (sensor_msgs/Joy or geometry_msgs/Twist -> /robot/intervention, ~/request_reset)",
    ),
    LaunchArg(
        "arm_interface",
        "",
        "override the config's arm interface: servo (MoveIt Servo) or joint_trajectory (ros2_control + IK)",
        _ov(("arm_bridge", "interface", str)),
    ),
]
ARGUMENT_NAMES = [a.name for a in ARGUMENTS]


@dataclass
class NodeSpec:
    name: str  # ROS node name (also the section in the params files)
    executable: str  # robofume_ros/nodes/<executable>.py, installed as an executable
    params_files: list  # the robot's params file, then the recipe's files, applied in order
    parameters: dict = field(default_factory=dict)  # the task's parameters and launch-argument overrides
    remappings: list = field(default_factory=list)  # (from, to)
    required: bool = True  # the run stops when a required node dies
    respawn: bool = False  # restart it instead (e.g. the learner resumes from its checkpoint)
    nice: int = 0  # CPU niceness (0-19): background work yields to the control path
    namespace: str = ""  # '' (the root) or '/robot1': the node and its relative names go under it

    @property
    def params_file(self) -> str:
        """The robot's params file (the first of params_files)."""
        return self.params_files[0]

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "executable": self.executable,
            "params_files": list(self.params_files),
            "parameters": dict(self.parameters),
            "remappings": [list(r) for r in self.remappings],
            "required": self.required,
            "respawn": self.respawn,
            "nice": self.nice,
            "namespace": self.namespace,
        }

    @property
    def fqn(self) -> str:
        """The node's fully qualified name, /robot1/policy or /policy."""
        return f"{self.namespace}/{self.name}"

    @property
    def key(self) -> str:
        """How a runner names it (its process, logs/<key>.log): policy, or robot1/policy under a
        namespace, so graphs in several namespaces can share one runner."""
        return self.fqn.lstrip("/")


def package_share() -> Path:
    """Folder holding config/ and launch/: the checkout, or share/robofume_ros when installed."""
    here = Path(__file__).resolve().parents[2]
    if (here / "config").is_dir():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("robofume_ros"))
    except Exception as e:
        raise FileNotFoundError(
            f"cannot find robofume_ros config/: not a checkout and not installed in the ament index ({e})"
        ) from e


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
        p = package_share() / "config" / "sim.yaml"
    else:
        p = package_share() / "config" / f"{args['robot']}.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"params file {p} does not exist (robot={args.get('robot')!r})")
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
    return resolve(graph, args, describe_nodes=False)[0]


FLEET_SHARED = ("learner", "evaluator")  # one for the whole fleet, at the fleet's namespace
MAX_ROBOTS = 16


def robot_names(value: str) -> list[str]:
    """The `robots` launch argument -> the fleet's robot names ([] = no fleet): a count N gives
    robot1..robotN, a comma-separated list names them."""
    from robofume_ros.interfaces import normalize_namespace

    value = (value or "").strip()
    if not value:
        return []
    if value.isdigit():
        n = int(value)
        if not 1 <= n <= MAX_ROBOTS:
            raise ValueError(f"robots must be 1..{MAX_ROBOTS} (or a list of names), got {value}")
        return [f"robot{i + 1}" for i in range(n)]
    names = [v.strip() for v in value.split(",") if v.strip()]
    for n in names:
        if "/" in n or not normalize_namespace(n):
            raise ValueError(f"robot name {n!r} must be one ROS name token (letters, digits, underscores)")
    if len(set(names)) != len(names) or len(names) > MAX_ROBOTS:
        raise ValueError(f"robots must be up to {MAX_ROBOTS} distinct names, got {value!r}")
    return names


def _fleet(graph: str, a: dict, names: list) -> tuple[list[NodeSpec], dict]:
    """Each robot's graph under <namespace>/<robot> without the shared nodes, then the shared ones
    (the learner with `robots`, the evaluator) at <namespace>."""
    if graph != "finetune":
        raise ValueError("robots:= is a fine-tuning fleet (graph finetune); run a sim graph per namespace instead")
    worlds = _convert(a["world"], list)
    base_seed = int(a["seed"] or 0)
    specs, per_robot = [], {}
    by_world: dict = {}  # the task's parameters depend on the pair, not on the robot: read once per pair

    def task(ai):
        if ai["world"] not in by_world:
            by_world[ai["world"]] = task_parameters(ai, worlds)
        return by_world[ai["world"]]

    for i, robot in enumerate(names):
        ai = dict(a, world=worlds[i % len(worlds)], namespace=f"{a['namespace'].rstrip('/')}/{robot}")
        ai["seed"] = str(base_seed + i)
        if _truthy(a["record"]):  # each robot keeps its own bags (its recorder backfills the learner)
            ai["bag_dir"] = str(Path(a["bag_dir"] or Path(a["run_dir"] or LEARNER_RUN_DIR) / "bags") / robot)
        params, derived = task(ai)
        for s in _nodes(graph, ai, params):
            if s.name in FLEET_SHARED:
                continue
            # a robot that dies does not stop the fleet (the runner reports it, respawns what it would)
            s.required = False
            # each robot's simulator keeps its own time (lockstep): /clock under its namespace
            s.remappings.append(("/clock", f"{s.namespace}/clock"))
            if s.name == "reward":  # each robot's reward adapts to what it sees
                s.parameters["adapt_dir"] = str(Path(s.parameters["adapt_dir"]) / robot)
            specs.append(s)
        per_robot[robot] = derived
    a0 = dict(a, world=worlds[0])
    params, derived = task(a0)
    shared = [s for s in _nodes(graph, a0, params) if s.name in FLEET_SHARED]
    for s in shared:
        s.parameters["use_sim_time"] = False  # the robots' clocks are theirs; stamps come with the data
        if s.name == "learner":
            s.parameters["robots"] = list(names)
            s.parameters["backfill"] = _truthy(a["record"])
    return specs + shared, {**derived, "robots": per_robot}


def _nodes(graph: str, a: dict, task_params: dict) -> list[NodeSpec]:
    if graph not in GRAPHS:
        raise KeyError(f"unknown graph {graph!r}; known: {', '.join(GRAPHS)}")
    from robofume_ros import recipe

    pfs = [str(params_file_for(a))] + [str(f) for f in recipe.files(a["recipe"])]
    specs: list[NodeSpec] = []
    background_nice = int(a["background_nice"] or 0)
    if not 0 <= background_nice <= 19:
        raise ValueError(f"background_nice must be 0..19, got {background_nice}")

    from robofume_ros.interfaces import normalize_namespace

    namespace = normalize_namespace(a["namespace"])

    def add(name, executable, **kw):
        specs.append(NodeSpec(name=name, executable=executable, params_files=list(pfs), namespace=namespace, **kw))

    from robofume_ros.sim import tasks

    if not tasks.get_pair(a["world"]).simulated and (a["robot"] == "sim" or _truthy(a["standin_driver"])):
        raise ValueError(
            f"world {a['world']!r} is a real robot's task (simulated: false): it needs robot:=<arm> "
            f"without standin_driver, there is no scene to simulate"
        )
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
    policy = "learned" if graph == "finetune" else a["policy"]  # fine-tuning always runs the learned policy
    if policy == "scripted":
        add("scripted_policy", "scripted_policy_node")
    elif policy == "learned":
        add("policy", "policy_node")
    elif policy != "none":
        raise ValueError(f"policy must be scripted, learned or none, got {a['policy']!r}")
    if graph == "finetune":
        # without the reward the switcher falls back to time limits: not fatal, restarted
        # the reward is off the control path (the policy never waits for it) but ends episodes: it
        # yields to the control path, half as far as the learner, which yields to it (docs/latency.md)
        add("reward", "reward_node", required=False, respawn=True, nice=background_nice // 2)
        add("learner", "learner_node", required=False, respawn=True, nice=background_nice)
        # /evaluate: ground-truth evaluation in its own simulated worlds, on request (a sim pair only)
        if tasks.get_pair(a["world"]).simulated:
            add("evaluator", "evaluator_node", required=False, nice=background_nice)
        if int(a["simulated_person"] or 0) > 0:
            if a["robot"] != "sim":
                raise ValueError("simulated_person:= watches the simulator: it needs robot:=sim")
            add("simulated_person", "simulated_person_node", required=False)
    if _truthy(a["record"]):
        add("recorder", "recorder_node", nice=background_nice)

    by_name = {s.name: s for s in specs}
    for node, params in task_params.items():
        if node in by_name:
            by_name[node].parameters.update(params)
    for arg in ARGUMENTS:
        value = a[arg.name]
        if value == "":
            continue
        for ov in arg.overrides:
            if ov.node in by_name:
                by_name[ov.node].parameters[ov.param] = _convert(value, ov.kind)
    if "evaluator" in by_name:
        by_name["evaluator"].parameters["recipe"] = a["recipe"]  # sizes a /retrain goal as the main job
    if "learner" in by_name and "recorder" not in by_name:
        by_name["learner"].parameters["backfill"] = False  # nobody keeps what the learner misses
    if graph == "finetune":
        # one key pair: the learner signs with it, the policy loads only weights it verifies
        key = a["weights_key"] or str(Path(a["run_dir"] or LEARNER_RUN_DIR) / "keys" / "learner_ed25519")
        if "learner" in by_name:
            by_name["learner"].parameters["signing_key"] = key
        if "policy" in by_name:
            by_name["policy"].parameters["trusted_key"] = key + ".pub"
        if "reward" in by_name:  # the reward's adapted versions and trusted labels (the recipe's adapt)
            by_name["reward"].parameters["adapt_dir"] = str(Path(a["run_dir"] or LEARNER_RUN_DIR) / "reward_adapted")
    if "reward" in by_name and "sim" in by_name:
        # in sim time the simulator also waits for the verdict on each frame, as at 10 Hz it comes
        # within the tick (it waits for nothing else where it runs at the wall clock)
        by_name["sim"].parameters["lockstep_wait_for_reward"] = True
    if graph == "sim" and "task_switcher" in by_name:
        # scripted data collection ends episodes on the simulator's verdict unless told otherwise
        by_name["task_switcher"].parameters.setdefault("success_source", "ground_truth")
    return specs


def task_parameters(a: dict, fleet_pairs=()) -> tuple[dict, dict]:
    """What the task pair sets on the nodes, and the derived values with where they came from:
    ({node: {param: value}}, {"pair": ..., "time_limits": [fwd, bwd], "time_limits_from": ...}).
    Time limits: the recipe's where it sets them, else TIME_LIMIT_FACTOR x the longest target demo
    of each direction in the first offline dataset that has them, else the pair's own."""
    from robofume_ros.sim import tasks

    pair = tasks.get_pair(a["world"])
    lengths, source = {}, f"the pair's defaults (robofume_ros/sim/tasks.py {pair.name!r})"
    for d in _convert(a["offline_dataset"], list) if a.get("offline_dataset") else []:
        from robofume_ros.data.dataset import target_demo_steps

        steps = target_demo_steps(d)
        by_phase = {ph: steps.get(pair.task(ph), []) for ph in ("forward", "backward")}
        if any(by_phase.values()):
            lengths = by_phase
            source = (
                f"{tasks.TIME_LIMIT_FACTOR}x the longest target demo in {d} (forward "
                f"{max(by_phase['forward'], default=0)}, backward {max(by_phase['backward'], default=0)} steps)"
            )
            break
    fwd, bwd = tasks.time_limits(pair, lengths)
    from robofume_ros import recipe

    fixed = recipe.load(a["recipe"]).get("task_switcher", {})
    if "max_episode_steps" in fixed or "backward_max_episode_steps" in fixed:  # a recipe that sets them wins
        fwd = int(fixed.get("max_episode_steps", fwd))
        bwd = int(fixed.get("backward_max_episode_steps", 0)) or fwd
        source = f"the recipe {a['recipe']!r}"
    check_pair_of_inputs(pair, a, fleet_pairs)
    world = a["world"]
    params = {
        "sim": {"world": world, "camera": pair.camera},
        "standin_driver": {"world": world, "camera": pair.camera},
        "task_switcher": {
            "forward_task": pair.forward,
            "forward_instruction": pair.forward_instruction,
            "backward_task": pair.backward,
            "backward_instruction": pair.backward_instruction,
            "max_episode_steps": fwd,
            "backward_max_episode_steps": bwd,
        },
        "reward": {"paired_instructions": list(pair.instructions)},
    }
    derived = {"pair": pair.as_dict(), "time_limits": [fwd, bwd], "time_limits_from": source}
    # the robot's workspace is the scene of the demos: a seed picks the run's randomness, not its scene
    if pair.simulated and not a.get("scene_seed"):
        from robofume_ros.data.dataset import dataset_pair, dataset_scene

        for d in _convert(a["offline_dataset"], list) if a.get("offline_dataset") else []:
            dp = dataset_pair(d) if Path(d).is_dir() else None  # a fleet's datasets may hold other pairs
            scene = dataset_scene(d) if dp and tasks.get_pair(dp).name == pair.name else None
            if scene is not None:
                params["sim"]["scene_seed"] = params["standin_driver"]["scene_seed"] = scene
                derived.update(scene_seed=scene, scene_seed_from=f"the scene of {d}")
                break
    return params, derived


def check_pair_of_inputs(pair, a: dict, fleet_pairs=()) -> None:
    """A dataset generated for another pair (in a fleet: for none of its pairs), or a checkpoint
    not trained on this pair, is refused before anything starts (ValueError naming both)."""
    from robofume_ros.data.dataset import dataset_pair
    from robofume_ros.sim import tasks

    allowed = {tasks.get_pair(p).name for p in fleet_pairs} | {pair.name}
    for d in _convert(a["offline_dataset"], list) if a.get("offline_dataset") else []:
        dp = dataset_pair(d) if Path(d).is_dir() else None
        if dp and tasks.get_pair(dp).name not in allowed:
            raise ValueError(
                f"offline_dataset {d} was generated for pair {tasks.get_pair(dp).name!r}, not for "
                + (f"world {pair.name!r}" if len(allowed) == 1 else f"the fleet's worlds {sorted(allowed)}")
            )
    ck = a.get("policy_checkpoint")
    if ck and Path(ck).is_file():
        from robofume_ros.rl import checkpoint
        from robofume_ros.rl.policy import checkpoint_pairs

        cps = checkpoint_pairs(checkpoint.load_checkpoint(ck))
        if cps and pair.name not in cps:
            raise ValueError(
                f"policy_checkpoint {ck} was trained on pair{'s' if len(cps) > 1 else ''} "
                f"{cps if len(cps) > 1 else repr(cps[0])}, not on world {pair.name!r}"
            )


# managed (lifecycle) nodes, in bring-up order: the robot side last, so it moves only once its
# reward, learner and policy act (ros/lifecycle.py, nodes/lifecycle_manager_node.py)
MANAGED = ("reward_node", "learner_node", "policy_node", "task_switcher_node", "sim_node", "arm_bridge_node")
MANAGER = "lifecycle_manager"


def lifecycle_managed(specs: list) -> list:
    """`specs` with one lifecycle manager that brings up exactly the managed nodes among them (in
    MANAGED order), which then wait for it (autostart false); none when there are none. The
    runner applies it to the nodes it runs, so a subset of a graph (one host's) manages its own."""
    given = next((s for s in specs if s.executable == "lifecycle_manager_node"), None)
    specs = [s for s in specs if s is not given]
    managed = sorted((s for s in specs if s.executable in MANAGED), key=lambda s: MANAGED.index(s.executable))
    if not managed:
        return specs
    for s in managed:
        s.parameters["autostart"] = False
    root = min((s.namespace for s in managed), key=len)  # the graph's (a fleet's) namespace
    if not all(s.namespace.startswith(root) for s in managed):
        root = ""
    manager = NodeSpec(
        name=MANAGER,
        executable="lifecycle_manager_node",
        params_files=list(managed[0].params_files),
        # relative to the manager's namespace (robot1/policy in a fleet): the graph moves as a whole
        parameters={"node_names": [s.fqn[len(root) :].lstrip("/") for s in managed]},
        required=False,
        respawn=True,
        namespace=root,
    )
    if given is not None:  # keep its own settings (autostart, retry_s, ...); the node list is the specs'
        given.parameters["node_names"] = manager.parameters["node_names"]
        manager = given
    return specs + [manager]


def resolve(graph: str, args: Optional[dict] = None, describe_nodes: bool = True) -> tuple[list[NodeSpec], dict]:
    """The nodes of a graph and the description of everything it is made of, resolved once (the
    task's datasets and checkpoint are read once): launch arguments, the task and what was derived
    from it, and every node with its params files, parameters, remappings and resolved values
    (`--dry-run`, and <run_dir>/graph.yaml of every run)."""
    a = resolve_args(args)
    from robofume_ros import recipe

    names = robot_names(a["robots"])
    if names:
        specs, derived = _fleet(graph, a, names)
    else:
        task_params, derived = task_parameters(a)
        specs = _nodes(graph, a, task_params)
    specs = lifecycle_managed(specs)
    if not describe_nodes:
        return specs, {}
    description = {
        "graph": graph,
        "arguments": a,
        "task": derived,
        "recipe": {"files": [str(f) for f in recipe.files(a["recipe"])]},
        "nodes": [{**s.as_dict(), "resolved": resolved_parameters(s)} for s in specs],
    }
    return specs, description


def description_yaml(d: dict) -> str:
    """A description as YAML a person reads: values written out, no anchors for shared lists."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True

    return yaml.dump(d, Dumper=Dumper, sort_keys=False)


def describe(graph: str, args: Optional[dict] = None) -> dict:
    """resolve()'s description alone."""
    return resolve(graph, args)[1]


def resolved_parameters(spec: NodeSpec) -> dict:
    """The values a node starts with that its params files and overrides set, in the order ROS
    applies them (each file's `/**` section, then the node's own; overrides last). Parameters
    nothing sets keep the node's defaults (`robofume params <node>`)."""
    import yaml

    out: dict = {}
    for f in spec.params_files:
        data = yaml.safe_load(Path(f).read_text()) or {}
        for section in ("/**", spec.name):
            out.update((data.get(section) or {}).get("ros__parameters", {}))
    out.update(spec.parameters)
    return dict(sorted(out.items()))


def node_params_files(spec: NodeSpec, out_dir) -> list[str]:
    """The params files a node reads, as its launcher hands them over. A file's sections are keyed
    by node name (`policy:`), which ROS matches against the fully qualified name (/policy); under
    a namespace the sections are rewritten to /robot1/policy (as Nav2's RewrittenYaml does), into
    `out_dir`. `/**` sections apply to every node anyway."""
    if not spec.namespace:
        return list(spec.params_files)
    import hashlib

    import yaml

    out = []
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for f in spec.params_files:
        data = yaml.safe_load(Path(f).read_text()) or {}
        rewritten = {(k if str(k).startswith("/") else f"{spec.namespace}/{k}"): v for k, v in data.items()}
        tag = hashlib.sha1(f"{Path(f).resolve()}{spec.namespace}".encode()).hexdigest()[:8]
        dst = Path(out_dir) / f"{Path(f).stem}.{spec.namespace.strip('/').replace('/', '_')}.{tag}.yaml"
        text = yaml.safe_dump(rewritten, sort_keys=False)
        if not dst.is_file() or dst.read_text() != text:
            dst.write_text(text)
        out.append(str(dst))
    return out


def node_command(
    spec: NodeSpec, python: str, extra_params_file: Optional[str] = None, params_files: Optional[list] = None
) -> list[str]:
    """The command line the runner uses for one node (what `ros2 run` + launch would do);
    `params_files`: node_params_files(spec, ...) where the graph runs under a namespace."""
    cmd = [python, "-m", f"robofume_ros.nodes.{spec.executable}", "--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        cmd += ["-r", f"__ns:={spec.namespace}"]
    for pf in spec.params_files if params_files is None else params_files:
        cmd += ["--params-file", pf]
    if extra_params_file:
        cmd += ["--params-file", extra_params_file]
    for src, dst in spec.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def overrides_yaml(spec: NodeSpec) -> str:
    """The launch-argument overrides of one node as a ROS params file."""
    import yaml

    key = spec.fqn if spec.namespace else spec.name
    return yaml.safe_dump({key: {"ros__parameters": dict(spec.parameters)}}, sort_keys=True)


def executables() -> list[str]:
    """Node executables that exist in this package (robofume_ros/nodes/*_node.py)."""
    return sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "nodes").glob("*_node.py"))


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
