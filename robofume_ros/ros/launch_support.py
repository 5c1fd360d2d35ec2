"""Turns graph.py's description into a launch.LaunchDescription (used by launch/*.launch.py).

Only imported by `ros2 launch` on a ROS 2 distro; `launch` and `launch_ros` are not needed anywhere
else. Every launch argument of graph.ARGUMENTS is declared with its default and description.
"""

from __future__ import annotations

from robofume_ros.ros import graph


def launch_nodes(graph_name: str, context):
    """The launch_ros Node actions for `graph_name`, with launch arguments read from `context`."""
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    args = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.ARGUMENTS}
    import tempfile

    actions = []
    rewritten = tempfile.mkdtemp(prefix="robofume_params_")  # params files rewritten for a namespace
    for spec in graph.nodes(graph_name, args):
        files = graph.node_params_files(spec, rewritten)
        parameters = files + ([dict(spec.parameters)] if spec.parameters else [])
        actions.append(
            Node(
                package="robofume_ros",
                executable=spec.executable,
                name=spec.name,
                namespace=spec.namespace or None,
                parameters=parameters,
                remappings=list(spec.remappings),
                output="screen",
                respawn=spec.respawn,
                prefix=f"nice -n {spec.nice}" if spec.nice else None,
            )
        )
    return actions


def generate_for(graph_name: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description) for a in graph.ARGUMENTS]
        + [OpaqueFunction(function=lambda context: launch_nodes(graph_name, context))]
    )
