"""Aggregating runs into tables (mean +- std over seeds) and writing them as Markdown, CSV and HTML.

Rules, stated again in each table's note:
- Runs are averaged together when method (the run's label, e.g. advivlp, else its method),
  training dataset, training split, shots and backbone (model/pretrained) agree; each run is one seed.
- +- is the sample standard deviation (n - 1) over seeds; one seed shows no +-.
- A cell with fewer seeds than its row says so, "(n=k)"; a cell with none is blank. Nothing is
  filled in or interpolated.
- HM = 2 B N / (B + N) is computed per seed from that seed's Base and Novel, then averaged.
- Markdown and HTML show accuracy in percent; CSV holds the fractions in [0, 1] as in results.json.
- [lo, hi] is the 95% interval of the cell's mean (report/stats.py: a bootstrap over the test
  images plus the spread of the seeds, Student's t), shown where every seed's record kept its
  per-image results on the same images.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
import statistics
from dataclasses import dataclass, field

from .collect import Protocol, Run

TABLES = ("b2n", "robustness", "noise", "clean")
ATTACK_ORDER = ("fgsm", "pgd", "pgd-l2", "cw", "margin", "apgd-ce", "apgd-t", "fab-t", "square", "autoattack")
ATTACK_NAMES = {"pgd": "PGD", "autoattack": "AutoAttack", "fgsm": "FGSM", "cw": "CW", "square": "Square",
                "margin": "PGD-margin", "pgd-l2": "PGD-L2", "apgd-ce": "APGD-CE", "apgd-t": "APGD-T",
                "fab-t": "FAB-T"}
PROTOCOL_COLUMNS = (("train split", "train_split"), ("shots", "shots"), ("backbone", "backbone"))

COMMON_NOTE = ("Mean ± sample standard deviation (n - 1) over seeds, accuracy in percent; one seed shows no ±. "
               "[lo, hi]: the 95% interval of the mean (one run: Wilson's interval over its test images; several "
               "seeds: bootstrap over the test images plus the seeds' spread, Student's t; shown where the runs "
               "kept per-image results). "
               "A cell with fewer seeds than its row is marked (n=k); a blank cell means no run recorded that "
               "metric (nothing is filled in). Runs are averaged when method, training dataset, training split, "
               "shots and backbone agree.")


# ------------------------------------------------------------------ cells, rows, tables
@dataclass
class Cell:
    values: list[float]
    interval: tuple[float, float] | None = None  # 95% interval of the mean (report/stats.py)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


def cell(values, records: list | None = None, kind: str = "acc") -> Cell | None:
    """A cell of seed values; with `records` (per split, the seeds' evaluation records) also its interval."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return Cell(values, _interval(records, kind) if records else None)


def _average_cell(values: list[float], per_dataset: dict[str, list], split: str) -> Cell | None:
    """A cell of per-seed means over datasets, with the interval of that mean (stats: one Cell per dataset)."""
    from .stats import Cell as StatsCell, interval, stacked_flags

    c = cell(values)
    matrices = [stacked_flags(recs) for recs in per_dataset.values()]
    if c is not None and matrices and all(m is not None for m in matrices):
        est = interval([StatsCell({split: m}) for m in matrices], "acc", n_boot=500)
        c.interval = (est.low, est.high)
    return c


def _interval(records: dict[str, list], kind: str) -> tuple[float, float] | None:
    """95% interval from per-image results; None unless every seed has them on the same images."""
    from .stats import Cell as StatsCell, interval, stacked_flags

    splits = {split: stacked_flags(recs) for split, recs in records.items()}
    if any(m is None for m in splits.values()):
        return None
    est = interval([StatsCell(splits)], kind, n_boot=500)
    return est.low, est.high


@dataclass
class Row:
    keys: list[str]
    cells: list[Cell | None]
    seeds: int
    label: str = ""  # method (and the protocol columns that vary), for plot legends
    where: tuple = ()  # the row's own keys after the method and protocol columns


@dataclass
class Table:
    name: str
    title: str
    key_columns: list[str]
    value_columns: list[str]
    rows: list[Row] = field(default_factory=list)
    note: str = ""
    column_keys: list = field(default_factory=list)  # robustness: (attack, eps, eps_value, steps) per value column

    @property
    def empty(self) -> bool:
        return not self.rows

    def column(self, name: str) -> int:
        return self.value_columns.index(name)


def hm(b: float | None, n: float | None) -> float | None:
    """Harmonic mean of base and novel accuracy; None unless both exist."""
    if b is None or n is None:
        return None
    return 0.0 if b + n == 0 else 2 * b * n / (b + n)


# ------------------------------------------------------------------ record look-ups
def _is_clean(r: dict) -> bool:
    return r.get("metric") == "clean_acc" and not r.get("attack") and not r.get("noise")


def clean_record(run: Run, dataset: str, split: str) -> dict | None:
    found = [r for r in run.evaluations if _is_clean(r) and r["dataset"] == dataset and r["split"] == split]
    return found[-1] if found else None


def clean_value(run: Run, dataset: str, split: str) -> float | None:
    r = clean_record(run, dataset, split)
    return None if r is None else r["value"]


def _attack_key(r: dict) -> tuple[str, str, float, str]:
    eps = str(r.get("eps", ""))
    value = r.get("eps_value")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        value = _eps_float(eps)
    steps = r.get("steps")
    attack = str(r["attack"])
    norm = r.get("norm")
    if norm and str(norm).lower() not in ("linf", "l_inf", "inf") and not attack.endswith(f"-{str(norm).lower()}"):
        attack = f"{attack}-{str(norm).lower()}"  # an L2 attack is another protocol than L-inf
    return attack, eps, float(value), "" if steps is None else str(steps)


def _eps_float(eps: str) -> float:
    try:
        if "/" in eps:
            a, b = eps.split("/", 1)
            return float(a) / float(b)
        return float(eps)
    except (ValueError, ZeroDivisionError):
        return math.inf


def attack_label(key: tuple[str, str, float, str], all_steps: dict[str, set]) -> str:
    attack, eps, _, steps = key
    name = ATTACK_NAMES.get(attack, attack)
    if steps and (len(all_steps.get(attack, ())) > 1 or attack in ("pgd", "fgsm", "cw", "margin", "pgd-l2")):
        name = f"{name}-{steps}"
    return f"{name} eps {eps}"


def _attack_sort(key: tuple[str, str, float, str]):
    attack, eps, value, steps = key
    order = ATTACK_ORDER.index(attack) if attack in ATTACK_ORDER else len(ATTACK_ORDER)
    return order, attack, value, eps, int(steps) if steps.isdigit() else 0, steps


def noise_sort(noise: str):
    kind, _, level = noise.partition(":")
    try:
        return kind, 0, float(level), level
    except ValueError:
        return kind, 1, 0.0, level


# ------------------------------------------------------------------ grouping
def group_runs(runs: list[Run]) -> dict[Protocol, list[Run]]:
    groups: dict[Protocol, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.protocol, []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0].dataset, kv[0].method, kv[0].train_split,
                                                         kv[0].shots, kv[0].backbone)))


def _protocol_columns(protocols) -> tuple[list[tuple[str, str]], str]:
    """Protocol columns that vary between rows; the constant ones become a sentence for the note."""
    varying, constant = [], []
    for label, attr in PROTOCOL_COLUMNS:
        values = {getattr(p, attr) for p in protocols}
        if len(values) > 1:
            varying.append((label, attr))
        elif values:
            constant.append(f"{label} {next(iter(values))}")
    return varying, ("All rows: " + ", ".join(constant) + ".") if constant else ""


def _dataset_label(p: Protocol, dataset: str) -> str:
    return dataset if dataset == p.dataset else f"{p.dataset} → {dataset}"


def _finish(table: Table, rows: list[tuple[Protocol, list[str], list, int]], note: str) -> Table:
    varying, constant = _protocol_columns({p for p, *_ in rows})
    table.key_columns = ["method", *[label for label, _ in varying], *table.key_columns]
    for p, keys, cells, seeds in rows:
        extra = [getattr(p, a) for _, a in varying]
        label = p.method + (f" ({', '.join(extra)})" if extra else "")
        table.rows.append(Row([p.method, *extra, *keys], cells, seeds, label, tuple(keys)))
    table.note = " ".join(x for x in (note, COMMON_NOTE, constant) if x)
    return table


# ------------------------------------------------------------------ the tables
def b2n_table(runs: list[Run]) -> Table:
    groups = group_runs(runs)
    rows = []
    per_seed: dict[tuple, dict[str, dict[str, tuple[float, float]]]] = {}  # method key -> dataset -> seed -> (B, N)
    records: dict[tuple, dict[str, dict[str, tuple]]] = {}  # method key -> dataset -> seed -> (base, novel) records
    for p, members in groups.items():
        bases = [clean_value(r, p.dataset, "base") for r in members]
        novels = [clean_value(r, p.dataset, "novel") for r in members]
        if all(b is None for b in bases) and all(n is None for n in novels):
            continue
        hms = [hm(b, n) for b, n in zip(bases, novels)]
        rb = [clean_record(r, p.dataset, "base") for r in members]
        rn = [clean_record(r, p.dataset, "novel") for r in members]
        rows.append((p, [p.dataset, str(len(members))],
                     [cell(bases, {"base": rb}), cell(novels, {"novel": rn}),
                      cell(hms, {"base": rb, "novel": rn}, "hm")], len(members)))
        key = (p.method, p.train_split, p.shots, p.backbone)
        seeds = per_seed.setdefault(key, {}).setdefault(p.dataset, {})
        recs = records.setdefault(key, {}).setdefault(p.dataset, {})
        for r, b, n, rec_b, rec_n in zip(members, bases, novels, rb, rn):
            if b is not None and n is not None and r.seed not in seeds:
                seeds[r.seed] = (b, n)
                recs[r.seed] = (rec_b, rec_n)
    datasets = sorted({p.dataset for p, *_ in rows})
    averaged = []
    if len(datasets) > 1:
        for key, by_dataset in sorted(per_seed.items()):
            if set(by_dataset) != set(datasets):
                continue
            common = set.intersection(*(set(s) for s in by_dataset.values()))
            if not common:
                continue
            b = [math.fsum(by_dataset[d][s][0] for d in datasets) / len(datasets) for s in sorted(common)]
            n = [math.fsum(by_dataset[d][s][1] for d in datasets) / len(datasets) for s in sorted(common)]
            p = Protocol(key[0], "", key[1], key[2], key[3])
            by_split = [{d: [records[key][d][s][i] for s in sorted(common)] for d in datasets} for i in (0, 1)]
            averaged.append((p, [f"Average ({len(datasets)} datasets)", str(len(common))],
                             [_average_cell(b, by_split[0], "base"), _average_cell(n, by_split[1], "novel"),
                              cell(hm(x, y) for x, y in zip(b, n))], len(common)))
    note = ("Base-to-novel: Base and Novel are the clean accuracy (clean_acc) on the base and novel classes of "
            "the run's own dataset. HM = 2·B·N/(B+N) is computed per seed, then averaged over seeds. The "
            "average rows take, per seed, the mean Base and the mean Novel over all datasets of the table and "
            "their HM, then average over the seeds present on every dataset; a method missing a dataset gets "
            "no average row. The average rows' Base and Novel carry the interval of the mean over datasets; "
            "their HM (an HM of averages) carries none.")
    table = Table("b2n", "Base-to-novel generalisation", ["dataset", "seeds"], ["Base", "Novel", "HM"])
    return _finish(table, rows + averaged, note)


def robustness_table(runs: list[Run]) -> Table:
    groups = group_runs(runs)
    columns: set = set()
    steps_seen: dict[str, set] = {}
    entries = []
    for p, members in groups.items():
        targets = sorted({(r["dataset"], r["split"]) for run in members for r in run.evaluations
                          if r.get("attack") and not r.get("noise")}, key=lambda t: (t[0], SPLIT_ORDER[t[1]]))
        for dataset, split in targets:
            values: dict = {}
            recs: dict = {}
            for i, run in enumerate(members):
                for r in run.evaluations:
                    if r.get("attack") and not r.get("noise") and r["dataset"] == dataset and r["split"] == split:
                        k = _attack_key(r)
                        columns.add(k)
                        steps_seen.setdefault(k[0], set()).add(k[3])
                        values.setdefault(k, [None] * len(members))[i] = r["value"]
                        recs.setdefault(k, [None] * len(members))[i] = r
            clean = [clean_record(run, dataset, split) for run in members]
            entries.append((p, dataset, split, clean, values, recs, len(members)))
    keys = sorted(columns, key=_attack_sort)
    labels = [attack_label(k, steps_seen) for k in keys]
    table = Table("robustness", "Adversarial robustness", ["dataset", "split", "seeds"], ["Clean", *labels],
                  column_keys=[None, *keys])
    rows = []
    for p, dataset, split, clean, values, recs, seeds in entries:
        cells = [cell([r and r["value"] for r in clean], {split: clean})]
        cells += [cell(values.get(k, []), {split: recs[k]} if k in recs else None) for k in keys]
        rows.append((p, [_dataset_label(p, dataset), split, str(seeds)], cells, seeds))
    note = ("Robust accuracy under each attack and radius eps (on [0, 1] pixels), next to the clean accuracy of "
            "the same runs on the same classes. Steps are part of the column (PGD-100 and PGD-10 are different "
            "protocols).")
    return _finish(table, rows, " ".join(x for x in (note, sanity_summary(runs)) if x))


def sanity_summary(runs: list[Run]) -> str:
    """One sentence on the attack sanity checks recorded with the attacked evaluations (record["sanity"])."""
    total = 0
    failed: dict[str, list[str]] = {}
    for run in runs:
        for r in run.evaluations:
            checks = (r.get("sanity") or {}).get("checks")
            if not r.get("attack") or not checks:
                continue
            total += 1
            for name, ok in checks.items():
                if ok is False:
                    where = f"{run.protocol.method} seed {run.seed} {ATTACK_NAMES.get(r['attack'], r['attack'])} {r.get('eps')}"
                    failed.setdefault(name, []).append(where)
    if not total:
        return ""
    text = (f"Sanity checks (logits not probabilities, deterministic, non-zero gradients, eps 0 gives clean "
            f"accuracy, PGD-10 accuracy non-increasing in eps and in steps, zero accuracy at a large eps, transfer "
            f"from zero-shot CLIP not better than white-box PGD, Square not better than the white-box attacks; on "
            f"the first test images of each attacked evaluation): {total} evaluations checked, ")
    if not failed:
        return text + "all passed."
    parts = [f"{name} failed in {len(w)} ({'; '.join(w[:3])}{'; ...' if len(w) > 3 else ''})"
             for name, w in sorted(failed.items())]
    return text + ", ".join(parts) + "."


SPLIT_ORDER = {"base": 0, "novel": 1, "all": 2}


def noise_table(runs: list[Run]) -> Table:
    groups = group_runs(runs)
    entries = []
    used = {"base": False, "novel": False, "all": False}
    for p, members in groups.items():
        datasets = sorted({r["dataset"] for run in members for r in run.evaluations
                           if r.get("noise") and not r.get("attack")})
        for dataset in datasets:
            noises = sorted({str(r["noise"]) for run in members for r in run.evaluations
                             if r.get("noise") and not r.get("attack") and r["dataset"] == dataset}, key=noise_sort)
            for condition in ["clean", *noises]:
                by_split = {}
                for split in SPLIT_ORDER:
                    recs = []
                    for run in members:
                        if condition == "clean":
                            recs.append(clean_record(run, dataset, split))
                        else:
                            found = [r for r in run.evaluations
                                     if str(r.get("noise")) == condition and not r.get("attack")
                                     and r["dataset"] == dataset and r["split"] == split]
                            recs.append(found[-1] if found else None)
                    by_split[split] = recs
                    used[split] = used[split] or any(r is not None for r in recs)
                entries.append((p, dataset, condition, by_split, len(members)))
    columns = []
    if used["base"] or used["novel"]:
        columns += ["Base", "Novel", "HM"]
    if used["all"]:
        columns += ["All"]
    table = Table("noise", "Weak noise", ["dataset", "condition", "seeds"], columns)
    rows = []
    for p, dataset, condition, by_split, seeds in entries:
        cells = []
        vals = {s: [r and r["value"] for r in recs] for s, recs in by_split.items()}
        if "Base" in columns:
            hms = [hm(b, n) for b, n in zip(vals["base"], vals["novel"])]
            cells += [cell(vals["base"], {"base": by_split["base"]}), cell(vals["novel"], {"novel": by_split["novel"]}),
                      cell(hms, {"base": by_split["base"], "novel": by_split["novel"]}, "hm")]
        if "All" in columns:
            cells.append(cell(vals["all"], {"all": by_split["all"]}))
        rows.append((p, [_dataset_label(p, dataset), condition, str(seeds)], cells, seeds))
    note = ("Accuracy without noise (clean) and under each weak image or text noise (kind:level, as recorded in "
            "results.json), on the base, novel or all classes; HM per seed as in the base-to-novel table.")
    return _finish(table, rows, note)


def clean_table(runs: list[Run]) -> Table:
    groups = group_runs(runs)
    rows = []
    for p, members in groups.items():
        targets = sorted({(r["dataset"], r["split"]) for run in members for r in run.evaluations if _is_clean(r)},
                         key=lambda t: (t[0] != p.dataset, t[0], SPLIT_ORDER[t[1]]))
        for dataset, split in targets:
            recs = [clean_record(run, dataset, split) for run in members]
            rows.append((p, [_dataset_label(p, dataset), split, str(len(members))],
                         [cell([r and r["value"] for r in recs], {split: recs})], len(members)))
    table = Table("clean", "Clean accuracy", ["dataset", "split", "seeds"], ["Clean"])
    note = "Clean accuracy of every run on every dataset and class split it was evaluated on (a → b: trained on a, tested on b)."
    return _finish(table, rows, note)


BUILDERS = {"b2n": b2n_table, "robustness": robustness_table, "noise": noise_table, "clean": clean_table}


def build_tables(runs: list[Run], names=TABLES) -> dict[str, Table]:
    return {name: BUILDERS[name](runs) for name in names}


# ------------------------------------------------------------------ rendering
def fmt_cell(c: Cell | None, seeds: int) -> str:
    if c is None:
        return ""
    text = f"{100 * c.mean:.2f}"
    if c.std is not None:
        text += f" ± {100 * c.std:.2f}"
    if c.interval is not None:
        text += f" [{100 * c.interval[0]:.1f}, {100 * c.interval[1]:.1f}]"
    if c.n < seeds:
        text += f" (n={c.n})"
    return text


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(t: Table, level: int = 2, heading: bool = True) -> str:
    out = [f"{'#' * level} {t.title}", ""] if heading else []
    if t.empty:
        out += ["_No records for this table._", ""]
        return "\n".join(out)
    header = t.key_columns + t.value_columns
    out.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
    out.append("|" + "|".join(["---"] * len(t.key_columns) + ["---:"] * len(t.value_columns)) + "|")
    for row in t.rows:
        cells = [_md_escape(k) for k in row.keys] + [fmt_cell(c, row.seeds) for c in row.cells]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", f"_{t.note}_", ""]
    return "\n".join(out)


def _num(x: float | None) -> str:
    return "" if x is None else repr(round(x, 6))


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = list(t.key_columns)
    for col in t.value_columns:
        header += [f"{col} mean", f"{col} std", f"{col} n", f"{col} ci95 low", f"{col} ci95 high"]
    w.writerow(header)
    for row in t.rows:
        line = list(row.keys)
        for c in row.cells:
            ci = (None, None) if c is None or c.interval is None else c.interval
            line += ["", "", "0", "", ""] if c is None else [_num(c.mean), _num(c.std), str(c.n), _num(ci[0]), _num(ci[1])]
        w.writerow(line)
    return buf.getvalue()


def to_html(t: Table) -> str:
    e = html.escape
    if t.empty:
        return f"<h2 id='{e(t.name)}'>{e(t.title)}</h2>\n<p class='note'>No records for this table.</p>\n"
    out = [f"<h2 id='{e(t.name)}'>{e(t.title)}</h2>", "<div class='scroll'><table>", "<thead><tr>"]
    out += [f"<th>{e(h)}</th>" for h in t.key_columns]
    out += [f"<th class='num'>{e(h)}</th>" for h in t.value_columns]
    out.append("</tr></thead><tbody>")
    for row in t.rows:
        avg = " class='avg'" if row.keys and any(k.startswith("Average (") for k in row.keys) else ""
        out.append(f"<tr{avg}>" + "".join(f"<td>{e(k)}</td>" for k in row.keys)
                   + "".join(f"<td class='num'>{e(fmt_cell(c, row.seeds))}</td>" for c in row.cells) + "</tr>")
    out += ["</tbody></table></div>", f"<p class='note'>{e(t.note)}</p>"]
    return "\n".join(out) + "\n"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"
