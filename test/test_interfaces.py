"""One table of topics and one set of message constants, read from msg/*.msg: what the core uses
equals what the generated messages carry."""

import pytest

from robofume_ros import interfaces
from robofume_ros.ros import graph
from robofume_ros.data import bags
from robofume_ros.switching import task_switcher


def test_constants_come_from_the_msg_files():
    msg = pytest.importorskip("robofume_ros.msg")
    for name in (
        "REASON_START",
        "REASON_SUCCESS",
        "REASON_TIMEOUT",
        "REASON_FORCED",
        "REASON_RESUMED",
        "FORWARD",
        "BACKWARD",
    ):
        assert interfaces.TASK_PHASE[name] == getattr(msg.TaskPhase, name), name
    assert task_switcher.REASON_SUCCESS == bags.REASON_SUCCESS == msg.TaskPhase.REASON_SUCCESS
    assert task_switcher.BACKWARD == bags.BACKWARD == msg.TaskPhase.BACKWARD


def test_one_topic_table():
    assert graph.TOPICS is interfaces.TOPICS and bags.TOPICS is interfaces.TOPICS
    assert len(set(interfaces.TOPICS.values())) == len(interfaces.TOPICS)
    assert set(interfaces.MSGTYPES) == set(interfaces.TOPICS)


def test_topic_names_resolve_in_a_namespace():
    # relative names (a namespace moves them) but /diagnostics, which ROS tools expect global
    assert [k for k, n in interfaces.TOPICS.items() if n.startswith("/")] == ["diagnostics"]
    assert interfaces.topic_name("observation") == "/observation"
    assert interfaces.topic_name("command", "robot1") == "/robot1/robot/command"
    assert interfaces.topic_name("diagnostics", "robot1") == "/diagnostics"
    assert interfaces.topic_key("/robot1/camera/image_raw") == "image"
    assert interfaces.topic_key("robot/command") == interfaces.topic_key("/a/b/robot/command") == "command"
    assert interfaces.topic_key("/replay/observation") == "observation" and interfaces.topic_key("/joy") is None
    assert interfaces.bag_namespace(["/robot1/observation", "/robot1/backfill/observation", "/x"]) == "/robot1"
    assert interfaces.bag_namespace(["/observation", "/backfill/observation"]) == ""
    assert interfaces.bag_namespace(["/image"]) == ""
    with pytest.raises(ValueError, match="several namespaces"):
        interfaces.bag_namespace(["/robot1/observation", "/robot2/observation"])
    assert interfaces.normalize_namespace("/robot1/arm/") == "/robot1/arm"
    with pytest.raises(ValueError):
        interfaces.normalize_namespace("2robot")


def test_command_to_action_reads_rclpy_and_bag_messages_alike():
    store = bags.typestore()
    m = bags.make_command(store, 0, [0.1, -0.2, 0.3, 0.4, 0.5, 0.6, 1.0])
    assert interfaces.command_to_action(m, 7).tolist() == [0.1, -0.2, 0.3, 0.4, 0.5, 0.6, 1.0]
    assert interfaces.command_to_action(m, 4).tolist() == [0.1, -0.2, 0.3, 1.0]
    with pytest.raises(ValueError, match="4 or 7"):
        interfaces.command_to_action(m, 5)
