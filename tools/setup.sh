#!/usr/bin/env bash
# One-command setup for machines without a ROS 2 distro: creates .venv with the ROS 2 PyPI wheels,
# torch==2.13.0 (CPU), MuJoCo + Meta-World and the rest; installs the Debian GL libraries for headless
# rendering; builds msg/ with rosidl into the venv; installs this package. Idempotent: a re-run
# only redoes steps whose inputs changed. Every failing step names itself and its fix.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROBOFUME_VENV:-$ROOT/.venv}"
PY_BOOT="${PYTHON:-python3}"
STAMPS="$VENV/.robofume-stamps"
T0=$(date +%s)

step() { printf '\n==> [setup] %s\n' "$*"; }
fail() { printf '\n[setup] FAILED at step "%s"\n[setup] fix: %s\n' "$1" "$2" >&2; exit 1; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# 1. Debian packages: GL for headless MuJoCo rendering (EGL, OSMesa), compilers for rosidl and for
#    the learner's fused kernels (g++, ninja: torch.utils.cpp_extension).
step "system packages (EGL/OSMesa for headless MuJoCo, cmake, g++, ninja, iproute2 for the two-host test)"
need=()
for p in libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libosmesa6 cmake g++ ninja-build iproute2; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    fail "system packages" "install as root: apt-get install -y ${need[*]}"; fi
  echo "installing: ${need[*]}"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null; } \
    || fail "system packages" "run: apt-get update && apt-get install -y ${need[*]}"
else
  echo "all present"
fi

# 2. The virtual environment.
step "virtual environment at $VENV"
"$PY_BOOT" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
  || fail "virtual environment" "Python 3.11 is required (the torch 2.13.0 CPU wheel and ROS wheels are cp311); set PYTHON=/path/to/python3.11"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY_BOOT" -m venv "$VENV" || fail "virtual environment" "install python3-venv (apt-get install python3-venv) or remove a broken $VENV"
else
  echo "exists"
fi
PY="$VENV/bin/python"

# 3. Python dependencies.
step "Python packages (requirements.txt)"
req_hash=$(hash_of "$ROOT/requirements.txt")
if stamp_ok requirements "$req_hash"; then
  echo "up to date"
else
  "$PY" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
  "$PY" -c 'import torch, rclpy, mujoco, metaworld, rosbags, transformers' 2>/dev/null \
    || fail "Python packages" "pip could not install requirements.txt; rerun '$PY -m pip install -r requirements.txt' and read its error (torch==2.13.0 must come from the local CPU wheel: pip config find-links)"
  stamp_set requirements "$req_hash"
fi

# 4. The interfaces (msg/) through rosidl into the venv prefix.
step "interfaces: rosidl build of msg/*.msg and action/*.action"
msg_hash=$(hash_of "$ROOT"/msg/*.msg "$ROOT"/action/*.action "$ROOT/CMakeLists.txt" "$ROOT/package.xml")
if stamp_ok interfaces "$msg_hash" && "$PY" -c 'import robofume_ros.msg, robofume_ros.action' 2>/dev/null; then
  echo "up to date"
else
  BUILD="$VENV/.robofume-build"
  rm -rf "$BUILD"; mkdir -p "$BUILD"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  ( cd "$BUILD" && PATH="$VENV/bin:$PATH" cmake "$ROOT" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$PY" -DROBOFUME_INSTALL_PYTHON=OFF -DBUILD_TESTING=OFF >cmake.log 2>&1 \
    && PATH="$VENV/bin:$PATH" make -j"$(nproc)" >make.log 2>&1 && make install >install.log 2>&1 ) \
    || fail "interfaces" "see $BUILD/*.log; usually a missing ros-* build wheel in requirements.txt or a .msg syntax error"
  SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # rosidl installs an empty robofume_ros/__init__.py and an egg-info; the real package comes from
  # this checkout (step 5) and extends its __path__ to the generated half.
  rm -f "$SITE/robofume_ros/__init__.py"; rm -rf "$SITE"/robofume_ros-*.egg-info
  stamp_set interfaces "$msg_hash"
fi

# 5. This package (editable, so a checkout edit needs no reinstall).
step "robofume_ros package (editable)"
pkg_hash=$( { cat "$ROOT/setup.py"; ls "$ROOT"/robofume_ros/nodes/ || true; } | sha256sum | cut -d' ' -f1)
if stamp_ok package "$pkg_hash" && [ -x "$VENV/bin/robofume" ]; then
  echo "up to date"
else
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
      --config-settings editable_mode=compat -e "$ROOT" 2>&1 | grep -v "is ignored" || true
  [ -x "$VENV/bin/robofume" ] || fail "package" "rerun: $PY -m pip install --no-deps -e $ROOT"
  stamp_set package "$pkg_hash"
fi

# 6. Smoke check in a fresh process: generated types publish through rclpy; MuJoCo renders headless.
step "check: interfaces import in a new process, MuJoCo renders with EGL"
ROS_LOG_DIR="$(mktemp -d)" MUJOCO_GL=egl "$PY" - <<'PYEOF' || fail "check" "see the traceback above"
import rclpy, mujoco
from robofume_ros.msg import Observation, Reward, TaskPhase
rclpy.init(); node = rclpy.create_node("robofume_setup_check")
node.create_publisher(Reward, "/robofume_setup_check", 1); node.destroy_node(); rclpy.shutdown()
m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
r = mujoco.Renderer(m, 32, 32); d = mujoco.MjData(m); mujoco.mj_forward(m, d); r.update_scene(d); r.render(); r.close()
print("interfaces and rendering OK")
PYEOF
# 7. The learner's fused CPU kernels (robofume_ros/rl/critic_kernels.cpp), compiled for this CPU
#    into torch's extension cache now rather than in the first learner (about 30 s, once per source
#    version). Not fatal: without a compiler the learner runs the same math in plain PyTorch ops.
step "learner's fused CPU kernels (compiled once for this CPU)"
"$PY" -m robofume_ros.rl.native || echo "[setup] note: kernels not built; training uses plain PyTorch ops (slower)"
echo "[setup] done in $(( $(date +%s) - T0 )) s; venv: $VENV"
