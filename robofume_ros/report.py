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


def online_episodes(run: Path):
    from robofume_ros.data.dataset import load_episodes
    d = run / "finetune" / "learner" / "online"
    return load_episodes(d) if d.exists() else []


def learning_curve(eps, png: Path, window: int = 5) -> dict:
    """Ground-truth success of each online episode's task at its end, per direction, against
    cumulative environment steps (a rolling mean over `window` episodes of that direction)."""
    fig = _fig()
    ax = fig.add_subplot(1, 1, 1)
    steps = np.cumsum([len(e) for e in eps])
    out = {}
    for task in sorted({e.task for e in eps}):
        idx = [i for i, e in enumerate(eps) if e.task == task]
        gt = np.array([bool(eps[i].success_gt[-1]) if eps[i].success_gt is not None else eps[i].success for i in idx], float)
        if not len(gt):
            continue
        roll = np.convolve(gt, np.ones(window) / window, mode="full")[: len(gt)] / np.minimum(
            np.arange(1, len(gt) + 1), window) * window
        ax.plot(steps[idx], roll, marker="o", ms=3, label=f"{task} (ground truth, rolling {window})")
        out[task] = {"episodes": len(gt), "success_first_half": float(gt[: len(gt) // 2].mean()) if len(gt) > 1 else None,
                     "success_second_half": float(gt[len(gt) // 2:].mean())}
    ax.set_xlabel("online environment steps")
    ax.set_ylabel("episode success rate")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Reset-free fine-tuning: success of each episode (simulator ground truth)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return out


def reward_trace(eps, png: Path, last: int = 6) -> dict:
    """Reward-model probability along the last episodes, with the simulator's success shaded;
    returns the frame-level FP/FN rates of the reward over all online frames it scored."""
    fig = _fig(9, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    t0 = 0
    tp = fp = fn = tn = 0
    for e in eps:
        verdicts = e.provenance.get("reward_success") or []
        if e.success_gt is None:
            continue
        for thr_hit, g in zip(verdicts, e.success_gt):
            if thr_hit is None:
                continue
            thr_hit, g = bool(thr_hit), bool(g)
            tp, fp, fn, tn = tp + (thr_hit and g), fp + (thr_hit and not g), fn + (not thr_hit and g), tn + (not thr_hit and not g)
    for e in eps[-last:]:
        probs = np.array([np.nan if p is None else p for p in (e.provenance.get("reward_probability") or [])], float)
        x = np.arange(t0, t0 + len(probs))
        ax.plot(x, probs, lw=1)
        if e.success_gt is not None:
            ax.fill_between(x, 0, 1, where=e.success_gt[: len(x)], color="green", alpha=0.15, step="mid")
        ax.axvline(t0, color="gray", lw=0.5)
        ax.text(t0 + 1, 1.02, e.task, fontsize=7)
        t0 += len(probs)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("control tick (last episodes; green = simulator says done)")
    ax.set_ylabel("P(task done)")
    ax.set_title("/reward along the last online episodes")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    pos, neg = tp + fn, fp + tn
    return {"frames": int(pos + neg), "fn_rate": fn / pos if pos else None, "fp_rate": fp / neg if neg else None}


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


def write_report(run: Path, results: dict, sizes, seconds: float) -> Path:
    run = Path(run)
    eps = online_episodes(run)
    curve = learning_curve(eps, run / "learning_curve.png") if eps else {}
    trace = reward_trace(eps, run / "reward_trace.png") if eps else {}
    success_bars(results, run / "success.png")
    has_q = q_curve(run / "finetune" / "learner" / "metrics.csv", run / "q_online.png")
    video = None
    if eps:
        from robofume_ros.data.inspect import write_video
        fwd = [i for i, e in enumerate(eps) if e.success]
        write_video(run / "online_episode.gif", eps, fps=10, scale=2, indices=(fwd[-1:] or [len(eps) - 1]))
        video = "online_episode.gif"
    lines = ["# RoboFuME on the simulated drawer pair", "",
             f"Wall time {seconds / 60:.1f} min on this machine. Sizes: `{json.dumps(sizes.__dict__)}`", "",
             "| policy | forward success | backward success |", "|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['forward_success']:.0%} ({len(r['forward_trials'])} trials) | "
                     f"{r['backward_success']:.0%} ({len(r['backward_trials'])} trials) |")
    lines += ["", "![success](success.png)", ""]
    if eps:
        lines += [f"Online: {len(eps)} reset-free episodes, {sum(len(e) for e in eps)} environment steps.", "",
                  f"Learning curve per task (ground truth): `{json.dumps(curve)}`", "", "![learning curve](learning_curve.png)", "",
                  f"Reward during fine-tuning vs ground truth (frames scored by the reward node): "
                  f"`{json.dumps(trace)}`", "", "![reward trace](reward_trace.png)", ""]
    if has_q:
        lines += ["![Q vs MC](q_online.png)", ""]
    if video:
        lines += [f"A successful online episode: ![episode]({video})", ""]
    if (run / "eval" / "retrained_forward.gif").exists():
        lines += ["The retrained policy's first forward evaluation trial: ![eval](eval/retrained_forward.gif)", ""]
    path = run / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (run / "results.json").write_text(json.dumps({"results": results, "learning_curve": curve, "reward": trace}, indent=1))
    return path
