"""Parameters a user can trust: ranges and choices in the descriptor, a value outside them rejected
at start with the allowed values named, and read-only while the node runs."""

from dataclasses import dataclass

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter

from robofume_ros import recipe
from robofume_ros.ros import graph
from robofume_ros.ros.params import check_value, constraints, declare, knob


@dataclass
class Params:
    rate_hz: float = knob(10.0, "control rate", range=(0.1, 100.0))
    frames: int = knob(3, "debounce frames", range=(1, 10))
    source: str = knob("reward", "success source", choices=("reward", "ground_truth"))


def _node(ctx, name, **overrides):
    return rclpy.create_node(
        name, context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
    )


def test_ranges_and_choices_are_enforced_and_described():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=graph_domain())
    try:
        node = _node(ctx, "ok_node", rate_hz=20.0, source="ground_truth")
        p = declare(node, Params)
        assert (p.rate_hz, p.frames, p.source) == (20.0, 3, "ground_truth")
        d = node.describe_parameter("rate_hz")
        assert d.read_only and d.floating_point_range[0].to_value == 100.0 and "control rate" in d.description
        assert node.describe_parameter("frames").integer_range[0].from_value == 1
        # read-only while running: a set is refused, the value stays
        res = node.set_parameters([Parameter("frames", value=5)])[0]
        assert not res.successful and "read-only" in res.reason
        assert node.get_parameter("frames").value == 3
        node.destroy_node()
        for name, bad, msg in (
            ("n1", {"rate_hz": 500.0}, r"rate_hz is outside its range \[0.1, 100.0\]"),
            ("n2", {"frames": 0}, r"frames is outside its range \[1, 10\]"),
            ("n3", {"source": "oracle"}, "source='oracle' is not one of 'reward', 'ground_truth'"),
        ):
            node = _node(ctx, name, **bad)
            with pytest.raises(ValueError, match=msg):
                declare(node, Params)
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


@dataclass
class LiveParams:
    noise: float = knob(0.5, "exploration", range=(0.0, 5.0), runtime=True)
    frames: int = knob(3, "debounce frames", range=(1, 10), runtime=True)
    model: str = knob("m", "model path")


def test_runtime_knobs_change_while_running_within_their_range():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=graph_domain())
    try:
        node = _node(ctx, "live_node")
        applied = []

        def apply(name, value):
            if name == "frames" and value == 7:
                raise ValueError("7 frames: refused by the node")
            applied.append((name, value))

        p = declare(node, LiveParams, apply)
        assert not node.describe_parameter("noise").read_only and node.describe_parameter("model").read_only
        assert node.set_parameters([Parameter("noise", value=0.2)])[0].successful
        assert p.noise == 0.2 and applied == [("noise", 0.2)]
        for name, value, why in (
            ("noise", 9.0, r"out of range Min: 0.0, Max: 5.0"),  # rclpy's check of the descriptor's range
            ("frames", 7, "refused by the node"),
            ("model", "other", "read-only"),
        ):
            res = node.set_parameters([Parameter(name, value=value)])[0]
            assert not res.successful and __import__("re").search(why, res.reason), res.reason
        assert (p.noise, p.frames, p.model) == (0.2, 3, "m")  # nothing changed by a refused value
        assert node.get_parameter("noise").value == 0.2 and node.get_parameter("frames").value == 3
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_the_switcher_takes_a_new_debounce_while_running(tmp_path):
    """`ros2 param set /task_switcher success_frames 5` reaches the running state machine."""
    import re
    import time

    from rcl_interfaces.msg import Parameter as ParamMsg
    from rcl_interfaces.srv import SetParameters
    from rosgraph import graph_under_test

    with graph_under_test(
        "finetune", {"run_dir": str(tmp_path / "run"), "record": "false"}, tmp_path, only=("task_switcher",)
    ) as g:
        probe = g.probe()
        client = probe.node.create_client(SetParameters, "/task_switcher/set_parameters")
        assert client.wait_for_service(timeout_sec=20)

        def set_param(name, value):
            req = SetParameters.Request()
            req.parameters = [ParamMsg(name=name, value=Parameter(name, value=value).get_parameter_value())]
            fut = client.call_async(req)
            deadline = time.monotonic() + 10
            while not fut.done() and time.monotonic() < deadline:
                time.sleep(0.05)
            return fut.result().results[0]

        assert set_param("success_frames", 5).successful
        bad = set_param("success_frames", 0)
        assert not bad.successful and "out of range. Min: 1, Max: 1000" in bad.reason
        assert not set_param("forward_task", "x").successful
        from diagnostic_msgs.msg import DiagnosticArray

        probe.subscribe("/diagnostics", DiagnosticArray)
        deadline = time.monotonic() + 10
        log = ""
        while "parameter success_frames set to 5 while running" not in log and time.monotonic() < deadline:
            time.sleep(0.1)
            log = g.log("task_switcher")

        # a user's threshold on a reported value raises the node's level while it holds
        def switcher_status(since):
            return [
                st
                for arr in probe.get("/diagnostics")[since:]
                for st in arr.status
                if st.name.endswith("/task_switcher")
            ]

        bad = set_param("diagnostics_error", ["time_limit >> 1"])
        assert not bad.successful and "is not 'KEY > NUMBER' or 'KEY < NUMBER'" in bad.reason, bad.reason
        assert set_param("diagnostics_error", ["time_limit > 1", "no_such_value < 3"]).successful
        since = len(probe.get("/diagnostics"))
        deadline = time.monotonic() + 10
        while not switcher_status(since) and time.monotonic() < deadline:
            time.sleep(0.1)
        st = switcher_status(since)[-1]
        assert st.level == b"\x02" and re.search(r"ERROR time_limit \d+ > 1", st.message), (st.level, st.message)
        assert "rules on values not reported: no_such_value" in st.message
        assert set_param("diagnostics_error", ["time_limit > 100000"]).successful
        since = len(probe.get("/diagnostics"))
        deadline = time.monotonic() + 10
        while not switcher_status(since) and time.monotonic() < deadline:
            time.sleep(0.1)
        st = switcher_status(since)[-1]
        assert st.level == b"\x00" and "ERROR" not in st.message, (st.level, st.message)
        g.assert_alive()
    assert "parameter success_frames set to 5 while running" in log


def test_threshold_rules_over_diagnostics_values():
    from robofume_ros.ros.node import ERROR, OK, WARN, apply_rules, parse_rules

    assert parse_rules(["compute_ms/p95 > 50", "inference_hz<5", "warnings/quarantined:/observation > 0"]) == [
        ("compute_ms/p95", ">", 50.0),
        ("inference_hz", "<", 5.0),
        ("warnings/quarantined:/observation", ">", 0.0),
    ]
    for bad in ("a >> 1", "a > b", "> 3", "a = 3"):
        with pytest.raises(ValueError, match="is not 'KEY > NUMBER'"):
            parse_rules([bad])
    values = {"a": 7.0, "b": 0, "mode": "deterministic"}
    assert apply_rules(OK, "fine", values) == (OK, "fine")
    assert apply_rules(OK, "fine", values, warn=["a > 5"]) == (WARN, "fine | WARN a 7 > 5")
    assert apply_rules(OK, "fine", values, warn=["a > 5"], error=["b < 1"]) == (
        ERROR,
        "fine | ERROR b 0 < 1; WARN a 7 > 5",
    )
    # a node's own ERROR stays; a rule that does not hold, or names nothing numeric, changes no level
    assert apply_rules(ERROR, "down", values, warn=["a > 8"])[0] == ERROR
    assert apply_rules(OK, "fine", values, warn=["mode > 1", "typo > 1"]) == (
        OK,
        "fine | rules on values not reported: mode, typo",
    )


def graph_domain() -> int:
    from rosgraph import next_domain_id

    return next_domain_id()


def test_the_recipe_is_within_every_knobs_range():
    import importlib

    exes = {s.name: s.executable for g in graph.GRAPHS for s in graph.nodes(g, {})}
    for section, params in recipe.load("default").items():
        if section == "main":
            continue
        meta = constraints(importlib.import_module(f"robofume_ros.nodes.{exes[section]}").Params)
        for key, value in params.items():
            check_value(f"{section}.{key}", value, meta[key])
    with pytest.raises(ValueError, match=r"policy.noise_scale=9.0 is outside its range \[0.0, 5.0\]"):
        meta = constraints(importlib.import_module("robofume_ros.nodes.policy_node").Params)
        check_value("policy.noise_scale", 9.0, meta["noise_scale"])


def test_a_managed_node_turns_error_when_its_input_stops(tmp_path):
    """/diagnostics: the task switcher reports how long its observations have been silent and,
    active and silent longer than `input_timeout_s` (set while running), turns ERROR naming the
    topic; observations again bring it back."""
    import time

    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.msg import Parameter as ParamMsg
    from rcl_interfaces.srv import SetParameters
    from rosgraph import graph_under_test

    from robofume_ros.msg import Observation

    with graph_under_test(
        "finetune", {"run_dir": str(tmp_path / "run"), "record": "false"}, tmp_path, only=("task_switcher",)
    ) as g:
        probe = g.probe({"/diagnostics": DiagnosticArray})
        client = probe.node.create_client(SetParameters, "/task_switcher/set_parameters")
        assert client.wait_for_service(timeout_sec=20)
        req = SetParameters.Request()
        req.parameters = [ParamMsg(name="input_timeout_s", value=Parameter("x", value=1.5).get_parameter_value())]
        fut = client.call_async(req)
        deadline = time.monotonic() + 10
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fut.result().results[0].successful
        obs = probe.publisher("/observation", Observation)

        def statuses(since):
            return [
                st
                for arr in probe.get("/diagnostics")[since:]
                for st in arr.status
                if st.name.endswith("/task_switcher")
            ]

        def wait_status(pred, timeout=15.0):
            since = len(probe.get("/diagnostics"))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for st in statuses(since):
                    if pred(st):
                        return st
                time.sleep(0.1)
            raise AssertionError(f"no such status; last: {[(s.level, s.message) for s in statuses(0)[-3:]]}")

        def age(st):
            return float({kv.key: kv.value for kv in st.values}.get("input_age_s/observation", "nan"))

        # before its first observation the node reports no silence: it waits, it is not broken
        first = wait_status(lambda st: True)
        assert "input_age_s/observation" not in {kv.key for kv in first.values} and first.level != b"\x02"
        for _ in range(5):
            obs.publish(Observation())
            time.sleep(0.05)
        heard = wait_status(lambda st: age(st) < 1.0)
        assert heard.level != b"\x02", heard.message
        silent = wait_status(lambda st: st.level == b"\x02")
        assert "ERROR no /observation for" in silent.message and "input_timeout_s 1.5" in silent.message
        assert age(silent) > 1.5
        for _ in range(5):
            obs.publish(Observation())
            time.sleep(0.05)
        back = wait_status(lambda st: age(st) < 1.0)
        assert back.level != b"\x02" and "no /observation" not in back.message, back.message
        g.assert_alive()
