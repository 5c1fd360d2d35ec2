"""Classifier metrics (RoboFuME Table II columns), threshold selection, PR and reliability curves,
plots and evaluation against simulator ground truth. Pure numpy (+ matplotlib for the PNGs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

METRIC_COLUMNS = ("accuracy", "precision", "recall", "fp_rate", "fn_rate")


def _safe_div(a, b):
    return float(a) / float(b) if b else 0.0


def binary_metrics(labels, probs, threshold: float = 0.5) -> dict:
    """accuracy, precision, recall, false-positive rate FP/(FP+TN), false-negative rate FN/(FN+TP),
    F1 and counts, for predictions ``probs >= threshold``."""
    y = np.asarray(labels).astype(bool).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel() >= threshold
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probs {p.shape} differ")
    tp = int((p & y).sum())
    fp = int((p & ~y).sum())
    tn = int((~p & ~y).sum())
    fn = int((~p & y).sum())
    prec = _safe_div(tp, tp + fp)
    rec = _safe_div(tp, tp + fn)
    return {
        "threshold": float(threshold),
        "n": int(len(y)),
        "n_pos": int(y.sum()),
        "n_neg": int((~y).sum()),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": _safe_div(tp + tn, len(y)),
        "precision": prec,
        "recall": rec,
        "fp_rate": _safe_div(fp, fp + tn),
        "fn_rate": _safe_div(fn, fn + tp),
        "f1": _safe_div(2 * prec * rec, prec + rec),
    }


def _candidate_thresholds(probs):
    u = np.unique(np.asarray(probs, dtype=np.float64))
    mids = (u[1:] + u[:-1]) / 2 if len(u) > 1 else np.zeros(0)
    return np.unique(np.concatenate([[0.0], u, mids, [np.nextafter(1.0, 2.0)]]))


def rates_at_thresholds(labels, probs, thresholds):
    """(tp, fp, tn, fn) arrays for ``probs >= thr`` at each threshold (vectorised)."""
    y = np.asarray(labels).astype(bool).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    order = np.sort(p[y])
    order_n = np.sort(p[~y])
    thr = np.asarray(thresholds, dtype=np.float64)
    tp = len(order) - np.searchsorted(order, thr, side="left")
    fp = len(order_n) - np.searchsorted(order_n, thr, side="left")
    return tp, fp, len(order_n) - fp, len(order) - tp


def select_threshold(labels, probs, method: str = "fpr_cap", max_fpr: float = 0.05) -> tuple[float, dict]:
    """Decision threshold from held-out predictions.

    * ``"f1"``: maximise F1;
    * ``"fpr_cap"``: minimise the false-negative rate subject to FP rate <= ``max_fpr`` (ties: the
      lowest FP rate, then the threshold in the middle of the tied range); if no threshold meets the
      cap, the one with the lowest FP rate;
    * ``"fpr_floor"``: the lowest threshold whose FP rate is <= ``max_fpr`` (the most recall the
      cap allows; on negatives as hard as online frames, where the middle of a tied range sits at
      the positives' ceiling and misses online successes);
    * ``"balanced"``: minimise FN rate + FP rate.
    Returns (threshold, metrics at that threshold)."""
    y = np.asarray(labels).astype(bool).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if len(y) == 0:
        raise ValueError("no held-out predictions to choose a threshold from")
    thr = _candidate_thresholds(p)
    tp, fp, tn, fn = rates_at_thresholds(y, p, thr)
    fpr = np.where(fp + tn > 0, fp / np.maximum(fp + tn, 1), 0.0)
    fnr = np.where(fn + tp > 0, fn / np.maximum(fn + tp, 1), 0.0)
    if method == "f1":
        prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        rec = 1 - fnr if y.any() else np.zeros_like(fnr)
        score = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
        best = np.flatnonzero(score == score.max())
    elif method == "fpr_cap":
        ok = fpr <= max_fpr + 1e-12
        if ok.any():
            cand = np.flatnonzero(ok)
            key = fnr[cand] + 1e-6 * fpr[cand]
            best = cand[key <= key.min() + 1e-12]
        else:
            best = np.flatnonzero(fpr == fpr.min())
    elif method == "fpr_floor":
        ok = np.flatnonzero(fpr <= max_fpr + 1e-12)
        cand = ok if len(ok) else np.flatnonzero(fpr == fpr.min())
        t = float(np.clip(thr[cand].min(), 0.0, 1.0))
        return t, binary_metrics(y, p, t)
    elif method == "balanced":
        s = fnr + fpr
        best = np.flatnonzero(s <= s.min() + 1e-12)
    else:
        raise ValueError(f"unknown threshold method {method!r} (f1, fpr_cap, fpr_floor, balanced)")
    # middle of the tied (contiguous) range is more robust than its edge
    t = float(thr[best[len(best) // 2]])
    t = float(np.clip(t, 0.0, 1.0))
    return t, binary_metrics(y, p, t)


def pr_curve(labels, probs):
    """(precision, recall, thresholds) over all distinct thresholds, recall descending."""
    y = np.asarray(labels).astype(bool).ravel()
    thr = np.unique(np.asarray(probs, dtype=np.float64))
    tp, fp, tn, fn = rates_at_thresholds(y, probs, thr)
    prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    rec = tp / max(int(y.sum()), 1)
    return prec, rec, thr


def average_precision(labels, probs) -> float:
    prec, rec, _ = pr_curve(labels, probs)
    # step integration, recall descending with threshold ascending
    r = np.concatenate([rec, [0.0]])
    return float(np.sum((r[:-1] - r[1:]) * prec))


def reliability(labels, probs, n_bins: int = 10):
    """Per-bin (mean predicted prob, empirical positive rate, count) and expected calibration error."""
    y = np.asarray(labels).astype(float).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    conf, acc, cnt = np.zeros(n_bins), np.zeros(n_bins), np.zeros(n_bins, int)
    for b in range(n_bins):
        m = idx == b
        cnt[b] = int(m.sum())
        if cnt[b]:
            conf[b] = p[m].mean()
            acc[b] = y[m].mean()
    ece = float(np.sum(cnt * np.abs(conf - acc)) / max(len(p), 1))
    return {
        "edges": edges.tolist(),
        "confidence": conf.tolist(),
        "frequency": acc.tolist(),
        "count": cnt.tolist(),
        "ece": ece,
    }


def plot_pr_curve(labels, probs, path, threshold: float | None = None, title: str = "reward model PR curve"):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    prec, rec, thr = pr_curve(labels, probs)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(rec, prec, drawstyle="steps-post", label=f"AP={average_precision(labels, probs):.3f}")
    if threshold is not None:
        m = binary_metrics(labels, probs, threshold)
        ax.plot([m["recall"]], [m["precision"]], "o", color="C3", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_reliability(labels, probs, path, n_bins: int = 10, title: str = "reward model reliability"):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    r = reliability(labels, probs, n_bins)
    cnt = np.array(r["count"])
    m = cnt > 0
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(4.5, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="gray")
    ax.plot(np.array(r["confidence"])[m], np.array(r["frequency"])[m], "o-", label=f"ECE={r['ece']:.3f}")
    ax.set_ylabel("fraction positive")
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    centers = (np.array(r["edges"][1:]) + np.array(r["edges"][:-1])) / 2
    ax2.bar(centers, cnt, width=1.0 / n_bins * 0.9)
    ax2.set_yscale("log" if cnt.max() > 50 else "linear")
    ax2.set_xlabel("predicted P(success)")
    ax2.set_ylabel("frames")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate_on_episodes(
    model,
    episodes: Sequence,
    threshold: float | None = None,
    batch_size: int = 64,
    stride: int = 1,
    progress: bool = False,
) -> dict | None:
    """Per-frame metrics of ``model`` against ``Episode.success_gt`` (simulator ground truth) on the
    episodes that have it. Returns the metrics dict plus ``labels``/``probs`` arrays, or None if no
    episode has ground truth."""
    ys, ps = [], []
    eps = [e for e in episodes if getattr(e, "success_gt", None) is not None]
    if not eps:
        return None
    it = eps
    if progress:
        from tqdm import tqdm

        it = tqdm(eps, desc="eval vs success_gt", unit="ep")
    for ep in it:
        t = np.arange(0, len(ep.images), max(1, stride))
        ps.append(model.predict_proba(ep.images[t], ep.instruction, batch_size=batch_size))
        ys.append(np.asarray(ep.success_gt)[t].astype(bool))
    y = np.concatenate(ys)
    p = np.concatenate(ps)
    thr = model.threshold if threshold is None else threshold
    out = binary_metrics(y, p, thr)
    out["n_episodes"] = len(eps)
    out["average_precision"] = average_precision(y, p) if y.any() else None
    return {**out, "labels": y, "probs": p}


def write_report(folder, report: dict, name: str = "report") -> tuple[Path, Path]:
    """``<name>.json`` and ``<name>.md`` (a RoboFuME Table II style table) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if not isinstance(v, np.ndarray)}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        return o

    jp = folder / f"{name}.json"
    jp.write_text(json.dumps(clean(report), indent=2))
    lines = [f"# Reward model report: {report.get('model_id', '')}", ""]
    for k in ("instructions", "threshold", "threshold_method", "train_seconds"):
        if k in report:
            lines.append(f"- {k}: {report[k]}")
    lines += [
        "",
        "| split | frames | accuracy | precision | recall | FP rate | FN rate | F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for split, m in report.get("metrics", {}).items():
        if not m:
            continue
        lines.append(
            f"| {split} | {m['n']} | {m['accuracy']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
            f"{m['fp_rate']:.3f} | {m['fn_rate']:.3f} | {m['f1']:.3f} |"
        )
    lines += [
        "",
        "FP rate = FP/(FP+TN); FN rate = FN/(FN+TP). `heldout_labels` uses demo/failure labels of held-out "
        "episodes; `heldout_success_gt` uses simulator ground truth on every frame of held-out episodes.",
        "",
    ]
    for fig in report.get("figures", []):
        lines.append(f"![{fig}]({fig})")
    mp = folder / f"{name}.md"
    mp.write_text("\n".join(lines) + "\n")
    return jp, mp
