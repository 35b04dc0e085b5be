"""`report --compare A,B`: paired comparisons of two methods over the same runs (report/stats.py).

Runs pair when they agree on training dataset, training split, shots, backbone and seed, and their
evaluation records were measured on the same test images (`items_sha256`). Seeds may have been
tested on different subsets of one size (`--n-max` draws its subset from the run's seed): the shared
resampling of image positions then acts as independent resamplings, and the seeds' spread also holds
the subsets' differences, which widens the interval rather than narrowing it. One row per training
dataset and evaluation (metric, split; eps, steps or noise where set), an HM row where base and
novel accuracy were both measured, one "average" row per evaluation kind over the datasets
evaluated in-domain (the evaluation's dataset is the training dataset), and one "SRC -> average"
row per source over the other datasets its runs were tested on (cross-dataset transfer). An average
pairs only the seeds that every one of its datasets has for both methods (as the average tables do), so
that a seed run on some datasets only neither counts as a seed of the average nor weighs on some
datasets and not others. Under a weak noise
also a "noise_change" row: the accuracy (or HM) under the noise minus without it, per method, paired
per image (a smaller drop is a larger change). The claim tested is "A > B"; the verdict reads the 95%
interval of A - B.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..errors import RobustPromptError
from .collect import Run
from .stats import Cell, Comparison, compare, flags, stacked_flags

VARIANT_KEYS = ("metric", "attack", "eps", "steps", "noise")


@dataclass
class ComparisonRow:
    scope: str  # a training dataset, or "average of K"
    evaluation: str  # e.g. "clean_acc", "pgd_acc eps=1/255 steps=100", "noise_acc noise=gaussian:0.05"
    split: str  # base | novel | all | HM
    result: Comparison


def _variant(r: dict) -> tuple:
    return tuple(str(r.get(k)) if r.get(k) is not None else "" for k in VARIANT_KEYS)


def _describe_variant(v: tuple) -> str:
    metric, attack, eps, steps, noise = v
    parts = [metric] + [f"{k}={x}" for k, x in (("eps", eps), ("steps", steps if attack else ""), ("noise", noise)) if x]
    return " ".join(parts)


CLEAN = ("clean_acc", "", "", "", "")


def _change_pairs(noisy: dict, clean: dict) -> dict[str, tuple[Cell, Cell]]:
    """Per split, the (A, B) cells of the accuracy change under a noise: per image, right under the noise
    minus right without it (-1, 0, 1), and for HM the noisy and clean base / novel matrices together (the
    same images, resampled together). Only splits evaluated both ways, on the same images."""
    out: dict[str, tuple[Cell, Cell]] = {}
    shared = [s for s in sorted(noisy) if s in clean and all(noisy[s][i].shape == clean[s][i].shape for i in (0, 1))]
    for s in shared:
        out[s] = tuple(Cell({s: noisy[s][i].astype(np.int8) - clean[s][i].astype(np.int8)}) for i in (0, 1))
    if "base" in shared and "novel" in shared:
        out["HM"] = tuple(Cell({"base": noisy["base"][i], "novel": noisy["novel"][i],
                                "base@clean": clean["base"][i], "novel@clean": clean["novel"][i]}) for i in (0, 1))
    return out


def comparison_rows(runs: list[Run], a: str, b: str, *, n_boot: int = 4000) -> tuple[list[ComparisonRow], list[str]]:
    """(rows, notes on what could not be paired)."""
    methods = {r.protocol.method for r in runs}
    for m in (a, b):
        if m not in methods:
            raise RobustPromptError(f"report --compare: no runs of {m!r}; methods found: {', '.join(sorted(methods))}")
    by_setting: dict[tuple, dict[str, dict[str, Run]]] = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        if r.protocol.method in (a, b):
            p = r.protocol
            by_setting[(p.dataset, p.train_split, p.shots, p.backbone)][p.method][r.seed] = r
    notes: list[str] = []
    # (train dataset, eval dataset, variant) -> split -> (cell A, cell B); the rows' seeds per training dataset
    cells: dict[tuple, dict[str, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    seeds_of: dict[str, tuple] = {}
    for setting, by_method in sorted(by_setting.items()):
        seeds = sorted(set(by_method.get(a, {})) & set(by_method.get(b, {})))
        if not seeds:
            continue
        seeds_of[setting[0]] = tuple(seeds)
        recs = {m: [{(rec["dataset"], _variant(rec), rec["split"]): rec for rec in by_method[m][s].evaluations}
                    for s in seeds] for m in (a, b)}
        keys = set.intersection(*(set(d) for m in (a, b) for d in recs[m]))
        for key in sorted(keys):
            pair = [[recs[m][i][key] for i in range(len(seeds))] for m in (a, b)]
            where = f"{setting[0]} {_describe_variant(key[1])} {key[2]}"
            if any(flags(rec) is None for side in pair for rec in side):
                notes.append(f"{where}: no per-image results in some runs (evaluated before they were kept); "
                             "re-run `robustprompt eval` to pair them")
                continue
            ma, mb = stacked_flags(pair[0]), stacked_flags(pair[1])
            same_images = all(ra.get("items_sha256") == rb.get("items_sha256") for ra, rb in zip(*pair))
            if ma is None or mb is None or ma.shape != mb.shape or not same_images:
                notes.append(f"{where}: {a} and {b} were tested on different images (or subsets of different "
                             "sizes); not paired")
                continue
            cells[(setting[0], key[0], key[1])][key[2]] = (ma, mb)
    rows: list[ComparisonRow] = []
    # (evaluation, split, kind) -> per dataset (its seeds, its pair)
    pooled: dict[tuple, list[tuple[tuple, tuple[Cell, Cell]]]] = defaultdict(list)
    # (source, evaluation, split) -> per target (its seeds, its pair)
    transfer: dict[tuple, list[tuple[tuple, tuple[Cell, Cell]]]] = defaultdict(list)
    for (train_ds, eval_ds, variant), splits in sorted(cells.items()):
        scope = train_ds if train_ds == eval_ds else f"{train_ds} -> {eval_ds}"
        desc = _describe_variant(variant)
        for split, (ma, mb) in sorted(splits.items()):
            pair = (Cell({split: ma}), Cell({split: mb}))
            rows.append(ComparisonRow(scope, desc, split, compare([pair], "acc", n_boot=n_boot)))
            if train_ds == eval_ds:
                pooled[(desc, split, "acc")].append((seeds_of[train_ds], pair))
            else:
                transfer[(train_ds, desc, split)].append((seeds_of[train_ds], pair))
        if "base" in splits and "novel" in splits:
            pair = (Cell({s: splits[s][0] for s in ("base", "novel")}), Cell({s: splits[s][1] for s in ("base", "novel")}))
            rows.append(ComparisonRow(scope, desc, "HM", compare([pair], "hm", n_boot=n_boot)))
            if train_ds == eval_ds:
                pooled[(desc, "HM", "hm")].append((seeds_of[train_ds], pair))
        clean = cells.get((train_ds, eval_ds, CLEAN))
        if variant[VARIANT_KEYS.index("noise")] and clean:
            for split, pair in _change_pairs(splits, clean).items():
                kind = "hm_change" if split == "HM" else "acc"
                change = desc.replace("noise_acc", "noise_change", 1)
                rows.append(ComparisonRow(scope, change, split, compare([pair], kind, n_boot=n_boot)))
                if train_ds == eval_ds:
                    pooled[(change, split, kind)].append((seeds_of[train_ds], pair))
    for (desc, split, kind), entries in sorted(pooled.items()):
        pairs = _shared_seeds(entries, f"average {desc} {split}", notes)
        if len(pairs) > 1:
            rows.append(ComparisonRow(f"average of {len(pairs)}", desc, split, compare(pairs, kind, n_boot=n_boot)))
    for (train_ds, desc, split), entries in sorted(transfer.items()):
        pairs = _shared_seeds(entries, f"{train_ds} -> average {desc} {split}", notes)
        if len(pairs) > 1:
            rows.append(ComparisonRow(f"{train_ds} -> average of {len(pairs)}", desc, split,
                                      compare(pairs, "acc", n_boot=n_boot)))
    return rows, notes


def _shared_seeds(entries: list[tuple[tuple, tuple[Cell, Cell]]], where: str, notes: list[str]) -> list[tuple[Cell, Cell]]:
    """The datasets' pairs cut to the seeds all of them have (rows of each matrix); none when they share none."""
    shared = sorted(set.intersection(*(set(seeds) for seeds, _ in entries)))
    if not shared:
        notes.append(f"{where}: the datasets share no seed; no average")
        return []
    dropped = sorted(set().union(*(set(seeds) for seeds, _ in entries)) - set(shared))
    if dropped:
        notes.append(f"{where}: seed(s) {', '.join(map(str, dropped))} left out (not on every dataset)")
    out = []
    for seeds, pair in entries:
        rows = [seeds.index(s) for s in shared]
        out.append(tuple(Cell({split: m[rows] for split, m in cell.splits.items()}) for cell in pair))
    return out


def p_value_text(p: float | None) -> str:
    """An exact p-value for a table: two significant digits, "<1e-4" below."""
    return "" if p is None else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def signed_points(x: float) -> str:
    """A difference in points with its sign; no "-0.00"."""
    return f"{round(100 * x, 2) + 0.0:+.2f}"


def format_rows(rows: list[ComparisonRow], a: str, b: str) -> str:
    head = ["scope", "evaluation", "split", a, b, f"{a} - {b} [95% CI]", f"{a} > {b}?", "McNemar p", "seeds",
            "images"]
    body = [[r.scope, r.evaluation, r.split, f"{100 * r.result.a:.2f}", f"{100 * r.result.b:.2f}",
             f"{signed_points(r.result.diff)} [{signed_points(r.result.low)}, {signed_points(r.result.high)}]",
             r.result.verdict, p_value_text(r.result.mcnemar_p), str(r.result.n_seeds), str(r.result.n_images)] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in body])


def markdown_rows(rows: list[ComparisonRow], a: str, b: str) -> str:
    out = [f"| scope | evaluation | split | {a} | {b} | {a} - {b} [95% CI] | {a} > {b}? | McNemar p | seeds | images |",
           "|---|---|---|---:|---:|---|---|---:|---:|---:|"]
    for r in rows:
        c = r.result
        out.append(f"| {r.scope} | {r.evaluation} | {r.split} | {100 * c.a:.2f} | {100 * c.b:.2f} | "
                   f"{signed_points(c.diff)} [{signed_points(c.low)}, {signed_points(c.high)}] | {c.verdict} | "
                   f"{p_value_text(c.mcnemar_p)} | {c.n_seeds} | {c.n_images} |")
    return "\n".join(out)
