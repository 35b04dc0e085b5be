"""PNG figures drawn from the report's tables (the same numbers, never recomputed), with matplotlib's Agg backend.

- `eps_plots`: robust accuracy vs eps, one line per method, one panel per attack; eps = 0 is the
  clean accuracy of the same runs.
- `b2n_plot`: Base / Novel / HM bars per method, one panel per dataset (and the average).
- `noise_plots`: accuracy vs noise level per noise kind, "clean" first; HM where base and novel
  exist, otherwise the accuracy on all classes.
Error bars are the standard deviation over seeds; a missing value is a gap, never a guess.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from .tables import ATTACK_NAMES, Table, noise_sort, slug


@dataclass
class Figure:
    name: str  # file stem
    title: str
    png: bytes


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


def _grid(n: int, cols: int = 3):
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def _axes(plt, n: int, w: float = 4.2, h: float = 3.3):
    rows, cols = _grid(n)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    flat = [a for line in axes for a in line]
    for a in flat[n:]:
        a.set_visible(False)
    return fig, flat[:n]


def _pct(c):
    return (100 * c.mean, 100 * (c.std or 0.0)) if c is not None else (None, None)


def eps_plots(table: Table) -> list[Figure]:
    if table.empty or len(table.column_keys) < 2:
        return []
    plt = _plt()
    figures = []
    targets = sorted({row.where[:2] for row in table.rows})  # (dataset, split)
    for dataset, split in targets:
        rows = [r for r in table.rows if r.where[:2] == (dataset, split)]
        panels = sorted({(k[0], k[3]) for k in table.column_keys[1:]},
                        key=lambda a: (a[0] != "pgd", a[0], int(a[1]) if a[1].isdigit() else 0))
        panels = [pn for pn in panels if any(
            row.cells[i] is not None for row in rows for i, k in enumerate(table.column_keys)
            if k is not None and (k[0], k[3]) == pn)]
        if not panels:
            continue
        fig, axes = _axes(plt, len(panels))
        for ax, (attack, steps) in zip(axes, panels):
            for row in rows:
                pts = []
                if row.cells[0] is not None:
                    pts.append((0.0, *_pct(row.cells[0])))
                for i, k in enumerate(table.column_keys):
                    if k is not None and (k[0], k[3]) == (attack, steps) and row.cells[i] is not None:
                        if math.isfinite(k[2]):
                            pts.append((k[2] * 255, *_pct(row.cells[i])))
                pts.sort()
                if pts:
                    xs, ys, es = zip(*pts)
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=row.label)
            name = ATTACK_NAMES.get(attack, attack) + (f"-{steps}" if steps else "")
            ax.set_title(f"{name}: {dataset} ({split})", fontsize=10)
            ax.set_xlabel("eps × 255 (0 = clean)")
            ax.set_ylabel("accuracy (%)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        figures.append(Figure(f"eps_{slug(dataset)}_{split}", f"Accuracy vs eps: {dataset} ({split})", _png(fig)))
    return figures


def b2n_plot(table: Table) -> list[Figure]:
    if table.empty:
        return []
    plt = _plt()
    datasets = []
    for r in table.rows:
        if r.where[0] not in datasets:
            datasets.append(r.where[0])
    fig, axes = _axes(plt, len(datasets), w=max(4.2, 1.2 + 0.9 * max(
        sum(1 for r in table.rows if r.where[0] == d) for d in datasets)))
    colours = {"Base": "#4C72B0", "Novel": "#DD8452", "HM": "#55A868"}
    for ax, dataset in zip(axes, datasets):
        rows = [r for r in table.rows if r.where[0] == dataset]
        width = 0.26
        for j, metric in enumerate(("Base", "Novel", "HM")):
            i = table.column(metric)
            xs, ys, es = [], [], []
            for x, r in enumerate(rows):
                m, s = _pct(r.cells[i])
                if m is not None:
                    xs.append(x + (j - 1) * width)
                    ys.append(m)
                    es.append(s)
            ax.bar(xs, ys, width, yerr=es, capsize=2, label=metric, color=colours[metric])
        ax.set_xticks(range(len(rows)))
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_xticklabels([r.label for r in rows], rotation=20, ha="right", fontsize=8)
        ax.set_title(dataset, fontsize=10)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return [Figure("b2n_bars", "Base / Novel / HM", _png(fig))]


def noise_plots(table: Table) -> list[Figure]:
    if table.empty:
        return []
    plt = _plt()
    figures = []
    datasets = []
    for r in table.rows:
        if r.where[0] not in datasets:
            datasets.append(r.where[0])
    for dataset in datasets:
        rows = [r for r in table.rows if r.where[0] == dataset]
        measure = next((m for m in ("HM", "All", "Base", "Novel") if m in table.value_columns
                        and any(r.cells[table.column(m)] is not None and r.where[1] != "clean" for r in rows)), None)
        if measure is None:
            continue
        col = table.column(measure)
        kinds = sorted({r.where[1].partition(":")[0] for r in rows if r.where[1] != "clean"})
        fig, axes = _axes(plt, len(kinds))
        for ax, kind in zip(axes, kinds):
            conditions = sorted({r.where[1] for r in rows if r.where[1].partition(":")[0] == kind}, key=noise_sort)
            ticks = ["clean", *[c.partition(":")[2] or c for c in conditions]]
            labels = []
            for r in rows:
                if r.label not in labels:
                    labels.append(r.label)
            for label in labels:
                pts = []
                for x, condition in enumerate(["clean", *conditions]):
                    match = [r for r in rows if r.label == label and r.where[1] == condition]
                    if match and match[0].cells[col] is not None:
                        pts.append((x, *_pct(match[0].cells[col])))
                if any(x > 0 for x, *_ in pts):  # at least one noisy point
                    xs, ys, es = zip(*pts)
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
            ax.set_xticks(range(len(ticks)))
            ax.set_xticklabels(ticks, fontsize=8)
            ax.set_title(f"{kind}: {dataset}", fontsize=10)
            ax.set_xlabel("noise level")
            ax.set_ylabel(f"{measure} accuracy (%)" if measure != "HM" else "HM (%)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        figures.append(Figure(f"noise_{slug(dataset)}", f"Accuracy vs noise level: {dataset} ({measure})", _png(fig)))
    return figures


def build_figures(tables: dict[str, Table]) -> list[Figure]:
    out: list[Figure] = []
    if "b2n" in tables:
        out += b2n_plot(tables["b2n"])
    if "robustness" in tables:
        out += eps_plots(tables["robustness"])
    if "noise" in tables:
        out += noise_plots(tables["noise"])
    return out
