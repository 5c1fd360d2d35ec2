"""Soak: the simulated fine-tuning graph for an hour with a fault every few minutes.

    .venv/bin/python bench/soak.py --run runs/main_drawer [--minutes 60] [--fault-every 240]

Runs `robofume launch finetune` (the product's own graph, recorder on) with a main-job run
folder's checkpoint, reward model and dataset, and injects one fault at a time, in turn:

  kill-learner    SIGKILL the learner (the runner restarts it; it resumes and backfills)
  poison          10 s of malformed /observation messages at 200 Hz (wrong image size, bad
                  encoding, short and NaN proprioception)
  cpu-burn        every core busy for 60 s (a bounded burner per core)
  freeze-learner  SIGSTOP the learner for 30 s, then SIGCONT: it neither hears nor answers, as
                  behind a cut link (its DDS participant stays; on one host this stands in for
                  the two-namespace link cut of test_netns_two_hosts.py)
  kill-reward     SIGKILL the reward node (the task switcher falls back to time limits meanwhile)

(The policy, camera and robot side are required nodes: killing one stops the graph by design.)

It reports, in <out>/soak.json and on stdout: each node's memory (RSS) at the start and end and
its growth per hour (a least-squares slope over the samples after the first 10 minutes, per
process lifetime), episodes and transitions the learner lost against the recorder's bag (every
episode both saw begin and end), learner updates lost to kills (the update counter before a kill
minus where the restarted learner resumed), the control path's frame -> command latency from the
robot side's /diagnostics, and whether the hand ever left the workspace box of config/sim.yaml.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import BenchNode, node_processes

# the nodes a run must survive losing: the learner and the reward are restarted by the runner; the
# robot side, camera and policy are required (their death stops the graph, the arm held safe)
FAULTS = ("kill-learner", "poison", "cpu-burn", "freeze-learner", "kill-reward")
NODES = ("sim", "camera", "policy", "reward", "task_switcher", "learner", "recorder")


def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) % 2**31


class Monitor(BenchNode):
    """The soak's own ROS node: phases, learner diagnostics, the robot side's latency, the hand's
    position; and a publisher for the poison fault."""

    def __init__(self, domain: int, low, high, pair: str):
        from diagnostic_msgs.msg import DiagnosticArray

        from robofume_ros.sim.tasks import get_pair

        from robofume_ros.msg import Observation, TaskPhase

        super().__init__(domain, "soak_monitor")
        self.Observation = Observation
        self.low, self.high = np.asarray(low), np.asarray(high)
        self.pair = get_pair(pair)
        self.learner: dict = {}
        self.learner_t = 0.0  # when the learner's newest status arrived
        self.robot: dict = {}
        self.last_episode = -1
        self.outside = []  # (time, xyz) where the hand was outside the box
        self.observations = 0
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diag, 50)
        self.node.create_subscription(TaskPhase, "/task_phase", self.on_phase, 50)
        self.node.create_subscription(Observation, "/observation", self.on_obs, 50)
        self.pub = self.node.create_publisher(Observation, "/observation", 10)
        self.start()

    def on_diag(self, arr):
        for st in arr.status:
            vals = {kv.key: kv.value for kv in st.values}
            with self.lock:
                if st.name.endswith("/learner"):
                    self.learner, self.learner_t = vals, time.time()
                elif st.name.endswith(("/sim", "/arm_bridge")):
                    self.robot = vals

    def on_phase(self, m):
        self.last_episode = max(self.last_episode, int(m.episode_index))

    def on_obs(self, m):
        if m.header.frame_id == "soak-poison" or len(m.proprio) < 3:
            return
        self.observations += 1
        xyz = np.asarray(m.proprio[:3])
        if np.any(xyz < self.low - 1e-3) or np.any(xyz > self.high + 1e-3):
            self.outside.append((time.time(), xyz.tolist()))

    def poison(self, seconds: float, rate_hz: float = 200.0) -> int:
        from robofume_ros.ros.convert import rgb_to_image

        sent, t_end = 0, time.time() + seconds
        while time.time() < t_end:
            o = self.Observation()
            o.header.stamp = self.node.get_clock().now().to_msg()
            o.header.frame_id = "soak-poison"
            kind = sent % 4
            size = 50 if kind == 0 else 100
            o.image = rgb_to_image(np.full((size, size, 3), sent % 255, np.uint8), o.header.stamp)
            if kind == 1:
                o.image.encoding = "yuv422_weird"
            o.proprio = [0.0, 0.6, 0.2] if kind == 2 else [0.0, float("nan") if kind == 3 else 0.6, 0.2, 1.0]
            # an episode no one runs: the bag keeps the poison apart from the robot's episodes
            o.instruction, o.task = self.pair.instruction("forward"), self.pair.task("forward")
            o.episode_index = 999_999
            self.pub.publish(o)
            sent += 1
            time.sleep(1.0 / rate_hz)
        return sent


def growth_mb_per_h(samples, skip_s: float) -> dict:
    """{node: MB/h} from [(t, node, pid, rss_bytes)]: slope of the longest-lived process of each
    node after the first skip_s seconds."""
    by = defaultdict(list)
    t0 = samples[0][0] if samples else 0
    for t, n, pid, rss in samples:
        if t - t0 >= skip_s:
            by[(n, pid)].append((t, rss))
    out = {}
    for (n, _pid), pts in by.items():
        if len(pts) < 5:
            continue
        t, r = np.array(pts).T
        slope = float(np.polyfit(t - t[0], r / 1e6, 1)[0]) * 3600
        if n not in out or len(pts) > out[n][1]:
            out[n] = (slope, len(pts), (t[-1] - t[0]) / 60)
    return {n: {"mb_per_h": round(s, 1), "over_min": round(m, 1)} for n, (s, _k, m) in out.items()}


def compare_with_bag(run_dir: Path, last_closed: int) -> dict:
    from robofume_ros.data.bags import BagTruncatedError, recover_bag, transitions_per_episode
    from robofume_ros.data.dataset import load_episodes

    bags = sorted((run_dir / "bags").iterdir())
    try:
        per_episode = transitions_per_episode(bags)
    except BagTruncatedError:  # a recorder that did not close its last file: read up to the damage
        for b in bags:
            recover_bag(b)
        per_episode = transitions_per_episode(bags)
    stored = {int(e.provenance["episode_index"]): len(e) for e in load_episodes(run_dir / "learner" / "online")}
    closed = [i for i in sorted(per_episode) if 0 < i < last_closed]
    missing = [i for i in closed if i not in stored]
    short = {i: (stored[i], per_episode[i]) for i in closed if i in stored and stored[i] != per_episode[i]}
    bag_transitions = sum(per_episode[i] for i in closed)
    learner_transitions = sum(stored.get(i, 0) for i in closed)
    return {
        "episodes_compared": len(closed),
        "episodes_missing": missing,
        "episodes_differing": short,
        "transitions_bag": bag_transitions,
        "transitions_learner": learner_transitions,
        "transitions_lost": bag_transitions - learner_transitions,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a main-job run folder: its checkpoint, reward model and data")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--fault-every", type=float, default=240.0, help="seconds between faults")
    ap.add_argument("--first-fault", type=float, default=180.0, help="seconds before the first fault")
    ap.add_argument("--out", default="runs/soak")
    ap.add_argument("--domain-id", type=int, default=177, help="outside the 1-100 the tests draw from")
    ns = ap.parse_args(argv)
    import yaml

    run, out = Path(ns.run), Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = json.loads((run / "settings.json").read_text()) if (run / "settings.json").exists() else {}
    world = settings.get("pair", "drawer")
    sim_cfg = yaml.safe_load((ROOT / "config" / "sim.yaml").read_text())
    gate = next(v["ros__parameters"] for k, v in sim_cfg.items() if "workspace_low" in v.get("ros__parameters", {}))
    args = {
        "world": world,
        "policy": "learned",
        "policy_checkpoint": str(run / "pretrain" / "checkpoint.pt"),
        "reward_model": str(run / "reward"),
        "offline_dataset": str(run / "data"),
        "budget_steps": str(10**7),  # the learner trains for the whole soak
        "run_dir": str(out / "run"),
        "record": "true",
    }
    duration = ns.minutes * 60
    cmd = [sys.executable, "-m", "robofume_ros.cli", "launch", "finetune", *[f"{k}:={v}" for k, v in args.items()]]
    cmd += ["--duration", str(duration + 60), "--domain-id", str(ns.domain_id)]
    env = dict(
        os.environ,
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_LOG_DIR=str(out / "ros_logs"),
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
    )
    log = open(out / "graph.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    mon = Monitor(ns.domain_id, gate["workspace_low"], gate["workspace_high"], world)
    samples, faults, latency, updates_lost = [], [], [], []
    t0 = time.time()
    next_fault, k = t0 + ns.first_fault, 0
    print(f"soak: {ns.minutes:g} min of the {world} fine-tuning graph, a fault every {ns.fault_every:g} s", flush=True)
    try:
        while time.time() - t0 < duration and proc.poll() is None:
            procs = node_processes(proc.pid)
            now = time.time()
            for n, p in procs.items():
                try:
                    samples.append((now, n, p.pid, p.memory_info().rss))
                except Exception:  # noqa: BLE001 - a process that just died has no memory to sample
                    pass
            with mon.lock:
                robot = dict(mon.robot)
            if "frame_to_command_ms/p99" in robot:
                latency.append({k.split("/", 1)[1]: float(v) for k, v in robot.items() if k.startswith("frame_to")})
            if now >= next_fault:
                kind = FAULTS[k % len(FAULTS)]
                k += 1
                rec = {"t_min": round((now - t0) / 60, 1), "fault": kind}
                if kind.startswith("kill-"):
                    target = kind.split("-", 1)[1]
                    with mon.lock:
                        before = int(mon.learner.get("updates", 0) or 0)
                    p = procs.get(target)
                    if p is not None:
                        os.kill(p.pid, signal.SIGKILL)
                        rec["pid"] = p.pid
                    if target == "learner":  # where does the restarted learner resume?
                        killed_at, deadline = time.time(), time.time() + 240
                        while time.time() < deadline:
                            time.sleep(1)
                            q = node_processes(proc.pid).get("learner")
                            with mon.lock:
                                u, fresh = mon.learner.get("updates"), mon.learner_t > killed_at + 0.5
                            if q is not None and q.pid != rec.get("pid") and fresh and u is not None:
                                rec["resumed_at_update"] = int(u)  # its first status after the restart
                                break
                        rec["updates_before"] = before
                        if "resumed_at_update" in rec:
                            updates_lost.append(max(0, before - rec["resumed_at_update"]))
                elif kind == "poison":
                    rec["sent"] = mon.poison(10.0)
                elif kind == "cpu-burn":
                    stop_at = time.time() + 60
                    for _ in range(os.cpu_count() or 2):
                        mp.Process(target=_burn, args=(stop_at,), daemon=True).start()
                elif kind == "freeze-learner":
                    p = procs.get("learner")
                    if p is not None:
                        os.kill(p.pid, signal.SIGSTOP)
                        time.sleep(30)
                        os.kill(p.pid, signal.SIGCONT)
                faults.append(rec)
                print(f"[{rec['t_min']:5.1f} min] fault {kind}: {rec}", flush=True)
                next_fault = time.time() + ns.fault_every
            time.sleep(10)
        last_closed = mon.last_episode - 1
        with mon.lock:
            learner = dict(mon.learner)
    finally:
        try:
            proc.send_signal(signal.SIGINT)  # the runner stops its nodes in order (the recorder closes its bag)
            proc.wait(timeout=120)
        except ProcessLookupError:
            pass  # the graph stopped by itself (a required node died): reported below
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        mon.close()
        log.close()
    mem = {}
    for n in NODES:
        pts = [(t, rss) for t, m, _pid, rss in samples if m == n]
        if pts:
            mem[n] = {"start_mb": round(pts[0][1] / 1e6, 1), "end_mb": round(pts[-1][1] / 1e6, 1)}
    for n, g in growth_mb_per_h(samples, skip_s=600).items():
        mem.setdefault(n, {}).update(g)
    lat = latency[-1] if latency else {}
    result = {
        "minutes": round((time.time() - t0) / 60, 1),
        "graph_exit_code": proc.returncode,
        "world": world,
        "faults": faults,
        "memory": mem,
        "learner": {k: learner.get(k) for k in ("env_steps", "updates", "episodes", "online_transitions")},
        "learner_dropped": {k: v for k, v in learner.items() if k.startswith("dropped/")},
        "updates_lost_per_learner_kill": updates_lost,
        "latency_ms_last_minute": lat,
        "latency_p99_ms_worst_minute": max((x.get("p99", 0.0) for x in latency), default=None),
        "observations_seen": mon.observations,
        "hand_outside_workspace": len(mon.outside),
        "hand_outside_examples": mon.outside[:5],
    }
    try:
        result["store_vs_bag"] = compare_with_bag(out / "run", last_closed)
    except Exception as e:  # noqa: BLE001 - the soak's other numbers still count
        result["store_vs_bag"] = {"error": f"{type(e).__name__}: {e}"}
    (out / "soak.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
