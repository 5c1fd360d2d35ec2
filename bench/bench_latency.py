"""Control-path latency: camera frame -> command at the robot, in the running 10 Hz graph.

The simulator node stamps each frame; the camera's observation and the policy's command carry
that stamp; the robot side (sim or arm bridge) measures, as each command arrives, how old its
frame is, and reports p50 / p95 / p99 / max over the last minute on /diagnostics
(`frame_to_command_ms/*`). This bench runs the graph four times in one invocation: with the
background work (learner, recorder) at the same CPU priority as the control path
(`background_nice:=0`, the baseline) and niced (`background_nice:=10`, the default), each idle and
with every core busy (a bounded CPU burner), and prints each and the ratios. `--features shared own`
compares the camera computing the image features once for the policy, reward and learner
(`camera.shared_features`, the default) with each of them running its own encoder.

    .venv/bin/python bench/bench_latency.py --run runs/main_drawer            # the fine-tuning graph
    .venv/bin/python bench/bench_latency.py --checkpoint CKPT --graph sim      # policy only, no learner
    .venv/bin/python bench/bench_latency.py --run RUN --nice 10 --features shared own --loads idle

Goal (#22): p99 <= 20 ms at 10 Hz, idle or loaded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) % 2**31


def measure(graph_name: str, args: dict, seconds: float, warmup: float, burn: bool, domain: int) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    run_dir = Path(args["run_dir"])
    cmd = [sys.executable, "-m", "robofume_ros.cli", "launch", graph_name]
    cmd += [f"{k}:={v}" for k, v in args.items()]
    cmd += ["--duration", str(warmup + seconds + 5), "--domain-id", str(domain)]
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(run_dir / "ros_logs"))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("bench_latency", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    latest: dict = {}

    stages: dict = {}  # the path's stages as each node reports them: camera, policy

    def on_diag(arr):
        for st in arr.status:
            if st.name.endswith(("/sim", "/arm_bridge")):
                latest.update({kv.key: kv.value for kv in st.values})
            elif st.name.endswith(("/camera", "/policy", "/reward")):
                stages[st.name.rsplit("/", 1)[1]] = {kv.key: kv.value for kv in st.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    burners = []
    try:
        t_end = time.time() + warmup
        while time.time() < t_end:
            ex.spin_once(timeout_sec=0.2)
        if burn:
            stop_at = time.time() + seconds
            burners = [mp.Process(target=_burn, args=(stop_at,)) for _ in range(os.cpu_count() or 2)]
            for b in burners:
                b.start()
        latest.clear()
        stages.clear()
        t_end = time.time() + seconds
        while time.time() < t_end:
            ex.spin_once(timeout_sec=0.2)
    finally:
        for b in burners:
            b.join(timeout=5)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        proc.wait(timeout=60)
    out = {k.split("/", 1)[1]: float(v) for k, v in latest.items() if k.startswith("frame_to_command_ms/")}
    out.update(
        {"queued_" + k.split("/", 1)[1]: float(v) for k, v in latest.items() if k.startswith("command_queued_ms/")}
    )
    for node, values in stages.items():  # e.g. camera_frame_age_p99, policy_compute_p99
        for k, v in values.items():
            if k.startswith(("frame_age_ms/", "compute_ms/", "features_ms/")):
                out[f"{node}_{k.split('_ms/')[0]}_{k.split('/')[1]}"] = float(v)
            elif node == "reward" and k in ("inference_hz", "inference_ms"):
                out[f"reward_{k}"] = float(v)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="a main-job run folder: its checkpoint, reward model and data (fine-tuning graph)")
    ap.add_argument("--checkpoint", help="policy checkpoint (sim graph with the learned policy)")
    ap.add_argument("--graph", choices=("sim", "finetune"), default=None)
    ap.add_argument("--world", default="drawer")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured per condition (the newest minute)")
    ap.add_argument("--warmup", type=float, default=30.0)
    ap.add_argument("--out", default="runs/bench_latency")
    ap.add_argument("--nice", type=int, nargs="+", default=[0, 10], help="background_nice values to compare")
    ap.add_argument("--loads", nargs="+", default=["idle", "cores busy"], choices=("idle", "cores busy"))
    ap.add_argument(
        "--features",
        nargs="+",
        default=["shared"],
        choices=("shared", "own"),
        help="shared: the camera computes the image features once (the default graph); own: every consumer "
        "runs its own encoder (camera.shared_features false)",
    )
    ap.add_argument("--recipe", default=None, help="a recipe variant file for every condition (e.g. camera threads)")
    ns = ap.parse_args(argv)
    graph_name = ns.graph or ("finetune" if ns.run else "sim")
    base = {"world": ns.world, "record": "false"}
    if ns.run:
        run = Path(ns.run)
        base.update(
            policy_checkpoint=str(run / "pretrain" / "checkpoint.pt"),
            reward_model=str(run / "reward"),
            offline_dataset=str(run / "data"),
        )
    elif ns.checkpoint:
        base.update(policy="learned", policy_checkpoint=ns.checkpoint)
    else:
        raise SystemExit("give --run (a main-job run folder) or --checkpoint")
    results = {}
    Path(ns.out).mkdir(parents=True, exist_ok=True)
    own = Path(ns.out).resolve() / "own_features.yaml"  # a recipe variant: only what differs
    own.write_text("camera:\n  ros__parameters:\n    shared_features: false\n")
    if ns.recipe:
        base["recipe"] = str(Path(ns.recipe).resolve())
    conditions = [(f, nice, load) for load in ns.loads for nice in ns.nice for f in ns.features]
    for k, (feat, nice, load) in enumerate(conditions):
        name = f"background_nice {nice}, {load}" + (f", {feat} features" if len(ns.features) > 1 else "")
        folder = f"nice{nice}_{load.replace(' ', '_')}_{feat}"
        args = dict(base, background_nice=str(nice), run_dir=str(Path(ns.out) / folder))
        if feat == "own":
            args["recipe"] = ",".join(filter(None, [base.get("recipe"), str(own)]))
        results[name] = measure(graph_name, args, ns.seconds, ns.warmup, load != "idle", domain=90 + k)
        r = results[name]
        print(
            f"{graph_name} graph, {name}: frame -> command p50 {r.get('p50', float('nan')):.1f} ms, "
            f"p95 {r.get('p95', float('nan')):.1f}, p99 {r.get('p99', float('nan')):.1f}, "
            f"max {r.get('max', float('nan')):.1f} ({r.get('n', 0):.0f} commands); then waiting for the robot "
            f"node's executor p50 {r.get('queued_p50', float('nan')):.1f} ms, p99 {r.get('queued_p99', float('nan')):.1f}, "
            f"max {r.get('queued_max', float('nan')):.1f}",
            flush=True,
        )
        nan = float("nan")
        print(
            "  stages p50 / p99 ms: frame at the camera "
            f"{r.get('camera_frame_age_p50', nan):.1f} / {r.get('camera_frame_age_p99', nan):.1f}, "
            f"at the policy {r.get('policy_frame_age_p50', nan):.1f} / {r.get('policy_frame_age_p99', nan):.1f}, "
            f"policy compute {r.get('policy_compute_p50', nan):.1f} / {r.get('policy_compute_p99', nan):.1f}, "
            f"camera features {r.get('camera_features_p50', nan):.1f} / {r.get('camera_features_p99', nan):.1f}; "
            f"reward {r.get('reward_inference_hz', nan):.1f} verdicts/s, {r.get('reward_inference_ms', nan):.0f} ms each",
            flush=True,
        )
    if len(ns.nice) == 2 and len(ns.features) == 1:
        for load in ns.loads:
            a, b = (results[f"background_nice {n}, {load}"].get("p99") for n in ns.nice)
            if a and b:
                print(f"{load}: p99 with background_nice {ns.nice[1]} / {ns.nice[0]}: {b / a:.2f}x")
    if len(ns.features) == 2:
        for load in ns.loads:
            for nice in ns.nice:
                r = {f: results[f"background_nice {nice}, {load}, {f} features"] for f in ns.features}
                for q in ("p50", "p99"):
                    a, b = r["own"].get(q), r["shared"].get(q)
                    if a and b:
                        print(f"{load}, background_nice {nice}: {q} with shared / own features: {b / a:.2f}x")
    (Path(ns.out) / "latency.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
