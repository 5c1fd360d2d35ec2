"""Look at a dataset: `robofume dataset info|video|plot DIR ...`.

    info  DIR [--json]                         table: episodes per source and task, lengths,
                                               success rate, return, action statistics
    video DIR -o out.mp4|out.gif [--episodes 0 3 7] [--source ...] [--fps 10] [--scale 3]
                                               frames with instruction, step, reward, success
    plot  DIR -o summary.png                   lengths, success rates, returns, action histograms
Text is rendered with matplotlib (Agg) into cached strips; no OpenCV.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from .dataset import DatasetError, dataset_info, load_episodes


def info_table(path) -> str:
    info = dataset_info(path)
    eps = load_episodes(path)
    lines = [
        f"dataset {info['path']}  (format {info['format']} v{info['version']})",
        f"{info['episodes']} episodes, {info['transitions']} transitions, image shapes {info['image_shapes']}",
        "",
    ]
    hdr = f"{'source':<13} {'task':<22} {'eps':>5} {'trans':>7} {'len mean':>8} {'min':>5} {'max':>5} {'success':>8}"
    lines += [hdr, "-" * len(hdr)]
    for g in info["groups"]:
        lines.append(
            f"{g['source']:<13} {g['task'][:22]:<22} {g['episodes']:>5} {g['transitions']:>7} "
            f"{g['mean_length']:>8.1f} {g['min_length']:>5} {g['max_length']:>5} "
            f"{100 * g['success_rate']:>7.1f}%"
        )
    if eps:
        dims = {e.actions.shape[1] for e in eps if e.actions.ndim == 2 and len(e)}
        lines.append("")
        for d in sorted(dims):
            A = np.concatenate([np.asarray(e.actions) for e in eps if e.actions.shape[1] == d and len(e)])
            lines.append(f"actions ({d}-D, {len(A)} steps):")
            lines.append("  mean " + " ".join(f"{v:+.3f}" for v in A.mean(0)))
            lines.append("  std  " + " ".join(f"{v:.3f}" for v in A.std(0)))
            lines.append("  min  " + " ".join(f"{v:+.3f}" for v in A.min(0)))
            lines.append("  max  " + " ".join(f"{v:+.3f}" for v in A.max(0)))
        R = np.concatenate([np.asarray(e.rewards) for e in eps])
        lines.append(
            f"rewards: {int((R == 0).sum())} zero, {int((R == -1).sum())} minus one, "
            f"{int(sum(np.asarray(e.terminals).sum() for e in eps))} terminal"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------ text rendering


@lru_cache(maxsize=4096)
def _text_strip(text: str, width: int, height: int = 18, color=(255, 255, 255), bg=(0, 0, 0)) -> np.ndarray:
    """(height, width, 3) uint8 strip with `text` left-aligned (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=np.array(bg) / 255)
    canvas = FigureCanvasAgg(fig)
    fig.text(
        0.01, 0.5, text, color=np.array(color) / 255, fontsize=height * 0.5, va="center", ha="left", family="monospace"
    )
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[:, :, :3]
    out = np.zeros((height, width, 3), np.uint8)
    h, w = min(height, img.shape[0]), min(width, img.shape[1])
    out[:h, :w] = img[:h, :w]
    return out


def annotate_frame(img: np.ndarray, lines, scale: int = 3, border=None) -> np.ndarray:
    """Upscale a frame (nearest) and stack text strips under it; optional colored border."""
    big = np.repeat(np.repeat(np.asarray(img), scale, 0), scale, 1)
    if border is not None:
        b = max(2, scale)
        big = big.copy()
        big[:b], big[-b:], big[:, :b], big[:, -b:] = border, border, border, border
    W = big.shape[1]
    strips = [_text_strip(str(t), W) for t in lines]
    return np.concatenate([big] + strips, axis=0)


def episode_frames(ep, scale: int = 3, index=None):
    T = len(ep)
    head = f"{'#' + str(index) + ' ' if index is not None else ''}{ep.source} {ep.task}"
    for t in range(T + 1):
        r = f"{ep.rewards[t - 1]:+.0f}" if t > 0 else "  "
        term = " TERM" if t > 0 and ep.terminals[t - 1] else ""
        gt = ""
        if ep.success_gt is not None:
            gt = " gt:" + ("yes" if ep.success_gt[t] else "no")
        border = (0, 200, 0) if (t > 0 and ep.rewards[t - 1] == 0) else None
        yield annotate_frame(
            ep.images[t],
            [ep.instruction, head, f"t={t}/{T} r={r}{term} {'SUCCESS' if ep.success else 'fail'}{gt}"],
            scale=scale,
            border=border,
        )


def _pad16(frame):
    h, w = frame.shape[:2]
    H, W = -(-h // 16) * 16, -(-w // 16) * 16
    if (H, W) == (h, w):
        return frame
    out = np.zeros((H, W, 3), np.uint8)
    out[:h, :w] = frame
    return out


def write_video(path, episodes, fps: float = 10.0, scale: int = 3, indices=None) -> int:
    """MP4 (imageio-ffmpeg, libx264) or GIF by suffix. Returns the number of frames."""
    import imageio.v2 as imageio

    path = Path(path)
    n = 0
    idx = indices if indices is not None else list(range(len(episodes)))
    if path.suffix.lower() == ".gif":
        frames = [f for i, ep in zip(idx, episodes) for f in episode_frames(ep, scale, i)]
        imageio.mimsave(path, frames, duration=1.0 / fps, loop=0)
        return len(frames)
    w = imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=1, pixelformat="yuv420p")
    try:
        for i, ep in zip(idx, episodes):
            for f in episode_frames(ep, scale, i):
                w.append_data(_pad16(f))
                n += 1
    finally:
        w.close()
    return n


def summary_plot(path, out) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    info = dataset_info(path)
    eps = load_episodes(path)
    fig = Figure(figsize=(12, 8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 2)
    g = info["groups"]
    labels = [f"{x['source']}\n{x['task']}" for x in g]
    ax[0, 0].bar(range(len(g)), [x["episodes"] for x in g], color="tab:blue", label="episodes")
    ax[0, 0].bar(range(len(g)), [x["successes"] for x in g], color="tab:green", label="successes")
    ax[0, 0].set_xticks(range(len(g)), labels, rotation=90, fontsize=6)
    ax[0, 0].set_title("episodes and successes per source/task")
    ax[0, 0].legend()
    for src in sorted({e.source for e in eps}):
        ax[0, 1].hist([len(e) for e in eps if e.source == src], bins=30, alpha=0.6, label=src)
    ax[0, 1].set_title("episode length")
    ax[0, 1].legend()
    for src in sorted({e.source for e in eps}):
        ax[1, 0].hist([float(np.sum(e.rewards)) for e in eps if e.source == src], bins=30, alpha=0.6, label=src)
    ax[1, 0].set_title("episode return (raw rewards)")
    ax[1, 0].legend()
    if eps:
        d = max(e.actions.shape[1] for e in eps)
        A = np.concatenate([np.asarray(e.actions) for e in eps if e.actions.shape[1] == d and len(e)])
        for j in range(d):
            ax[1, 1].hist(A[:, j], bins=50, alpha=0.5, label=f"a{j}", histtype="step")
        ax[1, 1].set_title(f"action distribution ({d}-D)")
        ax[1, 1].legend(fontsize=6)
    fig.suptitle(f"{path}: {info['episodes']} episodes, {info['transitions']} transitions")
    fig.tight_layout()
    fig.savefig(out)


def build_parser(prog="robofume dataset"):
    p = argparse.ArgumentParser(prog=prog, description="Inspect an episode dataset.")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("info")
    a.add_argument("dataset")
    a.add_argument("--json", action="store_true")
    v = sub.add_parser("video")
    v.add_argument("dataset")
    v.add_argument("-o", "--out", required=True, help=".mp4 or .gif")
    v.add_argument("--episodes", type=int, nargs="*", help="episode numbers (after --source filter)")
    v.add_argument("--source", nargs="*")
    v.add_argument("--fps", type=float, default=10.0)
    v.add_argument("--scale", type=int, default=3)
    v.add_argument("--max-episodes", type=int, default=5)
    pl = sub.add_parser("plot")
    pl.add_argument("dataset")
    pl.add_argument("-o", "--out", required=True)
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        if a.cmd == "info":
            if a.json:
                info = dataset_info(a.dataset)
                info.pop("episode_meta")
                print(json.dumps(info, indent=1, default=list))
            else:
                print(info_table(a.dataset))
        elif a.cmd == "video":
            eps = load_episodes(a.dataset, sources=a.source)
            idx = a.episodes if a.episodes else list(range(min(a.max_episodes, len(eps))))
            bad = [i for i in idx if not 0 <= i < len(eps)]
            if bad:
                print(f"error: episodes {bad} out of range (0..{len(eps) - 1})", file=sys.stderr)
                return 2
            n = write_video(a.out, [eps[i] for i in idx], fps=a.fps, scale=a.scale, indices=idx)
            print(f"wrote {a.out}: {len(idx)} episodes, {n} frames")
        elif a.cmd == "plot":
            summary_plot(a.dataset, a.out)
            print(f"wrote {a.out}")
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
