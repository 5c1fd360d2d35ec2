"""Thin ROS 2 nodes, one file each: parameters in, topics in and out, calls into the core.

Every `<name>_node.py` here is an executable `<name>_node` (colcon and pip installs both)."""
