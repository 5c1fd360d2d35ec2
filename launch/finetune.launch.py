"""Reset-free online fine-tuning: robot (sim or real arm) + camera + policy + reward + task switcher
+ learner (+ recorder).

    ros2 launch robofume_ros finetune.launch.py world:=drawer policy_checkpoint:=... reward_model:=...
    ros2 launch robofume_ros finetune.launch.py robot:=franka params_file:=my_franka.yaml

The node list, parameters and remappings come from robofume_ros.ros.graph (the same description
`robofume launch finetune` uses on machines without ros2 launch).
"""

from robofume_ros.ros.launch_support import generate_for


def generate_launch_description():
    return generate_for("finetune")
