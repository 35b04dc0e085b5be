"""Claims: what a paper (or the field) says, and what the project's own runs say about it.

A claims file (YAML, e.g. bench/claims.yaml) lists claims; each names

    id         a short name
    section    the README section it is shown in (its marker pair, see below)
    source     where the claim comes from (paper and table)
    statement  the claim in words
    published  the published numbers, as text
    runs       the folder of run directories that answers it (relative to the claims file's folder), or a
               list of folders read together (an ablation's runs beside the full method's)
    a, b       the two methods (report labels); `a` may be a list: one row per method against b
    evaluation the comparison's evaluation ("clean_acc", "pgd_acc eps=1/255 steps=100", ...)
    split      base | novel | all | HM
    scope      a training dataset, "SRC -> TGT", "average" (over datasets evaluated in-domain) or
               "SRC -> average" (over every target of SRC)
    direction  greater (a > b, the default) or less (a < b)
    min_images optional: the fewest test images per method (pooled over datasets and seeds) a verdict
               may rest on (issue 14: 500 for AutoAttack); with fewer the row shows its numbers and
               the verdict "too few images"

`evaluate_claims` reads the runs, makes the paired comparison of `report --compare` and reads the
verdict in the claimed direction: established, refuted, not established, "too few images", or
"no runs" when the runs are not on disk. `render_section` writes the Markdown that `write_sections` puts between
`<!-- claims:SECTION:begin -->` and `<!-- claims:SECTION:end -->` in a README, so no number there is
typed by hand.

The file may also list `tables:`, each a report table written between `<!-- table:SECTION:begin -->` and
`<!-- table:SECTION:end -->`:

    section    the marker name
    runs       the folder(s) of run directories, as for a claim
    table      b2n | robustness | noise | clean (the tables of `robustprompt report`)
    rows       all (default) or average (only the rows averaged over datasets; the methods left out of
               the average for want of a dataset are named under the table)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import RobustPromptError
from .compare import ComparisonRow, comparison_rows, signed_points

FLIP = {"established": "refuted", "refuted": "established", "not established": "not established"}
REQUIRED = ("id", "section", "source", "statement", "runs", "a", "b", "evaluation", "split", "scope")


@dataclass
class Claim:
    id: str
    section: str
    source: str
    statement: str
    runs: tuple[str, ...]  # folders read together
    a: str
    b: str
    evaluation: str
    split: str
    scope: str
    direction: str = "greater"
    published: str = ""
    min_images: int = 0


@dataclass(frozen=True)
class TableSpec:
    section: str
    runs: tuple[str, ...]
    table: str
    rows: str = "all"


@dataclass
class Outcome:
    claim: Claim
    row: ComparisonRow | None  # in the claimed direction: a vs b (or b vs a for "less")
    verdict: str
    note: str = ""


def _folders(path: Path, runs) -> tuple[str, ...]:
    return tuple(str(path.parent / str(f)) for f in (runs if isinstance(runs, list) else [runs]))


def load_tables(path: str | Path) -> list[TableSpec]:
    """The optional `tables:` list of a claims file; one-line errors for a bad entry."""
    from ..config import load_yaml
    from .tables import TABLES

    path = Path(path)
    data = load_yaml(path)
    items = data.get("tables", []) if isinstance(data, dict) else []
    if not isinstance(items, list):
        raise RobustPromptError(f"{path}: 'tables:' must be a list")
    out = []
    for i, item in enumerate(items):
        where = f"{path}: table {i + 1}"
        if not isinstance(item, dict) or not {"section", "runs", "table"} <= set(item):
            raise RobustPromptError(f"{where} needs section, runs and table")
        unknown = sorted(set(item) - set(TableSpec.__dataclass_fields__))
        if unknown:
            raise RobustPromptError(f"{where} ({item['section']}) has unknown keys {', '.join(unknown)}")
        if item["table"] not in TABLES:
            raise RobustPromptError(f"{where} ({item['section']}): table must be one of {', '.join(TABLES)}")
        if item.get("rows", "all") not in ("all", "average"):
            raise RobustPromptError(f"{where} ({item['section']}): rows must be 'all' or 'average'")
        out.append(TableSpec(str(item["section"]), _folders(path, item["runs"]), item["table"],
                             item.get("rows", "all")))
    return out


def render_table(spec: TableSpec) -> str:
    """The report's table over the spec's runs, as Markdown with its note (average rows only with
    rows: average, naming the methods that lack a dataset for the average)."""
    from .collect import collect
    from .tables import BUILDERS, to_markdown

    folders = [f for f in spec.runs if Path(f).exists()]
    if not folders:
        return f"_No runs yet under {', '.join(spec.runs)}._"
    table = BUILDERS[spec.table](collect(folders).runs)
    missing = ""
    if spec.rows == "average" and "dataset" in table.key_columns:
        at = table.key_columns.index("dataset")
        averaged = [r for r in table.rows if r.keys[at].startswith("Average (")]
        covered: dict[str, set] = {}
        for r in table.rows:
            if not r.keys[at].startswith("Average ("):
                covered.setdefault(r.label, set()).add(r.keys[at])
        datasets = set().union(*covered.values()) if covered else set()
        left = sorted(m for m in covered if m not in {r.label for r in averaged})
        if left:
            missing = ("Not in the average (runs on fewer datasets): "
                       + ", ".join(f"{m} ({len(covered[m])} of {len(datasets)})" for m in left) + ".")
        table.rows = averaged
    return (to_markdown(table, heading=False).rstrip() + (f"\n\n{missing}" if missing else ""))


def load_claims(path: str | Path) -> list[Claim]:
    """The claims of a YAML file; one-line errors for a missing key or a bad value."""
    from ..config import load_yaml

    path = Path(path)
    data = load_yaml(path)
    items = data.get("claims") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise RobustPromptError(f"{path}: expected a top-level 'claims:' list")
    out: list[Claim] = []
    for i, item in enumerate(items):
        where = f"{path}: claim {i + 1}"
        if not isinstance(item, dict):
            raise RobustPromptError(f"{where} is not a mapping")
        missing = [k for k in REQUIRED if k not in item]
        if missing:
            raise RobustPromptError(f"{where} ({item.get('id', '?')}) lacks {', '.join(missing)}")
        unknown = sorted(set(item) - set(Claim.__dataclass_fields__))
        if unknown:
            raise RobustPromptError(f"{where} ({item['id']}) has unknown keys {', '.join(unknown)}")
        if item.get("direction", "greater") not in ("greater", "less"):
            raise RobustPromptError(f"{where} ({item['id']}): direction must be 'greater' or 'less'")
        if not isinstance(item.get("min_images", 0), int) or item.get("min_images", 0) < 0:
            raise RobustPromptError(f"{where} ({item['id']}): min_images must be a whole number >= 0")
        runs = _folders(path, item["runs"])
        methods = item["a"] if isinstance(item["a"], list) else [item["a"]]
        for m in methods:
            values = {**item, "a": str(m), "runs": runs}
            if len(methods) > 1:
                values["id"] = f"{item['id']}-{m}"
            out.append(Claim(**{k: (v if k in ("direction", "runs", "min_images") else str(v))
                                 for k, v in values.items()}))
    ids = [c.id for c in out]
    dup = sorted({x for x in ids if ids.count(x) > 1})
    if dup:
        raise RobustPromptError(f"{path}: repeated claim ids {', '.join(dup)}")
    return out


def _pick(rows: list[ComparisonRow], claim: Claim) -> ComparisonRow | None:
    def scope_ok(r: ComparisonRow) -> bool:
        if claim.scope == "average":
            return r.scope.startswith("average of")
        if claim.scope.endswith("-> average"):
            return r.scope.startswith(claim.scope.split("->")[0].strip() + " -> average of")
        return r.scope == claim.scope

    found = [r for r in rows if scope_ok(r) and r.evaluation == claim.evaluation and r.split == claim.split]
    if not found and claim.scope == "average":  # one dataset: its own row is the average
        single = {r.scope for r in rows if "->" not in r.scope and not r.scope.startswith("average")}
        if len(single) == 1:
            found = [r for r in rows if r.scope in single and r.evaluation == claim.evaluation
                     and r.split == claim.split]
    return found[0] if found else None


def evaluate_claims(claims: list[Claim], *, n_boot: int = 4000) -> list[Outcome]:
    from .collect import collect

    cache: dict[str, list] = {}
    out = []
    for c in claims:
        if c.runs not in cache:
            folders = [f for f in c.runs if Path(f).exists()]
            try:
                cache[c.runs] = collect(folders).runs if folders else []
            except RobustPromptError:
                cache[c.runs] = []
        runs = cache[c.runs]
        if not runs:
            out.append(Outcome(c, None, "no runs", f"no run directories under {', '.join(c.runs)}"))
            continue
        a, b = (c.a, c.b) if c.direction == "greater" else (c.b, c.a)
        try:
            rows, _ = comparison_rows(runs, a, b, n_boot=n_boot)
        except RobustPromptError as e:
            out.append(Outcome(c, None, "no runs", str(e)))
            continue
        row = _pick(rows, c)
        if row is None:
            out.append(Outcome(c, None, "no runs", f"no paired {c.evaluation} {c.split} at scope {c.scope}"))
            continue
        if row.result.n_images < c.min_images:
            out.append(Outcome(c, row, "too few images",
                               f"{row.result.n_images} test images, the claim needs {c.min_images}"))
            continue
        out.append(Outcome(c, row, row.result.verdict))
    return out


def _verdict(o: Outcome) -> str:
    if o.verdict == "too few images":
        return f"too few images (at least {o.claim.min_images})"
    return f"**{o.verdict}**"


def render_section(outcomes: list[Outcome]) -> str:
    """A Markdown table of outcomes: claim, published numbers, ours with the 95% interval, verdict."""
    lines = ["| claim | A vs B | source | published | ours: A, B (%) | A - B [95% CI] | datasets | seeds | images | verdict |",
             "|---|---|---|---|---|---|---:|---:|---:|---|"]
    for o in outcomes:
        c = o.claim
        first, second = (c.a, c.b) if c.direction == "greater" else (c.b, c.a)
        head = f"| {c.statement} | {first} > {second} | {c.source} | {c.published} |"
        if o.row is None:
            lines.append(f"{head} | | | | | {o.verdict} |")
            continue
        r = o.row.result
        lines.append(f"{head} {100 * r.a:.1f}, {100 * r.b:.1f} | {signed_points(r.diff)} [{signed_points(r.low)}, "
                     f"{signed_points(r.high)}] | {r.n_datasets} | {r.n_seeds} | {r.n_images} | "
                     f"{_verdict(o)} |")
    return "\n".join(lines)


def _replace_block(text: str, kind: str, name: str, body: str) -> str:
    begin, end = f"<!-- {kind}:{name}:begin -->", f"<!-- {kind}:{name}:end -->"
    pattern = re.compile(rf"({re.escape(begin)}\n).*?({re.escape(end)})", re.S)
    if not pattern.search(text):
        raise RobustPromptError(f"no '{begin}' ... '{end}' markers to write the section into")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def write_sections(text: str, outcomes: list[Outcome], tables: dict[str, str] | None = None) -> str:
    """`text` with every `<!-- claims:SECTION:begin -->...<!-- claims:SECTION:end -->` block replaced by
    the table of that section's outcomes, and every `<!-- table:SECTION:... -->` block by the rendered
    table of that name (`tables`: section -> Markdown); a section without markers is an error."""
    sections: dict[str, list[Outcome]] = {}
    for o in outcomes:
        sections.setdefault(o.claim.section, []).append(o)
    for name, items in sections.items():
        text = _replace_block(text, "claims", name, render_section(items))
    for name, body in (tables or {}).items():
        text = _replace_block(text, "table", name, body)
    return text
