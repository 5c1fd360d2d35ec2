"""Runs a node graph from graph.py as supervised processes (for machines without `ros2 launch`).

Each node is its own process (`python -m robofume_ros.nodes.<executable> --ros-args ...`), with its
output in <run_dir>/logs/<node>.log. The runner watches them: a node that dies is reported with
its exit code or signal and the last lines of its log; a `respawn` node is restarted, any other
required node stops the whole graph. Shutdown is SIGINT, then SIGTERM, then SIGKILL. Children get
SIGTERM from the kernel if the runner itself dies (PR_SET_PDEATHSIG), so nothing is orphaned.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from robofume_ros.ros import graph as graph_mod


def _in_child(nice: int = 0):  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the runner
    except OSError:
        pass
    if nice > 0:
        os.nice(nice)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


@dataclass
class NodeProcess:
    spec: graph_mod.NodeSpec
    log: Path
    proc: Optional[subprocess.Popen] = None
    restarts: int = 0
    exit_code: Optional[int] = None


@dataclass
class Death:
    node: str
    executable: str
    code: int
    log: Path
    respawned: bool

    def message(self) -> str:
        msg = (
            f"node '{self.node}' ({self.executable}) died: {describe_exit(self.code)}"
            f"{'; respawning' if self.respawned else ''}; log: {self.log}"
        )
        t = tail(self.log)
        return msg + ("\n  last log lines:\n    " + t.replace("\n", "\n    ") if t else "")


@dataclass
class GraphRunner:
    specs: list
    run_dir: Path
    env: dict
    python: str = sys.executable
    max_restarts: int = 5
    procs: dict = field(default_factory=dict)
    deaths: list = field(default_factory=list)

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "params").mkdir(parents=True, exist_ok=True)
        names = [s.fqn for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate node names in graph: {names}")

    def command(self, spec) -> list[str]:
        override = None
        if spec.parameters:
            override = self.run_dir / "params" / f"{spec.key}.yaml"
            override.parent.mkdir(parents=True, exist_ok=True)
            override.write_text(graph_mod.overrides_yaml(spec))
        files = graph_mod.node_params_files(spec, self.run_dir / "params")
        return graph_mod.node_command(spec, self.python, str(override) if override else None, files)

    def _spawn(self, np_: NodeProcess) -> None:
        logf = open(np_.log, "ab", buffering=0)
        try:
            np_.proc = subprocess.Popen(
                self.command(np_.spec),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # a node killed by a signal of its own (SIGSEGV in an extension, SIGABRT) writes
                # every thread's Python stack into its log, which the death report quotes
                env={"PYTHONFAULTHANDLER": "1", **self.env},
                preexec_fn=functools.partial(_in_child, np_.spec.nice),
            )
        finally:
            logf.close()
        np_.exit_code = None

    def start(self) -> "GraphRunner":
        # one lifecycle manager for the managed nodes this runner runs (all of a graph, or one host's)
        self.specs = graph_mod.lifecycle_managed(self.specs)
        for spec in self.specs:
            np_ = NodeProcess(spec, self.run_dir / "logs" / f"{spec.key}.log")
            np_.log.parent.mkdir(parents=True, exist_ok=True)
            self.procs[spec.key] = np_
            self._spawn(np_)
        return self

    def poll(self) -> list[Death]:
        """Check every node once; returns the deaths seen now (and restarts respawn nodes)."""
        new = []
        for np_ in self.procs.values():
            if np_.proc is None or np_.exit_code is not None:
                continue
            code = np_.proc.poll()
            if code is None:
                continue
            np_.exit_code = code
            respawn = np_.spec.respawn and np_.restarts < self.max_restarts
            d = Death(np_.spec.key, np_.spec.executable, code, np_.log, respawn)
            new.append(d)
            self.deaths.append(d)
            if respawn:
                np_.restarts += 1
                time.sleep(min(2.0, 0.5 * np_.restarts))
                self._spawn(np_)
        return new

    def fatal(self, deaths: list[Death]) -> list[Death]:
        """Deaths that end the run: a required node that is not restarted, or a restarted node
        that used up its restarts (it keeps failing)."""
        return [
            d
            for d in deaths
            if not d.respawned and (self.procs[d.node].spec.required or self.procs[d.node].spec.respawn)
        ]

    def running(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.proc is not None and p.proc.poll() is None]

    def stop(self, sigint_timeout: float = 8.0, sigterm_timeout: float = 4.0) -> dict:
        """SIGINT everything, then SIGTERM what is left, then SIGKILL. Returns exit codes."""
        for sig, timeout in ((signal.SIGINT, sigint_timeout), (signal.SIGTERM, sigterm_timeout), (signal.SIGKILL, 5.0)):
            alive = [p for p in self.procs.values() if p.proc is not None and p.proc.poll() is None]
            if not alive:
                break
            for p in alive:
                try:
                    p.proc.send_signal(sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout
            for p in alive:
                try:
                    p.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        return {n: (p.proc.returncode if p.proc else None) for n, p in self.procs.items()}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def write_description(run_dir: Path, d: dict, log=print) -> Path:
    """<run_dir>/graph.yaml: the resolved description of what runs (graph_mod.resolve), so a result
    always says exactly what produced it; the task's derived values are printed too."""

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "graph.yaml"
    path.write_text(graph_mod.description_yaml(d))
    t = d["task"]
    log(
        f"[robofume] task pair {t['pair']['name']!r} ({t['pair']['forward']} / {t['pair']['backward']}); "
        f"time limits forward {t['time_limits'][0]}, backward {t['time_limits'][1]} steps, from {t['time_limits_from']}; "
        f"recipe {', '.join(d['recipe']['files'])}; resolved graph: {path}"
    )
    return path


def run_graph(
    graph: str,
    args: dict,
    run_dir: Path,
    duration: Optional[float] = None,
    domain_id: Optional[int] = None,
    log=print,
    on_tick=None,
    localhost_only: bool = False,
) -> int:
    """Start a graph, supervise it until `duration` passes, a required node dies, or Ctrl-C.
    Returns a process exit code (0 = clean)."""
    specs, description = graph_mod.resolve(graph, args)
    write_description(Path(run_dir), description, log)
    env = graph_mod.ros_env(domain_id=domain_id, log_dir=str(Path(run_dir) / "ros_logs"), localhost_only=localhost_only)
    runner = GraphRunner(specs, Path(run_dir), env)
    log(f"[robofume] starting graph '{graph}' with {len(specs)} nodes: {', '.join(s.key for s in specs)}")
    log(f"[robofume] params file: {specs[0].params_file}; logs: {Path(run_dir) / 'logs'}")
    stop_requested = []
    old = signal.signal(signal.SIGINT, lambda *_: stop_requested.append(True))
    old_term = signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    code = 0
    t0 = time.monotonic()
    try:
        runner.start()
        while not stop_requested:
            deaths = runner.poll()
            for d in deaths:
                log("[robofume] " + d.message())
            fatal = runner.fatal(deaths)
            if fatal:
                log(f"[robofume] stopping: required node(s) {', '.join(d.node for d in fatal)} died")
                code = 1
                break
            if on_tick is not None and on_tick(time.monotonic() - t0) is False:
                break
            if duration is not None and time.monotonic() - t0 >= duration:
                break
            time.sleep(0.2)
    finally:
        codes = runner.stop()
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)
    unclean = {n: c for n, c in codes.items() if c not in (0, None, -signal.SIGINT)}
    log(f"[robofume] graph stopped after {time.monotonic() - t0:.1f} s; exit codes: {codes}")
    if unclean and code == 0:
        log(f"[robofume] nodes that did not exit cleanly: {unclean}")
    return code
