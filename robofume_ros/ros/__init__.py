"""The ROS glue: the one description of the node graph (graph.py) and the runner that starts it
without `ros2 launch` (runner.py), launch-file support, topic tools, node parameters, and the
message <-> numpy conversions and QoS profiles the nodes share. graph, runner and params import no
rclpy (the core and the CLI read them); convert and qos are for the nodes."""
