"""robofume_ros: reset-free robot fine-tuning (RoboFuME) with Cal-QL and OOO, as a ROS 2 package.

Layout:
  rl/         learning core (Cal-QL, CQL, IQL, BC, SAC, networks, replay) -- pure PyTorch
  reward/     success classifiers (VLM / dual encoder) that produce the reward -- pure PyTorch
  sim/        MuJoCo / Meta-World reset-free worlds -- pure Python
  data/       episodes, datasets on disk, rosbag conversion -- pure Python
  safety/     the safety envelope every arm command passes through -- pure Python
  switching/  forward/backward task-switching state machine -- pure Python
  online/     the fine-tuning loop's pure parts (episodes from the stream, background trainer)
  ros/        ROS glue: the one description of the node graph (graph.py, read by the launch files
              and the runner), the runner, node parameters, message conversions, QoS
  nodes/      thin ROS 2 nodes, one file each
  pipeline/   robofume main: the main job, ground-truth evaluation, the report
  interfaces.py  topics, message types and msg/*.msg constants (no ROS imports)
  recipe.py      the recipe files (config/recipes/) every node and the main job read
"""

# The rosidl-generated interfaces (robofume_ros.msg) are installed into the interpreter's
# site-packages by the CMake build, while this source package may be imported from a checkout.
# Extending __path__ lets both halves live under one package name.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
