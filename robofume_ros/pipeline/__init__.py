"""The main job's pipeline: `robofume main` (main_job), ground-truth evaluation, the report. Pure
Python: it starts the ROS graph through ros/runner.py as separate processes."""
