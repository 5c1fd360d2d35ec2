"""The critic's fused CPU kernels (critic_kernels.cpp), compiled on first use.

`kernels()` returns the compiled module, or None where it cannot be had: no C++ compiler or
Python headers, a build error, or ROBOFUME_NATIVE=0. The first call on a machine compiles the
source with torch.utils.cpp_extension (25-35 s on 2 cores, once per source version and virtual
environment; tools/setup.sh does it ahead) into torch's extension cache (TORCH_EXTENSIONS_DIR,
default ~/.cache/torch_extensions); later processes load it in 1-2 s (torch re-checks the build). Callers fall back to plain PyTorch ops when it is
None, so nothing depends on it but speed. The build is for this CPU (-march=native): the cache
key includes a digest of the source, the compiler flags and the CPU's model and flags, so a
cache shared between different machines never loads a binary built for another CPU.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import time
from pathlib import Path

LOG = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("critic_kernels.cpp")
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fopenmp-simd"]
_STATE: dict = {}


def enabled() -> bool:
    return os.environ.get("ROBOFUME_NATIVE", "1") != "0"


def _cpu_signature() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return platform.machine() + line
    except OSError:  # no /proc (not Linux): the coarser platform description
        pass
    return platform.machine() + platform.processor()


def build_name() -> str:
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(CFLAGS).encode(), _cpu_signature().encode()):
        h.update(part)
    return "robofume_critic_kernels_" + h.hexdigest()[:16]


def hold_build_lock(name: str, wait: bool = True):
    """An exclusive flock beside torch's build folder, held while this process loads or builds
    `name`: an open file to close when done, or None (wait=False and another process holds it).
    The kernel releases a flock when its process dies, however it dies; torch's own `lock` file
    stays behind a killed build and every later process waits for it to go, forever. So torch's
    lock found while holding this one was left by a dead build: `clear_dead_build_lock` removes it
    at once (an age rule kept every learner waiting for 10 minutes after a killed build)."""
    import fcntl

    from torch.utils.cpp_extension import _get_build_directory

    folder = Path(_get_build_directory(name, False))
    fh = open(folder.parent / f"{name}.flock", "a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def clear_dead_build_lock(name: str) -> bool:
    """Remove torch's build lock of `name`, left by a killed build; call it holding
    `hold_build_lock(name)` (no live build can own it then). Returns whether there was one."""
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory(name, False)) / "lock"
    if not lock.exists():
        return False
    lock.unlink()
    LOG.warning("removed a build lock left by a killed build of the kernels (%s)", lock)
    return True


def kernels(verbose: bool = False):
    """The compiled module (cached per process), or None (reason logged once)."""
    if "mod" in _STATE:
        return _STATE["mod"]
    mod = None
    if not enabled():
        LOG.info("fused critic kernels off (ROBOFUME_NATIVE=0)")
    else:
        try:
            from torch.utils.cpp_extension import load

            name = build_name()
            t = time.perf_counter()
            guard = hold_build_lock(name)  # waits while another process builds or loads them
            try:
                clear_dead_build_lock(name)
                mod = load(
                    name=name, sources=[str(SOURCE)], extra_cflags=CFLAGS, extra_ldflags=["-fopenmp"], verbose=verbose
                )
            finally:
                guard.close()
            dt = time.perf_counter() - t
            # a compile (first use of this source on this CPU) takes ~30 s: say so, it looks like a hang
            (LOG.info if dt > 5 else LOG.debug)(
                "fused critic kernels ready in %.1f s (%d-lane build)", dt, mod.vector_width()
            )
        except Exception as ex:  # noqa: BLE001 - no compiler / headers / build error: plain PyTorch ops instead
            LOG.warning(
                "fused critic kernels unavailable, using plain PyTorch ops (%s: %s)",
                type(ex).__name__,
                str(ex).strip().splitlines()[-1] if str(ex).strip() else "",
            )
    _STATE["mod"] = mod
    return mod


def main(argv=None) -> int:
    """`python -m robofume_ros.rl.native`: build (or load) the kernels now; exit 0 if they load."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # the result line below says the rest
    t = time.perf_counter()
    mod = kernels(verbose=False)
    print(
        f"fused critic kernels: {'ready' if mod is not None else 'unavailable (plain PyTorch ops are used)'}"
        f" in {time.perf_counter() - t:.1f} s ({build_name()})"
    )
    return 0 if mod is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
