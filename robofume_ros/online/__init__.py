"""online: the reset-free fine-tuning loop's pure parts (no ROS): episodes from the topic stream,
journaled to disk before training, and the background trainer that pushes weights."""
