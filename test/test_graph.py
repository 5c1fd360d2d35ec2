"""One description of the node graph: launch files, runner and configs agree with graph.py."""
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from robofume_ros import graph
from robofume_ros.params import describe

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
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                      "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
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


@pytest.mark.parametrize("graph_name,args", [
    ("sim", {}), ("sim", {"world": "window", "record": "false", "fast": "true", "use_sim_time": "true"}),
    ("finetune", {}), ("finetune", {"seed": "3", "budget_steps": "500", "control_rate_hz": "5"}),
])
def test_launch_file_starts_what_the_runner_starts(fake_launch, graph_name, args, tmp_path):
    declared, nodes = run_launch_file(ROOT / "launch" / f"{graph_name}.launch.py", args)
    # every launch argument is declared, with graph.py's defaults and descriptions
    assert set(declared) == set(graph.ARGUMENT_NAMES)
    for a in graph.ARGUMENTS:
        assert declared[a.name]["default_value"] == a.default and declared[a.name]["description"]
    specs = graph.nodes(graph_name, args)
    launched = [(n.kwargs["executable"], n.kwargs["name"], n.kwargs["parameters"], n.kwargs["remappings"])
                for n in nodes]
    expected = [(s.executable, s.name, [s.params_file] + ([s.parameters] if s.parameters else []), s.remappings)
                for s in specs]
    assert launched == expected
    assert all(n.kwargs["package"] == "robofume_ros" for n in nodes)
    # the runner's command lines for the same specs name the same modules and node names
    from robofume_ros.runner import GraphRunner
    r = GraphRunner(specs, tmp_path, env={})
    for s in specs:
        cmd = r.command(s)
        assert cmd[cmd.index("-m") + 1] == f"robofume_ros.nodes.{s.executable}"
        assert f"__node:={s.name}" in cmd and s.params_file in cmd
        if s.parameters:
            override = yaml.safe_load(Path(cmd[cmd.index("--params-file", cmd.index(s.params_file)) + 1]).read_text())
            assert override == {s.name: {"ros__parameters": s.parameters}}


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
    with pytest.raises(FileNotFoundError, match="params file"):
        graph.nodes("sim", {"world": "nowhere"})


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


@pytest.mark.parametrize("cfg", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_config_files_only_set_declared_parameters(cfg):
    data = yaml.safe_load(cfg.read_text())
    exes = {s.name: s.executable for g in graph.GRAPHS for s in graph.nodes(g, {})}
    exes.update({e.removesuffix("_node"): e for e in graph.executables()})
    for section, body in data.items():
        if section == "/**":
            continue
        assert section in exes, f"{cfg.name}: section {section!r} is not a node of the graph"
        declared = {name: default for name, default, _ in
                    describe(importlib.import_module(f"robofume_ros.nodes.{exes[section]}").Params)}
        for key, value in body["ros__parameters"].items():
            if key == "use_sim_time":
                continue
            assert key in declared, f"{cfg.name}: {section}.{key} is not a declared parameter"
            d = declared[key]
            assert type(value) is type(d) or (isinstance(d, float) and isinstance(value, int)), (
                f"{cfg.name}: {section}.{key}={value!r} has the wrong type (default {d!r})")


def test_every_parameter_has_a_description():
    for exe in graph.executables():
        mod = importlib.import_module(f"robofume_ros.nodes.{exe}")
        for name, _default, help_text in describe(mod.Params):
            assert len(help_text) > 10, f"{exe}.{name} has no description"
