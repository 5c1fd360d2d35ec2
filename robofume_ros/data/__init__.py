"""Episodes, datasets on disk, and rosbag conversion."""
