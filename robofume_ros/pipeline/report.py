"""The main job's report: success table, learning curve, reward trace, episode video (pure Python)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def _fig(w=7, h=4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def online_stream(bags: list) -> dict:
    """What the reset-free run did, from the recorder's bags: per episode (observations grouped by
    episode index) its task, length, the simulator's verdict at its last frame and whether the task
    switcher ended it (`ended`; the run's last episode is cut by the budget); per scored frame
    the reward's probability and verdict next to the simulator's. Ground truth is read only here,
    for evaluation: the learner never sees it."""
    from robofume_ros.data.bags import read_graph_messages
    from robofume_ros.ros.convert import stamp_key

    needed = ("observation", "reward", "ground_truth")
    msgs = read_graph_messages(bags, [*needed, "task_phase"], required=needed)  # phases: newer bags only
    gt, obs, rewards, current = {}, [], [], -1
    for key, _t, m, _s in msgs:
        if key == "task_phase":
            current = max(current, int(m.episode_index))
        elif key == "ground_truth":
            gt[(stamp_key(m.header.stamp), m.task)] = bool(m.success)
        elif key == "observation":
            obs.append((stamp_key(m.header.stamp), int(m.episode_index), m.task))
        else:
            rewards.append(
                (
                    stamp_key(m.header.stamp),
                    int(m.episode_index),
                    float(m.probability),
                    bool(m.success),
                    float(m.threshold),
                )
            )
    task_of = {s: (e, t) for s, e, t in obs}
    episodes: dict = {}
    for s, e, t in sorted(obs):
        ep = episodes.setdefault(e, {"index": e, "task": t, "steps": 0, "last": s})
        ep["steps"] += 1
        ep["last"] = s
    step = 0
    for e in sorted(episodes):
        ep = episodes[e]
        step += ep["steps"]
        ep["end_step"] = step
        ep["gt_success"] = gt.get((ep.pop("last"), ep["task"]))
        # the switcher ended it (the run's last one is cut by the budget); None: no phases recorded
        ep["ended"] = e < current if current >= 0 else None
    frames = []
    for s, e, p, ok, thr in sorted(rewards):
        if s in task_of:
            frames.append(
                {
                    "episode": e,
                    "task": task_of[s][1],
                    "probability": p,
                    "success": ok,
                    "threshold": thr,
                    "gt": gt.get((s, task_of[s][1])),
                }
            )
    return {"episodes": [episodes[e] for e in sorted(episodes)], "frames": frames, "overrides": overrides(bags)}


def overrides(bags: list) -> dict:
    """A person's reward overrides in the bags, by verdict (RewardOverride)."""
    from robofume_ros.data.bags import read_graph_messages
    from robofume_ros.interfaces import msg_constants

    names = {v: k.lower().replace("_", "-") for k, v in msg_constants("RewardOverride").items()}
    out = {n: 0 for n in names.values()}
    # none recorded: before overrides existed, or none was given
    msgs = read_graph_messages(bags, ["reward_override"], required=False)
    for _key, _t, m, _s in msgs:
        key = names.get(int(m.verdict), f"verdict {int(m.verdict)}")
        out[key] = out.get(key, 0) + 1
    return out


def learning_curve(stream: dict, png: Path, window: int = 5) -> dict:
    """Ground-truth success of each online episode's task at its end, per direction, against
    cumulative environment steps (a rolling mean over `window` episodes of that direction)."""
    fig = _fig()
    ax = fig.add_subplot(1, 1, 1)
    out = {}
    eps = [e for e in stream["episodes"] if e["gt_success"] is not None and e["ended"] is not False]
    for task in sorted({e["task"] for e in eps}):
        mine = [e for e in eps if e["task"] == task]
        gt = np.array([e["gt_success"] for e in mine], float)
        roll = [gt[max(0, i - window + 1) : i + 1].mean() for i in range(len(gt))]
        ax.plot([e["end_step"] for e in mine], roll, marker="o", ms=3, label=f"{task} (ground truth, rolling {window})")
        out[task] = {
            "episodes": len(gt),
            "successes": int(gt.sum()),
            "success_first_half": float(gt[: len(gt) // 2].mean()) if len(gt) > 1 else None,
            "success_second_half": float(gt[len(gt) // 2 :].mean()),
        }
    ax.set_xlabel("online environment steps")
    ax.set_ylabel("episode success rate")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Reset-free fine-tuning: success of each episode (simulator ground truth)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return out


def reward_trace(stream: dict, png: Path, last: int = 6, success_frames: int = 3, tolerance: int = 2) -> dict:
    """/reward probability along the last episodes with the simulator's verdict shaded; returns
    the frame-level false-positive and false-negative rates of the reward's success verdict and, per
    task, what its debounced verdict (`success_frames` in a row at the recorded threshold) did to the
    episodes: recognised / premature / missed successes (reward.online_recall)."""
    from robofume_ros.reward.online_recall import by_task, verdict_counts

    frames = [f for f in stream["frames"] if f["gt"] is not None]
    fig = _fig(9, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    shown = sorted({f["episode"] for f in frames})[-last:]
    t0 = 0
    for e in shown:
        fe = [f for f in frames if f["episode"] == e]
        x = np.arange(t0, t0 + len(fe))
        ax.plot(x, [f["probability"] for f in fe], lw=1)
        ax.fill_between(x, 0, 1, where=[f["gt"] for f in fe], color="green", alpha=0.15, step="mid")
        ax.axvline(t0, color="gray", lw=0.5)
        ax.text(t0 + 1, 1.02, fe[0]["task"], fontsize=7)
        t0 += len(fe)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("scored frame (last episodes; green = simulator says done)")
    ax.set_ylabel("P(task done)")
    ax.set_title("/reward along the last online episodes")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    out = _verdict_rates(frames)
    # per task, and how many of its episodes were already done at their first scored frame (a forward
    # attempt that failed leaves the drawer closed: the backward episode starts done, and only a
    # reward that recognises that switches back at once)
    out["per_task"] = {}
    for task in sorted({f["task"] for f in frames}):
        mine = [f for f in frames if f["task"] == task]
        first = {}
        for f in mine:
            first.setdefault(f["episode"], f["gt"])
        out["per_task"][task] = {
            **_verdict_rates(mine),
            "episodes": len(first),
            "episodes_starting_done": int(sum(first.values())),
        }
    thresholds = [f["threshold"] for f in frames if f.get("threshold") is not None]
    if thresholds:
        out["threshold"] = float(np.median(thresholds))
        out["success_frames"] = int(success_frames)
        # the reward node's own per-frame verdicts (threshold and pair veto applied), debounced as the
        # task switcher does
        said = [{**f, "probability": 1.0 if f["success"] else 0.0, "partner_probability": None} for f in frames]
        for task, eps in by_task(said).items():
            out["per_task"][task]["verdicts"] = verdict_counts(eps, 0.5, success_frames, tolerance)
    return out


def reward_adaptation(run: Path, bags: list, success_frames: int = 3, tolerance: int = 2) -> dict:
    """What the reward learned online (reward.adapt): its versions, the trusted labels, and the
    debounced verdicts of the last version on the run's recorded frames next to those the reward gave
    as it ran; what OOO's relabelling changed. Empty when the reward did not adapt."""
    from robofume_ros.reward.adapt import LABELS_FILE, VERSION_FILE, versions

    out: dict = {}
    relabel = run / "retrain" / "online_relabelled" / "relabel.json"
    if relabel.exists():
        out["ooo_relabel"] = json.loads(relabel.read_text())
    adapted = run / "finetune" / "reward_adapted"
    vs = versions(adapted)
    if not vs:
        return out
    last = json.loads((vs[-1] / VERSION_FILE).read_text())
    out.update(versions=len(vs), last_version=str(vs[-1]), trusted_frames=last.get("trusted_frames"))
    if (adapted / LABELS_FILE).exists():
        import numpy as np

        with np.load(adapted / LABELS_FILE) as z:
            kinds = [f"{w}_{'success' if ok else 'not_done'}" for w, ok in zip(z["why"], z["success"])]
        out["labels"] = {k: kinds.count(k) for k in sorted(set(kinds))}
    if bags:
        from robofume_ros.reward.audit import rescored_stream
        from robofume_ros.reward.base import load_reward_model
        from robofume_ros.reward.online_recall import by_task, verdict_counts

        model = load_reward_model(vs[-1])
        stream = rescored_stream(bags, model)
        out["last_version_on_the_run"] = {
            task: verdict_counts(eps, model.threshold, success_frames, tolerance)
            for task, eps in by_task(stream["frames"]).items()
        }
    return out


def _verdict_rates(frames: list) -> dict:
    """Frame-level FN rate (done by ground truth, reward says not) and FP rate of the reward's verdict."""
    pos = [f for f in frames if f["gt"]]
    neg = [f for f in frames if not f["gt"]]
    fn = sum(not f["success"] for f in pos)
    fp = sum(f["success"] for f in neg)
    return {
        "frames": len(frames),
        "positives": len(pos),
        "fn_rate": fn / len(pos) if pos else None,
        "fp_rate": fp / len(neg) if neg else None,
    }


def success_bars(results: dict, png: Path) -> None:
    fig = _fig(7, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    names = list(results)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [results[n]["forward_success"] for n in names], 0.4, label="forward")
    ax.bar(x + 0.2, [results[n]["backward_success"] for n in names], 0.4, label="backward")
    ax.set_xticks(x)
    ax.set_xticklabels([n.split(" (")[0] for n in names])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (ground truth)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def q_curve(csv_path: Path, png: Path) -> bool:
    if not csv_path.exists():
        return False
    rows = list(csv.DictReader(open(csv_path)))
    keys = [k for k in ("q_data", "mc_return", "q_policy") if rows and k in rows[0]]
    if not keys:
        return False
    fig = _fig()
    ax = fig.add_subplot(1, 1, 1)
    for k in keys:
        ax.plot([float(r["update"]) for r in rows], [float(r[k]) for r in rows], label=k)
    ax.set_xlabel("learner update")
    ax.set_title("online Cal-QL: Q on data vs Monte-Carlo return")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return True


def write_report(run: Path, results: dict, settings: dict, seconds: dict) -> Path:
    """`settings`: what produced the run ({"pair": name, "success_frames": n, ...: the main job's
    settings.json}); `seconds`: wall time per pipeline stage (those of earlier, interrupted
    invocations included)."""
    run = Path(run)
    from robofume_ros.data.dataset import load_episodes

    online = run / "finetune" / "learner" / "online"
    eps = load_episodes(online) if online.exists() else []
    bags = sorted((run / "finetune" / "bags").glob("*")) if (run / "finetune" / "bags").exists() else []
    stream = online_stream(bags) if bags else {"episodes": [], "frames": []}
    curve = learning_curve(stream, run / "learning_curve.png") if stream["episodes"] else {}
    trace = (
        reward_trace(stream, run / "reward_trace.png", success_frames=settings.get("success_frames", 3))
        if stream["frames"]
        else {}
    )
    adaptation = reward_adaptation(run, bags, settings.get("success_frames") or 3)
    success_bars(results, run / "success.png")
    has_q = q_curve(run / "finetune" / "learner" / "metrics.csv", run / "q_online.png")
    video = None
    if eps:
        from robofume_ros.data.inspect import write_video

        fwd = [i for i, e in enumerate(eps) if e.success]
        write_video(run / "online_episode.gif", eps, fps=10, scale=2, indices=(fwd[-1:] or [len(eps) - 1]))
        video = "online_episode.gif"
    pair = settings.get("pair", "?")
    lines = [
        f"# RoboFuME on the simulated {pair} pair",
        "",
        f"Wall time {sum(seconds.values()) / 60:.1f} min of pipeline on this machine ("
        + ", ".join(f"{k} {v / 60:.1f}" for k, v in seconds.items())
        + " min). Settings (`settings.json`; "
        f"the fine-tuning graph as it ran: `finetune/graph.yaml`): `{json.dumps(settings)}`",
        "",
        "| policy | forward success | backward success |",
        "|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['forward_success']:.0%} ({len(r['forward_trials'])} trials) | "
            f"{r['backward_success']:.0%} ({len(r['backward_trials'])} trials) |"
        )
    setting = next((r.get("setting") for r in results.values() if r.get("setting")), None)
    if setting:
        where = (
            f"in the robot's workspace scene (placement seed {setting['scene_seed']}, the scene of the demos and "
            f"of fine-tuning), each trial from a reset-free start with the arm homed +- "
            f"{setting['start_jitter'] * 100:.0f} cm"
            if setting.get("scene_seed") is not None
            else "in freshly placed scenes"
        )
        lines += [
            "",
            f"Ground truth from the simulator, {'deterministic' if setting.get('deterministic') else 'stochastic'} "
            f"actions, {setting['max_steps']} steps per trial, {where}.",
        ]
    lines += ["", "![success](success.png)", ""]
    if eps:
        lines += [
            f"Online: {len(stream['episodes'])} reset-free episodes, "
            f"{sum(e['steps'] for e in stream['episodes'])} observations; {len(eps)} episodes "
            f"({sum(len(e) for e in eps)} transitions) in the learner's online dataset.",
            "",
        ]
    if curve:
        lines += [
            f"Learning curve per task (ground truth): `{json.dumps(curve)}`",
            "",
            "![learning curve](learning_curve.png)",
            "",
        ]
    ovr = stream.get("overrides") or {}
    lines += [
        f"Reward overrides by a person (`robofume override`, teleop buttons): {sum(ovr.values())}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in ovr.items()) + ")" if ovr else ""),
        "",
    ]
    if trace:
        lines += [
            f"Reward during fine-tuning vs ground truth (frames scored by the reward node): `{json.dumps(trace)}`",
            "",
        ]
        if trace.get("threshold") is not None:
            lines += [
                f"The reward's debounced verdict ({trace['success_frames']} frames in a row at or above "
                f"{trace['threshold']:.3f}) on the online episodes, against the simulator (on time: at most "
                f"2 frames before its flag; `robofume reward audit {run}` for other "
                f"thresholds): "
                + "; ".join(
                    f"{task} {v['verdicts']['recognised']} successes recognised, {v['verdicts']['premature']} "
                    f"premature, {v['verdicts']['missed']} missed"
                    for task, v in trace["per_task"].items()
                    if "verdicts" in v
                )
                + ".",
                "",
            ]
        lines += ["![reward trace](reward_trace.png)", ""]
    if adaptation.get("versions"):
        after = adaptation.get("last_version_on_the_run", {})
        lines += [
            f"The reward adapted online (`reward:adapt`): {adaptation['versions']} versions, the last on "
            f"{adaptation['trusted_frames']} trusted frames ({json.dumps(adaptation.get('labels', {}))}). Its last "
            "version's verdicts on the same recorded frames: "
            + "; ".join(
                f"{task} {c['recognised']} recognised, {c['premature']} premature, {c['missed']} missed"
                for task, c in after.items()
            )
            + f" (`robofume reward audit {run} --model {adaptation['last_version']}`).",
            "",
        ]
    if adaptation.get("ooo_relabel"):
        c = adaptation["ooo_relabel"]
        lines += [
            f"OOO relabelled the online episodes that ended without a success with {c['model_id']} before "
            f"retraining: {c['became_success']} successes found (successes {c['successes_before']} -> "
            f"{c['successes_after']}; {c['person_verdicts_kept']} episodes a person judged kept as judged).",
            "",
        ]
    if has_q:
        lines += ["![Q vs MC](q_online.png)", ""]
    if video:
        lines += [f"A successful online episode: ![episode]({video})", ""]
    if (run / "eval" / "retrained_forward.gif").exists():
        lines += ["The retrained policy's first forward evaluation trial: ![eval](eval/retrained_forward.gif)", ""]
    path = run / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (run / "results.json").write_text(
        json.dumps(
            {
                "results": results,
                "learning_curve": curve,
                "reward": trace,
                "reward_adaptation": adaptation,
                "stage_seconds": seconds,
            },
            indent=1,
        )
    )
    return path


def runs_table(runs: list) -> str:
    """One markdown row per finished main-job run folder: pair, seed, pre-trained / fine-tuned / OOO
    success (forward / backward), the online episodes the simulator counted successful, the reward's
    debounced verdicts on them (recognised, missed, ended early), wall time (`robofume report RUN ...`)."""
    rows = [
        "| pair | seed | pre-trained fwd / bwd | fine-tuned | OOO retrained | online successes fwd / bwd "
        "(simulator) | reward verdicts fwd / bwd: recognised, missed, premature | wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in map(Path, runs):
        try:
            res = json.loads((run / "results.json").read_text())
            settings = json.loads((run / "settings.json").read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{run}: not a finished main-job run ({e})") from e
        pair = settings["pair"]
        from robofume_ros.sim.tasks import get_pair

        fwd, bwd = get_pair(settings.get("pair_spec", pair)).tasks
        pol = list(res["results"].values())
        cell = lambda r: f"{r['forward_success']:.0%} / {r['backward_success']:.0%}"
        curve = res.get("learning_curve", {})
        online = " / ".join(
            f"{curve.get(t, {}).get('successes', 0)} of {curve.get(t, {}).get('episodes', 0)}" for t in (fwd, bwd)
        )
        verdicts = {t: (res.get("reward", {}).get("per_task", {}).get(t, {}).get("verdicts") or {}) for t in (fwd, bwd)}
        judged = " / ".join(
            f"{verdicts[t].get('recognised', 0)}, {verdicts[t].get('missed', 0)}, {verdicts[t].get('premature', 0)}"
            for t in (fwd, bwd)
        )
        minutes = sum(res.get("stage_seconds", {}).values()) / 60
        rows.append(
            f"| {pair} | {settings.get('seed', 0)} | {cell(pol[0])} | {cell(pol[1])} | {cell(pol[2])} | {online} | "
            f"{judged} | {minutes:.0f} min |"
        )
    return "\n".join(rows)


def main(argv=None) -> int:
    """`robofume report RUN [RUN ...]`: the results of finished main-job runs as one markdown table."""
    import argparse

    ap = argparse.ArgumentParser(prog="robofume report", description=main.__doc__)
    ap.add_argument("runs", nargs="+", help="main-job output folders (runs/main_<pair>)")
    ns = ap.parse_args(argv)
    try:
        print(runs_table(ns.runs))
    except ValueError as e:
        print(f"robofume report: {e}")
        return 2
    return 0
