"""The core (algorithms, data, reward, sim, safety, switching, online, vision, pipeline) never
imports rclpy: every module of every core folder, subfolders included."""

import subprocess
import sys
from pathlib import Path

import robofume_ros

PKG = Path(robofume_ros.__file__).resolve().parent
CORE = ["rl", "data", "reward", "sim", "safety", "switching", "online", "vision", "pipeline"]


def core_modules():
    mods = []
    for sub in CORE:
        for f in sorted((PKG / sub).rglob("*.py")):
            parts = f.relative_to(PKG).with_suffix("").parts
            mods.append("robofume_ros." + ".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return mods + [
        "robofume_ros.ros.graph",
        "robofume_ros.ros.params",
        "robofume_ros.ros.runner",
        "robofume_ros.interfaces",
        "robofume_ros.recipe",
    ]


def test_core_modules_do_not_import_rclpy():
    mods = core_modules()
    assert len(mods) > 20
    code = (
        "import sys, importlib\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py'))\n"
        "print('ROS_MODULES', bad)\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
