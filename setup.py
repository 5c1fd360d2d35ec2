"""pip install for machines without a ROS 2 distro (tools/setup.sh uses it; colcon uses CMakeLists.txt).

The rosidl-generated interfaces (robofume_ros.msg) are built by CMake into the same prefix; this
installs the Python package, the `robofume` command and one console script per node module.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# Every robofume_ros/nodes/<name>_node.py is an executable named <name>_node, as with colcon.
NODES = sorted(p.stem for p in (HERE / "robofume_ros" / "nodes").glob("*_node.py"))

setup(
    name="robofume_ros",
    version="0.1.0",
    description="RoboFuME reset-free robot fine-tuning (Cal-QL, VLM reward, OOO) as ROS 2 nodes",
    packages=find_packages(include=["robofume_ros", "robofume_ros.*"]),
    package_data={"robofume_ros.rl": ["*.cpp"]},  # the learner's fused kernels, compiled on first use
    python_requires=">=3.10",
    entry_points={
        "console_scripts": ["robofume = robofume_ros.cli:main"] + [f"{n} = robofume_ros.nodes.{n}:main" for n in NODES],
    },
)
