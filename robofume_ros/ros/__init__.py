"""Helpers shared by the ROS nodes: message <-> numpy conversions and QoS profiles.

This is the only package besides nodes/ that touches ROS message types."""
