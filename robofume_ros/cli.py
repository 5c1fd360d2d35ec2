"""`robofume`: the package's command line (works with or without a ROS 2 distro).

robofume launch sim world:=drawer --duration 60     run a node graph from graph.py (like ros2 launch)
robofume launch finetune ... --dry-run              print the resolved nodes and parameters
robofume main [--pair P] [--quick]                  the main job (see README)
robofume tasks [PAIR ...] [--cycles N]              task pairs, instructions, scripted cycle check
robofume params [NODE]                              every node knob with default and description
robofume topic echo|hz TOPIC                        watch a topic (like ros2 topic)
robofume dataset from-bags|generate|collect|info|video|plot datasets (see README)
robofume pretrain ...                               offline Cal-QL pre-training
robofume retrain --data D --data ONLINE --out DIR   OOO retraining on all data (--remote: the /retrain action)
robofume evaluate --policy CKPT --data DATASET      ground-truth success in a simulated pair
robofume reward train ...                           fine-tune the success classifier
robofume reward audit RUN|BAGS                      the reward's verdicts on a run against its success source
robofume override [success|not-success|undo]        a person's verdict on the running episode (keys)
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

# subcommands implemented elsewhere: name -> "module:function" taking argv
DELEGATES = {
    "pretrain": "robofume_ros.rl.pretrain:main",
    "retrain": "robofume_ros.pipeline.retrain:main",
    "main": "robofume_ros.pipeline.main_job:main",
    "topic": "robofume_ros.ros.topic_tools:main",
    "evaluate": "robofume_ros.pipeline.evaluation:main",
    "tasks": "robofume_ros.sim.check:main",
    "report": "robofume_ros.pipeline.report:main",
    "override": "robofume_ros.ros.override:main",
}
# subcommand -> ("module:function", leading argv): the function takes the rest of the command line
DATASET = {
    "from-bags": ("robofume_ros.data.convert:main", []),
    "generate": ("robofume_ros.data.generate:main", []),
    "collect": ("robofume_ros.data.generate:collect_main", []),
    "info": ("robofume_ros.data.inspect:main", ["info"]),
    "video": ("robofume_ros.data.inspect:main", ["video"]),
    "plot": ("robofume_ros.data.inspect:main", ["plot"]),
}
REWARD = {
    "train": ("robofume_ros.reward.train:main", []),
    "audit": ("robofume_ros.reward.audit:main", []),
}


def _call(target, argv: list[str]) -> int:
    target, lead = (target, []) if isinstance(target, str) else target
    mod, fn = target.split(":")
    return int(getattr(importlib.import_module(mod), fn)(lead + argv) or 0)


def parse_launch_args(items: list[str]) -> dict:
    out = {}
    for it in items:
        if ":=" not in it:
            raise SystemExit(f"launch arguments are name:=value, got {it!r}")
        k, v = it.split(":=", 1)
        out[k] = v
    return out


def default_run_dir(prefix: str) -> Path:
    return Path("runs") / f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}"


def cmd_launch(argv: list[str]) -> int:
    from robofume_ros.ros import graph, runner

    ap = argparse.ArgumentParser(
        prog="robofume launch",
        description="Run a node graph from robofume_ros/ros/graph.py "
        "(the same nodes and parameters as launch/<graph>.launch.py).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="launch arguments (name:=value):\n"
        + "\n".join(f"  {a.name:18s} {a.description} [default: {a.default!r}]" for a in graph.ARGUMENTS),
    )
    ap.add_argument("graph", choices=graph.GRAPHS)
    ap.add_argument("args", nargs="*", help="launch arguments name:=value")
    ap.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for the graph")
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="print every node with its resolved parameters, "
        "params files and remappings (what <run_dir>/graph.yaml records for a run) and exit",
    )
    ns = ap.parse_args(argv)
    args = parse_launch_args(ns.args)
    if ns.dry_run:
        print(graph.description_yaml(graph.describe(ns.graph, args)), end="")
        return 0
    run_dir = Path(args.get("run_dir") or default_run_dir(ns.graph))
    args["run_dir"] = str(run_dir)
    if not args.get("bag_dir"):
        args["bag_dir"] = str(run_dir / "bags")
    return runner.run_graph(ns.graph, args, run_dir, duration=ns.duration, domain_id=ns.domain_id)


def cmd_params(argv: list[str]) -> int:
    from robofume_ros.ros import graph
    from robofume_ros.ros.params import constraints, describe

    ap = argparse.ArgumentParser(
        prog="robofume params",
        description="Print every node parameter with its default, description and allowed values.",
    )
    ap.add_argument("node", nargs="?", help="executable name, e.g. sim_node (default: all)")
    ns = ap.parse_args(argv)
    for exe in graph.executables():
        if ns.node and ns.node not in (exe, exe.removesuffix("_node")):
            continue
        mod = importlib.import_module(f"robofume_ros.nodes.{exe}")
        print(f"{exe}:")
        meta = constraints(mod.Params)
        for name, default, help_text in describe(mod.Params):
            m = meta[name]
            allowed = f" [{m['range'][0]}, {m['range'][1]}]" if m.get("range") else ""
            allowed += f" {{{', '.join(m['choices'])}}}" if m.get("choices") else ""
            print(f"  {name:24s} {default!r:28s} {help_text}{allowed}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "launch":
        return cmd_launch(rest)
    if cmd == "params":
        return cmd_params(rest)
    if cmd in DELEGATES:
        return _call(DELEGATES[cmd], rest)
    for name, table in (("dataset", DATASET), ("reward", REWARD)):
        if cmd == name:
            if not rest or rest[0] not in table:
                print(f"usage: robofume {name} {{{','.join(table)}}} ...", file=sys.stderr)
                return 2
            return _call(table[rest[0]], rest[1:])
    print(f"unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
