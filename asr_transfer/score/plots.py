"""Report figures as base64 PNG (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from asr_transfer.score.report import System, datasets  # noqa: E402

_MAX_CURVES = 6


def to_png(fig) -> str:
    """The figure as a base64 PNG string; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def wer_bars(systems: list[System]) -> str:
    """WER per dataset (per domain where a dataset has several) and system, with interval error bars."""
    labels, values, lows, highs = [], [], [], []
    for name in datasets(systems):
        domains = sorted(
            {d for s in systems if name in s.decodes for d in s.decodes[name][1]["groups"]["domain"]}
        )
        keys = [(f"{name}:{d}", d) for d in domains] if len(domains) > 1 else [(name, None)]
        for label, domain in keys:
            labels.append(label)
            row = []
            for s in systems:
                data = s.decodes[name][1] if name in s.decodes else None
                info = (data["groups"]["domain"].get(domain) if domain else data["total"]) if data else None
                ci = (info or {}).get("wer_ci") or {}
                row.append((info["wer"] if info else np.nan, ci.get("low", np.nan), ci.get("high", np.nan)))
            values.append([r[0] for r in row])
            lows.append([r[1] for r in row])
            highs.append([r[2] for r in row])
    v, lo, hi = np.array(values), np.array(lows), np.array(highs)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) * len(systems) + 2), 4))
    x, width = np.arange(len(labels)), 0.8 / len(systems)
    for k, s in enumerate(systems):
        err = np.nan_to_num(np.vstack([v[:, k] - lo[:, k], hi[:, k] - v[:, k]]))
        ax.bar(x + k * width - 0.4 + width / 2, v[:, k], width, yerr=err, capsize=3, label=s.name)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("WER (%)")
    ax.set_title("WER with 95% bootstrap intervals")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return to_png(fig)


def distance_bars(rows: list[dict], measures: tuple[str, ...]) -> str:
    """One panel per domain-distance measure (``asr-transfer distance``): a bar per data dir, and
    the measured WER on a second axis when the rows carry one."""
    fig, axes = plt.subplots(1, len(measures), figsize=(3.2 * len(measures), 3.2), squeeze=False)
    names = [r["data"] for r in rows]
    x = np.arange(len(rows))
    for ax, m in zip(axes[0], measures, strict=True):
        ax.bar(x, [r[m] for r in rows], color="tab:blue")
        ax.set_title(m)
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize="small")
        if all("wer" in r for r in rows):
            wer = ax.twinx()
            wer.plot(x, [r["wer"] for r in rows], "o", color="tab:red")
            wer.set_ylabel("WER (%)", color="tab:red")
    fig.tight_layout()
    return to_png(fig)


def sdi_bars(systems: list[System]) -> str:
    """Substitution, deletion and insertion rates (percent of reference words), stacked."""
    bars = [
        (f"{name}\n{s.name}", s.decodes[name][0].total.words)
        for name in datasets(systems)
        for s in systems
        if name in s.decodes
    ]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(bars) + 2), 4))
    x = np.arange(len(bars))
    bottom = np.zeros(len(bars))
    for label, attr, color in (
        ("substitutions", "sub", "#4c72b0"),
        ("deletions", "dels", "#dd8452"),
        ("insertions", "ins", "#55a868"),
    ):
        rate = np.array([100.0 * getattr(c, attr) / max(c.ref_len, 1) for _, c in bars])
        ax.bar(x, rate, 0.6, bottom=bottom, label=label, color=color)
        bottom += rate
    ax.set_xticks(x, [b[0] for b in bars], fontsize="small", rotation=30, ha="right")
    ax.set_ylabel("% of reference words")
    ax.set_title("Error types")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return to_png(fig)


def scalars(tb_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """``{tag: (steps, values)}`` from the TensorBoard event files under ``tb_dir``; {} if none."""
    if not tb_dir.is_dir() or not any(tb_dir.rglob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, tuple[list[int], list[float]]] = {}
    for run_dir in sorted({p.parent for p in tb_dir.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        prefix = "" if run_dir == tb_dir else f"{run_dir.relative_to(tb_dir)}/"
        for tag in acc.Tags()["scalars"]:
            events = acc.Scalars(tag)
            out[prefix + tag] = ([e.step for e in events], [e.value for e in events])
    return out


def training_curves(systems: list[System]) -> str | None:
    """One panel per scalar tag (up to six, the most widely logged first), one line per system."""
    curves = {s.name: scalars(s.path / "tensorboard") for s in systems}
    tags = sorted(
        {t for c in curves.values() for t in c}, key=lambda t: (-sum(t in c for c in curves.values()), t)
    )
    tags = tags[:_MAX_CURVES]
    if not tags:
        return None
    cols = min(3, len(tags))
    rows = (len(tags) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, tag in zip(axes.flat, tags, strict=False):
        for name, c in curves.items():
            if tag in c:
                ax.plot(*c[tag], label=name, marker="." if len(c[tag][0]) < 30 else None)
        ax.set_title(tag, fontsize="small")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    for ax in list(axes.flat)[len(tags) :]:
        ax.axis("off")
    fig.tight_layout()
    return to_png(fig)


def fusion_weights(panels: dict[str, dict[str, dict[str, float]]]) -> str:
    """SimAdapter's mean attention per fusion layer (rows) and fused adapter (columns), one heatmap per panel.

    ``panels``: ``{"ro / SimAdapter": {"enc1": {"de": 0.3, "ro": 0.7}, ...}, ...}`` (the
    ``fusion_weights`` of ``add_language.yaml``): which source languages help each target, where.

    Example:
        >>> png = fusion_weights({"ro": {"enc1": {"de": 0.25, "ro": 0.75}, "dec1": {"de": 0.5, "ro": 0.5}}})
        >>> base64.b64decode(png)[:4]
        b'\\x89PNG'
    """
    n = len(panels)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 0.5 + 3.2 * rows), squeeze=False)
    for ax, (title, layers) in zip(axes.flat, panels.items()):
        names = list(next(iter(layers.values())))
        grid = np.array([[layers[layer].get(c, np.nan) for c in names] for layer in layers])
        im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(layers)), list(layers))
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="w" if v < 0.6 else "k")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("fused adapter")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="mean attention (dev set)")
    fig.suptitle("SimAdapter fusion weights per layer and language")
    return to_png(fig)
