"""Fleet scaling: 1 -> 2 -> 4 simulated robots feeding one learner, on this machine.

    .venv/bin/python bench/bench_fleet.py --run runs/main_drawer [--robots 1 2 4] [--seconds 120]

For each fleet size N it runs the product's own graph, `robofume launch finetune robots:=N`
(every robot at the 10 Hz wall clock with its own sim, camera, policy, reward, task switcher and
recorder, one learner) with a main-job run folder's checkpoint, reward model and dataset. After a
warm-up (the learner loaded and training) it measures over a window of `--seconds`:

  env steps/s     observations the learner received, all robots together and per robot
                  (a robot at its control rate makes 10 per second)
  updates/s       the learner's gradient updates, and updates per env step (the recipe asks for
                  utd_ratio of them)
  latency p99     the robot side's frame -> command latency (/diagnostics of each robot's sim),
                  the worst robot
  CPU             the share of the machine each kind of node used (psutil, summed over robots):
                  what limits the fleet

The N = 1 fleet is the baseline of the ratios (same code path: one robot under /robot1). Results
go to <out>/fleet.json and stdout as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import BenchNode, node_processes


class DiagnosticsMonitor(BenchNode):
    """Newest /diagnostics values per status name."""

    def __init__(self, domain: int):
        from diagnostic_msgs.msg import DiagnosticArray

        super().__init__(domain, "fleet_bench")
        self.values: dict = {}
        self.messages: dict = {}  # status name -> (level, message)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diag, 100)
        self.start()

    def on_diag(self, arr):
        with self.lock:
            for st in arr.status:
                self.values[st.name] = {kv.key: kv.value for kv in st.values}
                self.messages[st.name] = (st.level[0] if isinstance(st.level, bytes) else int(st.level), st.message)

    def message(self, name: str) -> tuple:
        with self.lock:
            return self.messages.get(name, (None, ""))

    def get(self, name: str) -> dict:
        with self.lock:
            return dict(self.values.get(name, {}))


def _num(v, default=0.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def run_fleet(n: int, ns, run: Path, out: Path, domain: int) -> dict:
    import psutil

    settings = json.loads((run / "settings.json").read_text()) if (run / "settings.json").exists() else {}
    args = {
        "world": settings.get("pair", "drawer"),
        "robots": str(n),
        "policy_checkpoint": str(run / "pretrain" / "checkpoint.pt"),
        "reward_model": str(run / "reward"),
        "offline_dataset": str(run / "data"),
        "budget_steps": str(10**7),
        "run_dir": str(out / f"robots{n}"),
        "record": "true",
    }
    total = ns.warmup + ns.seconds
    cmd = [sys.executable, "-m", "robofume_ros.cli", "launch", "finetune", *[f"{k}:={v}" for k, v in args.items()]]
    cmd += ["--duration", str(total + 30), "--domain-id", str(domain)]
    env = dict(
        os.environ,
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_LOG_DIR=str(out / f"robots{n}" / "ros_logs"),
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
    )
    (out / f"robots{n}").mkdir(parents=True, exist_ok=True)
    log = open(out / f"robots{n}" / "graph.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    mon = DiagnosticsMonitor(domain)
    robots = [f"robot{i + 1}" for i in range(n)]
    try:
        # warm-up: the lifecycle manager has every node active, the learner trains, then a settle
        # time; at most `warmup` seconds. A node that failed to configure ends the bench with why.
        t0, ready = time.time(), None
        while time.time() - t0 < ns.warmup and proc.poll() is None:
            time.sleep(1)
            level, _ = mon.message("robofume_ros/lifecycle_manager")
            if ready is None and level == 0 and _num(mon.get("robofume_ros/learner").get("updates")) > 0:
                ready = time.time()
            if ready is not None and time.time() - ready >= ns.settle:
                break
        if proc.poll() is not None:
            raise RuntimeError(f"the graph stopped during warm-up; see {out / f'robots{n}' / 'graph.log'}")
        level, message = mon.message("robofume_ros/lifecycle_manager")
        if level == 2:
            raise RuntimeError(f"the graph did not come up: {message}")
        learner0 = mon.get("robofume_ros/learner")
        cpu0 = {}
        for k, p in node_processes(proc.pid).items():
            try:
                cpu0[k] = sum(p.cpu_times()[:2])
            except psutil.Error:  # a node that just died (a robot may) is not counted
                continue
        w0 = time.time()
        latencies = defaultdict(list)
        while time.time() - w0 < ns.seconds and proc.poll() is None:
            time.sleep(2)
            for r in robots:
                v = mon.get(f"robofume_ros/{r}/sim")
                if "frame_to_command_ms/p99" in v:
                    latencies[r].append(_num(v["frame_to_command_ms/p99"]))
        window = time.time() - w0
        learner1 = mon.get("robofume_ros/learner")
        cpu = defaultdict(float)
        for k, p in node_processes(proc.pid).items():
            try:
                used = sum(p.cpu_times()[:2]) - cpu0.get(k, 0.0)
            except psutil.Error:
                continue
            cpu[k.rsplit("/", 1)[-1]] += used / window / (os.cpu_count() or 1)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        mon.close()
        log.close()
    steps = _num(learner1.get("env_steps")) - _num(learner0.get("env_steps"))
    updates = _num(learner1.get("updates")) - _num(learner0.get("updates"))
    per_robot = {
        r: (_num(learner1.get(f"robots/{r}/steps_received")) - _num(learner0.get(f"robots/{r}/steps_received")))
        / window
        for r in robots
    }
    return {
        "robots": n,
        "window_s": round(window, 1),
        "env_steps_per_s": round(steps / window, 2),
        "env_steps_per_s_per_robot": {r: round(v, 2) for r, v in per_robot.items()},
        "updates_per_s": round(updates / window, 2),
        "updates_per_env_step": round(updates / steps, 3) if steps else None,
        # the robot side reports p99 over its recent commands; the worst robot's newest report
        "latency_p99_ms_worst_robot": round(max((v[-1] for v in latencies.values() if v), default=float("nan")), 1),
        "cpu_share_by_node": {k: round(v, 3) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])},
        "cpu_share_total": round(sum(cpu.values()), 3),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a main-job run folder: its checkpoint, reward model and data")
    ap.add_argument("--robots", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=120.0, help="measuring window per fleet size")
    ap.add_argument(
        "--warmup",
        type=float,
        default=240.0,
        help="at most this long for every node to be active and the learner to train",
    )
    ap.add_argument("--settle", type=float, default=20.0, help="seconds after that before the window")
    ap.add_argument("--out", default="runs/bench_fleet")
    ap.add_argument("--domain-id", type=int, default=178, help="outside the 1-100 the tests draw from")
    ns = ap.parse_args(argv)
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in ns.robots:
        print(
            f"fleet of {n}: up to {ns.warmup:g} s warm-up (all nodes active, then {ns.settle:g} s), {ns.seconds:g} s window ...",
            flush=True,
        )
        results.append(run_fleet(n, ns, Path(ns.run), out, ns.domain_id))
        print(json.dumps(results[-1]), flush=True)
    (out / "fleet.json").write_text(json.dumps(results, indent=1))
    base = results[0]
    print(
        f"\n| robots | env steps/s (x vs {base['robots']}) | per robot | updates/s | updates per env step "
        "| latency p99 ms (worst robot) | CPU used (machine share) | biggest users |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = r["env_steps_per_s"] / base["env_steps_per_s"] if base["env_steps_per_s"] else float("nan")
        per = ", ".join(f"{v:.1f}" for v in r["env_steps_per_s_per_robot"].values())
        top = ", ".join(f"{k} {v:.0%}" for k, v in list(r["cpu_share_by_node"].items())[:3])
        print(
            f"| {r['robots']} | {r['env_steps_per_s']:.1f} ({ratio:.2f}x) | {per} | {r['updates_per_s']:.1f} | "
            f"{r['updates_per_env_step']} | {r['latency_p99_ms_worst_robot']} | {r['cpu_share_total']:.0%} | {top} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
