"""Simulated reset-free data collection: sim + camera + scripted experts + task switcher + recorder.

    ros2 launch robofume_ros sim.launch.py world:=drawer action_noise:=0.1

The node list, parameters and remappings come from robofume_ros.ros.graph (the same description
`robofume launch sim` uses on machines without ros2 launch).
"""

from robofume_ros.ros.launch_support import generate_for


def generate_launch_description():
    return generate_for("sim")
