"""One description of the node graph: launch files, runner and configs agree with graph.py."""

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from robofume_ros.ros import graph
from robofume_ros.ros.params import describe

ROOT = Path(__file__).resolve().parent.parent


class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


@pytest.fixture
def fake_launch(monkeypatch):
    """Minimal stand-ins for launch / launch_ros (not installable here) that record what the
    launch file builds, so it can be compared with what the runner starts."""
    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda entities: list(entities)
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = type("DeclareLaunchArgument", (_Action,), {})
    actions.OpaqueFunction = type("OpaqueFunction", (_Action,), {})
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = _LaunchConfiguration
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Action,), {})
    for name, mod in {
        "launch": launch,
        "launch.actions": actions,
        "launch.substitutions": subs,
        "launch_ros": launch_ros,
        "launch_ros.actions": ros_actions,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return ros_actions.Node


def run_launch_file(path: Path, context: dict):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    entities = mod.generate_launch_description()
    declared = {e.args[0]: e.kwargs for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    opaque = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    full = {name: kw["default_value"] for name, kw in declared.items()}
    full.update(context)
    return declared, opaque[0].kwargs["function"](full)


@pytest.mark.parametrize(
    "graph_name,args",
    [
        ("sim", {}),
        ("sim", {"world": "window", "record": "false", "fast": "true", "use_sim_time": "true"}),
        ("finetune", {}),
        ("finetune", {"seed": "3", "budget_steps": "500", "control_rate_hz": "5"}),
    ],
)
def test_launch_file_starts_what_the_runner_starts(fake_launch, graph_name, args, tmp_path):
    declared, nodes = run_launch_file(ROOT / "launch" / f"{graph_name}.launch.py", args)
    # every launch argument is declared, with graph.py's defaults and descriptions
    assert set(declared) == set(graph.ARGUMENT_NAMES)
    for a in graph.ARGUMENTS:
        assert declared[a.name]["default_value"] == a.default and declared[a.name]["description"]
    specs = graph.nodes(graph_name, args)
    launched = [
        (n.kwargs["executable"], n.kwargs["name"], n.kwargs["parameters"], n.kwargs["remappings"]) for n in nodes
    ]
    expected = [
        (s.executable, s.name, list(s.params_files) + ([s.parameters] if s.parameters else []), s.remappings)
        for s in specs
    ]
    assert launched == expected
    # background work runs niced in both (the launch file's prefix, the runner's os.nice)
    assert [n.kwargs["prefix"] for n in nodes] == [f"nice -n {s.nice}" if s.nice else None for s in specs]
    assert all(n.kwargs["package"] == "robofume_ros" for n in nodes)
    # --dry-run (and every run's graph.yaml) describes exactly these nodes
    described = [
        (
            n["executable"],
            n["name"],
            n["params_files"] + ([n["parameters"]] if n["parameters"] else []),
            [tuple(r) for r in n["remappings"]],
        )
        for n in graph.describe(graph_name, args)["nodes"]
    ]
    assert described == expected
    # the runner's command lines for the same specs name the same modules and node names
    from robofume_ros.ros.runner import GraphRunner

    r = GraphRunner(specs, tmp_path, env={})
    for s in specs:
        cmd = r.command(s)
        assert cmd[cmd.index("-m") + 1] == f"robofume_ros.nodes.{s.executable}"
        assert f"__node:={s.name}" in cmd
        files = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--params-file"]
        # the robot's params file, then the recipe's, then the overrides: the order ROS applies them in
        assert files[: len(s.params_files)] == list(s.params_files)
        assert s.params_files[0].endswith("sim.yaml") and s.params_files[1].endswith("recipes/default.yaml")
        if s.parameters:
            assert yaml.safe_load(Path(files[-1]).read_text()) == {s.name: {"ros__parameters": s.parameters}}


def test_a_namespace_moves_every_node_with_its_params(fake_launch, tmp_path):
    """namespace:=robot1: both launchers start every node under /robot1, with params files whose
    node sections are rewritten to /robot1/<node> (ROS matches them against the fully qualified
    name) and the same resolved values as at the root."""
    args = {"namespace": "robot1", "seed": "3"}
    specs = graph.nodes("finetune", args)
    assert {s.namespace for s in specs} == {"/robot1"} and {s.fqn for s in specs} >= {"/robot1/policy"}
    _, nodes = run_launch_file(ROOT / "launch" / "finetune.launch.py", args)
    from robofume_ros.ros.runner import GraphRunner

    runner = GraphRunner(specs, tmp_path, env={})
    for node, s in zip(nodes, specs):
        assert node.kwargs["namespace"] == "/robot1"
        cmd = runner.command(s)
        assert "__ns:=/robot1" in cmd and f"__node:={s.name}" in cmd
        for files in (
            node.kwargs["parameters"][: len(s.params_files)],
            [cmd[i + 1] for i, c in enumerate(cmd) if c == "--params-file"][: len(s.params_files)],
        ):
            for original, rewritten in zip(s.params_files, files):
                a, b = yaml.safe_load(Path(original).read_text()), yaml.safe_load(Path(rewritten).read_text())
                assert b == {(k if k.startswith("/") else f"/robot1/{k}"): v for k, v in a.items()}
        if s.parameters:
            extra = yaml.safe_load(Path(cmd[len(cmd) - 1 - cmd[::-1].index("--params-file") + 1]).read_text())
            assert extra == {f"/robot1/{s.name}": {"ros__parameters": s.parameters}}
    plain = {d["name"]: d["resolved"] for d in graph.describe("finetune", {"seed": "3"})["nodes"]}
    assert {d["name"]: d["resolved"] for d in graph.describe("finetune", args)["nodes"]} == plain
    assert graph.nodes("sim", {"namespace": "/"})[0].namespace == ""
    with pytest.raises(ValueError, match="not a ROS name token"):
        graph.nodes("sim", {"namespace": "robot-1"})


def test_a_fleet_is_one_graph_per_robot_and_one_learner():
    specs = graph.nodes("finetune", {"robots": "left,right", "world": "drawer,window", "seed": "7"})
    by = {s.key: s for s in specs}
    robot_side = {"sim", "camera", "task_switcher", "policy", "reward", "recorder"}
    shared = {"learner", "evaluator", "lifecycle_manager"}
    assert set(by) == {f"{r}/{n}" for r in ("left", "right") for n in robot_side} | shared
    assert by["learner"].parameters["robots"] == ["left", "right"] and by["learner"].namespace == ""
    # one manager brings up every robot's managed nodes and the learner, each robot's sim last
    assert by["lifecycle_manager"].parameters["node_names"] == [
        "left/reward",
        "right/reward",
        "learner",
        "left/policy",
        "right/policy",
        "left/task_switcher",
        "right/task_switcher",
        "left/sim",
        "right/sim",
    ]
    assert (by["left/sim"].parameters["world"], by["right/sim"].parameters["world"]) == ("drawer", "window")
    assert (by["left/sim"].parameters["seed"], by["right/policy"].parameters["seed"]) == (7, 8)
    assert by["right/task_switcher"].parameters["forward_task"] == "window-open"
    for s in specs:
        if s.namespace:  # a robot's node: its own sim clock, and its death does not stop the fleet
            assert ("/clock", f"{s.namespace}/clock") in s.remappings and not s.required
        elif s.name != "lifecycle_manager":
            assert s.parameters["use_sim_time"] is False
    assert by["left/recorder"].parameters["output_dir"].endswith("bags/left")
    assert by["left/reward"].parameters["adapt_dir"].endswith("reward_adapted/left")  # each reward its own
    assert [s.namespace for s in graph.nodes("finetune", {"robots": "2", "namespace": "lab"})][:1] == ["/lab/robot1"]
    for bad in ("0", "17", "a,a", "a/b", "robot-1"):
        with pytest.raises(ValueError):
            graph.nodes("finetune", {"robots": bad})
    with pytest.raises(ValueError, match="fleet"):
        graph.nodes("sim", {"robots": "2"})


def test_background_work_yields_the_cores_to_the_control_path():
    nice = {s.name: s.nice for s in graph.nodes("finetune", {"policy": "learned"})}
    assert nice["learner"] == nice["recorder"] == 10
    assert all(nice[n] == 0 for n in ("sim", "camera", "policy", "task_switcher"))
    assert nice["reward"] == 5  # off the control path, ahead of the learner
    assert {s.nice for s in graph.nodes("finetune", {"background_nice": "0"})} == {0}
    with pytest.raises(ValueError, match="background_nice must be 0..19"):
        graph.nodes("finetune", {"background_nice": "25"})


def test_every_executable_in_the_graph_exists():
    exes = set(graph.executables())
    for graph_name in graph.GRAPHS:
        for s in graph.nodes(graph_name, {}):
            assert s.executable in exes, f"{graph_name} names {s.executable}, not in robofume_ros/nodes/"
            mod = importlib.import_module(f"robofume_ros.nodes.{s.executable}")
            assert callable(mod.main) and hasattr(mod, "Params")


def test_launch_argument_overrides_reach_node_parameters():
    specs = {s.name: s for s in graph.nodes("sim", {"seed": "7", "control_rate_hz": "5", "fast": "true"})}
    assert specs["sim"].parameters["seed"] == 7 and specs["scripted_policy"].parameters["seed"] == 7
    assert specs["sim"].parameters["control_rate_hz"] == 5.0 and specs["camera"].parameters["control_rate_hz"] == 5.0
    assert specs["sim"].parameters["lockstep"] is True
    assert specs["task_switcher"].parameters["success_source"] == "ground_truth"
    assert "recorder" not in {s.name for s in graph.nodes("sim", {"record": "false"})}
    with pytest.raises(KeyError, match="unknown launch argument"):
        graph.nodes("sim", {"wrld": "drawer"})
    with pytest.raises(ValueError, match="true/false"):
        graph.nodes("sim", {"fast": "yes please"})
    with pytest.raises(KeyError, match="unknown reset-free pair 'nowhere'"):
        graph.nodes("sim", {"world": "nowhere"})
    with pytest.raises(FileNotFoundError, match="params file"):
        graph.nodes("sim", {"robot": "ur5"})


def test_override_targets_are_real_parameters():
    params = {}
    for exe in graph.executables():
        mod = importlib.import_module(f"robofume_ros.nodes.{exe}")
        params[exe] = {name for name, _, _ in describe(mod.Params)} | {"use_sim_time"}
    node_exe = {s.name: s.executable for g in graph.GRAPHS for s in graph.nodes(g, {})}
    for a in graph.ARGUMENTS:
        for ov in a.overrides:
            if ov.node in node_exe:
                assert ov.param in params[node_exe[ov.node]], f"{a.name} sets unknown {ov.node}.{ov.param}"


@pytest.mark.parametrize(
    "cfg",
    sorted((ROOT / "config").glob("*.yaml")) + sorted((ROOT / "config").glob("recipes/*.yaml")),
    ids=lambda p: p.name,
)
def test_config_files_only_set_declared_parameters(cfg):
    data = yaml.safe_load(cfg.read_text())
    if "main" in data:  # the recipe's pipeline section: robofume main's MainParams, not a node
        from robofume_ros.recipe import MainParams

        fields = {name: default for name, default, _ in describe(MainParams)}
        for key, value in data.pop("main")["ros__parameters"].items():
            assert key in fields and type(value) is type(fields[key]), f"{cfg.name}: main.{key}={value!r}"
    exes = {s.name: s.executable for g in graph.GRAPHS for s in graph.nodes(g, {})}
    exes.update({e.removesuffix("_node"): e for e in graph.executables()})
    for section, body in data.items():
        if section == "/**":
            continue
        assert section in exes, f"{cfg.name}: section {section!r} is not a node of the graph"
        declared = {
            name: default
            for name, default, _ in describe(importlib.import_module(f"robofume_ros.nodes.{exes[section]}").Params)
        }
        for key, value in body["ros__parameters"].items():
            if key == "use_sim_time":
                continue
            assert key in declared, f"{cfg.name}: {section}.{key} is not a declared parameter"
            d = declared[key]
            assert type(value) is type(d) or (isinstance(d, float) and isinstance(value, int)), (
                f"{cfg.name}: {section}.{key}={value!r} has the wrong type (default {d!r})"
            )


def test_every_parameter_has_a_description():
    for exe in graph.executables():
        mod = importlib.import_module(f"robofume_ros.nodes.{exe}")
        for name, _default, help_text in describe(mod.Params):
            assert len(help_text) > 10, f"{exe}.{name} has no description"


def test_node_defaults_equal_the_default_recipe():
    """One recipe: a node started without the recipe file behaves as the recipe says."""
    from robofume_ros import recipe
    from robofume_ros.recipe import MainParams

    exes = {s.name: s.executable for g in graph.GRAPHS for s in graph.nodes(g, {})}
    values = recipe.load("default")
    for section, params in values.items():
        if section == "main":
            declared = {name: default for name, default, _ in describe(MainParams)}
        else:
            declared = {
                name: default
                for name, default, _ in describe(importlib.import_module(f"robofume_ros.nodes.{exes[section]}").Params)
            }
        for key, value in params.items():
            assert declared[key] == value, f"{section}.{key}: default {declared[key]!r}, recipe {value!r}"
    # the quick recipe only resizes the main job: the tuning is the default's
    assert set(yaml.safe_load((ROOT / "config" / "recipes" / "quick.yaml").read_text())) == {"main"}


def test_recipe_layers_and_bad_recipes_fail_clearly(tmp_path):
    from robofume_ros import recipe

    variant = tmp_path / "noisier.yaml"
    variant.write_text("policy:\n  ros__parameters:\n    noise_scale: 0.8\n")
    assert [f.name for f in recipe.files(str(variant))] == ["default.yaml", "noisier.yaml"]
    assert recipe.param(str(variant), "policy", "noise_scale") == 0.8
    assert recipe.param(str(variant), "learner", "n_step") == recipe.param("default", "learner", "n_step")
    specs = {s.name: s for s in graph.nodes("finetune", {"recipe": str(variant)})}
    assert specs["policy"].params_files[-1] == str(variant)
    with pytest.raises(recipe.RecipeError, match="unknown recipe 'nope'"):
        graph.nodes("finetune", {"recipe": "nope"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy:\n  noise_scale: 0.8\n")
    with pytest.raises(recipe.RecipeError, match="bad.yaml: section 'policy'"):
        recipe.load(str(bad))


def test_the_pair_sets_tasks_instructions_and_time_limits(tmp_path):
    from robofume_ros.sim import tasks

    specs = {s.name: s for s in graph.nodes("finetune", {"world": "window"})}
    sw = specs["task_switcher"].parameters
    assert (sw["forward_task"], sw["backward_task"]) == ("window-open", "window-close")
    assert sw["forward_instruction"] == "open the window"
    assert (sw["max_episode_steps"], sw["backward_max_episode_steps"]) == tasks.PAIRS["window"].time_limits
    assert specs["reward"].parameters["paired_instructions"] == ["open the window", "close the window"]
    assert specs["sim"].parameters["world"] == "window"
    # with a dataset, the limits come from its target demos: 1.5x the longest, rounded up to 10
    from robofume_ros.data.dataset import DatasetWriter
    from robofume_ros.data.episode import Episode
    import numpy as np

    with DatasetWriter(tmp_path / "ds") as w:
        for task, n in (("window-open", 60), ("window-open", 81), ("window-close", 40)):
            w.append(
                Episode(
                    images=np.zeros((n + 1, 4, 4, 3), np.uint8),
                    proprio=np.zeros((n + 1, 4), np.float32),
                    actions=np.zeros((n, 4), np.float32),
                    rewards=np.zeros(n, np.float32),
                    terminals=np.zeros(n, bool),
                    instruction=tasks.instruction(task),
                    task=task,
                    source="target_demo",
                    success=True,
                )
            )
    d = graph.describe("finetune", {"world": "window", "offline_dataset": str(tmp_path / "ds")})
    assert d["task"]["time_limits"] == [130, 60] and "longest target demo" in d["task"]["time_limits_from"]
    sw = {n["name"]: n for n in d["nodes"]}["task_switcher"]["parameters"]
    assert (sw["max_episode_steps"], sw["backward_max_episode_steps"]) == (130, 60)
    # a task file is a pair too; a real robot's task cannot be simulated
    f = tmp_path / "cups.yaml"
    f.write_text(
        "forward: cup-place\nbackward: cup-remove\nforward_instruction: put the cup down\n"
        "backward_instruction: pick the cup up\nsimulated: false\ntime_limits: [200, 180]\n"
    )
    specs = {s.name: s for s in graph.nodes("finetune", {"world": str(f), "robot": "franka"})}
    assert specs["task_switcher"].parameters["forward_task"] == "cup-place"
    assert specs["task_switcher"].parameters["max_episode_steps"] == 200
    with pytest.raises(ValueError, match="real robot's task"):
        graph.nodes("finetune", {"world": str(f)})


def test_the_scene_is_the_datasets_and_the_seed_only_the_runs_randomness(tmp_path):
    """A run's seed must not move the drawer away from where its demos were recorded: the sim's
    scene comes from its offline dataset, for every robot of a fleet, unless scene_seed says."""
    import json

    from robofume_ros.data.dataset import DatasetWriter

    DatasetWriter(tmp_path / "ds").close()
    (tmp_path / "ds" / "generate.json").write_text(json.dumps({"config": {"pair": "drawer", "seed": 3}}))
    ds = str(tmp_path / "ds")

    def sims(args):
        return {s.key: s.parameters for s in graph.nodes("finetune", args) if s.name == "sim"}

    one = sims({"world": "drawer", "offline_dataset": ds, "seed": "9"})["sim"]
    assert (one["seed"], one["scene_seed"]) == (9, 3)
    assert sims({"world": "drawer", "offline_dataset": ds, "scene_seed": "4"})["sim"]["scene_seed"] == 4
    assert "scene_seed" not in sims({"world": "drawer"})["sim"]  # no dataset: the sim's seed picks the scene
    d = graph.describe("finetune", {"world": "drawer", "offline_dataset": ds})
    assert d["task"]["scene_seed"] == 3 and d["task"]["scene_seed_from"] == f"the scene of {ds}"
    fleet = sims({"robots": "a,b", "world": "drawer", "offline_dataset": ds, "seed": "1"})
    assert [(p["seed"], p["scene_seed"]) for p in fleet.values()] == [(1, 3), (2, 3)]


def test_inputs_of_another_pair_are_refused(tmp_path):
    import json
    from tiny_models import tiny_learner_checkpoint
    from robofume_ros.rl import checkpoint as ckpt
    from robofume_ros.data.dataset import DatasetWriter

    with DatasetWriter(tmp_path / "ds"):
        pass
    (tmp_path / "ds" / "generate.json").write_text(json.dumps({"config": {"seed": 0, "pair": "window"}}))
    with pytest.raises(ValueError, match="generated for pair 'window', not for world 'drawer'"):
        graph.nodes("finetune", {"offline_dataset": str(tmp_path / "ds")})
    assert graph.nodes("finetune", {"world": "window", "offline_dataset": str(tmp_path / "ds")})
    path = tiny_learner_checkpoint(tmp_path / "ck")
    p = ckpt.load_checkpoint(path)
    p["task"] = p["policy"]["task"] = {"name": "handle"}
    ckpt.save_checkpoint(path, p)
    with pytest.raises(ValueError, match="trained on pair 'handle', not on world 'window'"):
        graph.nodes("finetune", {"world": "window", "policy_checkpoint": str(path)})


def test_a_fleet_practising_two_pairs_takes_each_pairs_data_and_a_multi_task_policy(tmp_path):
    """world:=drawer,window: the offline datasets of both pairs and a checkpoint pre-trained on
    both are the fleet's inputs; each robot's scene and time limits come from its own pair's data;
    a dataset or checkpoint of a pair the fleet does not practise is still refused."""
    import json
    from tiny_models import tiny_learner_checkpoint
    from robofume_ros.data.dataset import DatasetWriter
    from robofume_ros.pipeline.evaluation import resolve_pair
    from robofume_ros.rl import checkpoint as ckpt
    from robofume_ros.rl.policy import checkpoint_pair, checkpoint_pairs
    from robofume_ros.rl.pretrain import data_task

    ds = {}
    for pair, scene in (("drawer", 3), ("window", 5), ("handle", 7)):
        with DatasetWriter(tmp_path / pair):
            pass
        (tmp_path / pair / "generate.json").write_text(json.dumps({"config": {"seed": scene, "pair": pair}}))
        ds[pair] = str(tmp_path / pair)
    task = data_task([ds["drawer"], ds["window"]])
    assert [t["name"] for t in task["pairs"]] == ["drawer", "window"]
    path = tiny_learner_checkpoint(tmp_path / "ck")
    p = ckpt.load_checkpoint(path)
    p["task"] = p["policy"]["task"] = task
    ckpt.save_checkpoint(path, p)
    assert checkpoint_pairs(p) == ["drawer", "window"] and checkpoint_pair(p) is None
    args = {
        "robots": "2",
        "world": "drawer,window",
        "offline_dataset": f"{ds['drawer']},{ds['window']}",
        "policy_checkpoint": str(path),
    }
    sims = {s.namespace: s.parameters for s in graph.nodes("finetune", args) if s.name == "sim"}
    assert {ns: (q["world"], q["scene_seed"]) for ns, q in sims.items()} == {
        "/robot1": ("drawer", 3),
        "/robot2": ("window", 5),
    }
    with pytest.raises(
        ValueError, match=r"generated for pair 'handle', not for the fleet's worlds \['drawer', 'window'\]"
    ):
        graph.nodes("finetune", {**args, "offline_dataset": f"{ds['drawer']},{ds['handle']}"})
    with pytest.raises(ValueError, match=r"trained on pairs \['drawer', 'window'\], not on world 'handle'"):
        graph.nodes("finetune", {"world": "handle", "policy_checkpoint": str(path)})
    # evaluating a multi-task policy: one of its pairs, named
    assert resolve_pair("window", None, p) == "window"
    with pytest.raises(ValueError, match="say which to evaluate"):
        resolve_pair(None, None, p)
    with pytest.raises(ValueError, match="not on 'handle'"):
        resolve_pair("handle", None, p)


def test_dry_run_prints_the_resolved_graph(capsys):
    from robofume_ros import cli

    assert cli.main(["launch", "finetune", "world:=handle", "budget_steps:=500", "--dry-run"]) == 0
    d = yaml.safe_load(capsys.readouterr().out)
    assert d["graph"] == "finetune" and d["task"]["pair"]["name"] == "handle"
    nodes = {n["name"]: n for n in d["nodes"]}
    sw = nodes["task_switcher"]["resolved"]
    # robot file (help_after_timeouts), recipe (success_frames), task (tasks, limits) in one place
    assert sw["help_after_timeouts"] == 0 and sw["success_frames"] == 3 and sw["forward_task"] == "handle-press"
    assert nodes["learner"]["resolved"]["budget_steps"] == 500 and nodes["learner"]["resolved"]["n_step"] == 10
    assert d["nodes"] == graph.describe("finetune", {"world": "handle", "budget_steps": "500"})["nodes"]


def test_the_sim_graph_runs_the_policy_it_is_told():
    """`robofume launch sim policy:=learned policy_checkpoint:=X` deploys the learned policy (no
    learner); the default is the scripted experts; fine-tuning always runs the learned one."""

    def names(graph_name, args):
        return {s.name for s in graph.nodes(graph_name, args)}

    assert "scripted_policy" in names("sim", {}) and "policy" not in names("sim", {})
    learned = graph.nodes("sim", {"policy": "learned", "policy_checkpoint": "/x/ckpt.pt"})
    by = {s.name: s for s in learned}
    assert "scripted_policy" not in by and by["policy"].parameters["checkpoint"] == "/x/ckpt.pt"
    assert "learner" not in by and "policy" in names("finetune", {"policy": "scripted"})


def test_a_simulated_person_joins_only_when_an_experiment_asks_and_only_in_simulation():
    assert "simulated_person" not in {s.name for s in graph.nodes("finetune", {})}
    by = {s.name: s for s in graph.nodes("finetune", {"simulated_person": "12"})}
    assert by["simulated_person"].parameters["budget"] == 12 and not by["simulated_person"].required
    with pytest.raises(ValueError, match="watches the simulator"):
        graph.nodes("finetune", {"simulated_person": "3", "robot": "franka"})


def test_a_node_that_segfaults_leaves_its_python_stack_in_the_death_report(tmp_path, monkeypatch):
    """A node killed by its own SIGSEGV (an extension's bug) is reported with the Python stack of
    every thread, which the runner has each node write into its log."""
    import time

    from robofume_ros.ros.runner import GraphRunner

    spec = graph.NodeSpec(name="crasher", executable="reward_node", params_files=[])
    runner = GraphRunner([spec], tmp_path, {k: v for k, v in graph.ros_env().items() if k != "PYTHONFAULTHANDLER"})
    crash = "import ctypes\ndef load_model():\n    ctypes.string_at(0)\nload_model()\n"
    monkeypatch.setattr(runner, "command", lambda s: [sys.executable, "-c", crash])
    with runner.start():
        deadline, deaths = time.monotonic() + 30, []
        while not deaths and time.monotonic() < deadline:
            deaths = runner.poll()
            time.sleep(0.1)
    assert deaths and "SIGSEGV" in deaths[0].message()
    assert "Segmentation fault" in deaths[0].message() and "load_model" in deaths[0].message()
