"""`robustprompt report`: tables, plots and an HTML page over many run directories."""

from __future__ import annotations

import argparse

from ._common import formatter

EXAMPLES = """examples:
  robustprompt report runs/                                   # everything, into runs/report/
  robustprompt report runs/ --table b2n --table robustness --no-plots
  robustprompt report runs/coop-* runs/anprompt-* --out paper/tables

Run directories (config.yaml + results.json) are found recursively. Runs that agree on method,
training dataset, training split, shots and backbone are seeds of one setting: their metrics are
averaged (mean +- sample std). Base-to-novel HM = 2BN/(B+N) is computed per seed, then averaged.
A metric that no run recorded is left blank.

  robustprompt report runs/ --compare anprompt,maple   # paired: A - B, 95% interval, verdict on A > B
  robustprompt report --claims bench/claims.yaml --write README.md   # re-judge every claim from its runs
"""


def register(sub) -> None:
    from ..report import TABLES

    p = sub.add_parser("report", help="aggregate run directories into tables, plots and an HTML page",
                       description="Aggregate run directories (mean +- std over seeds) into Markdown and CSV "
                       "tables, PNG plots and one self-contained report.html.",
                       epilog=EXAMPLES, formatter_class=formatter)
    p.add_argument("dirs", nargs="*", metavar="DIR", help="folders searched recursively for run directories")
    p.add_argument("--out", help="output folder (default: the first DIR's report/)")
    p.add_argument("--table", action="append", choices=TABLES, metavar="NAME",
                   help=f"table to include, repeatable: {', '.join(TABLES)} (default: all)")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="draw PNG plots with matplotlib (default: on)")
    p.add_argument("--title", default="robustprompt report", help="title of the report")
    p.add_argument("--compare", action="append", metavar="A,B", default=[],
                   help="paired comparison of two methods (labels as in the tables), repeatable: per dataset "
                        "and evaluation, A - B with its 95%% interval (test images bootstrapped, the seeds' spread "
                        "with Student's t) "
                        "and a verdict on the claim A > B: established, refuted or not established")
    p.add_argument("--claims", metavar="YAML",
                   help="a claims file (bench/claims.yaml): judge every claim from the runs it names and print "
                        "the verdicts (no DIR needed)")
    p.add_argument("--write", metavar="README",
                   help="with --claims: rewrite the claims sections between the file's "
                        "'<!-- claims:SECTION:begin/end -->' markers, and the claims file's tables between "
                        "'<!-- table:SECTION:begin/end -->'")
    p.set_defaults(func=run)


def run_claims(args) -> int:
    from ..atomic import atomic_write_text
    from ..report.claims import evaluate_claims, load_claims, load_tables, render_section, render_table, write_sections

    outcomes = evaluate_claims(load_claims(args.claims))
    tables = {spec.section: render_table(spec) for spec in load_tables(args.claims)}
    sections: dict[str, list] = {}
    for o in outcomes:
        sections.setdefault(o.claim.section, []).append(o)
    for name, items in sections.items():
        print(f"## {name}\n")
        print(render_section(items))
        print()
    for name, body in tables.items():
        print(f"## {name}\n\n{body}\n")
    if args.write:
        from pathlib import Path

        path = Path(args.write)
        atomic_write_text(path, write_sections(path.read_text(), outcomes, tables))
        print(f"wrote {len(outcomes)} claim(s) and {len(tables)} table(s) into {path}")
    return 0


def run(args) -> int:
    from ..errors import ConfigError
    from ..report import build_report
    from ..report.compare import format_rows

    if args.claims:
        return run_claims(args)
    if args.write:
        raise ConfigError("--write needs --claims")
    if not args.dirs:
        raise ConfigError("report: give at least one run directory (or --claims FILE)")
    pairs = []
    for item in args.compare:
        names = [x.strip() for x in item.split(",")]
        if len(names) != 2 or not all(names) or names[0] == names[1]:
            raise ConfigError(f"--compare expects two different methods A,B; got {item!r}")
        pairs.append((names[0], names[1]))
    result = build_report(args.dirs, args.out, tables=args.table, plots=args.plots, title=args.title, compare=pairs)
    for (a, b), (rows, notes) in result.comparisons.items():
        print(f"{a} against {b} (paired; claim: {a} > {b})")
        print(format_rows(rows, a, b) if rows else "no paired evaluations")
        for n in notes:
            print(f"note: {n}")
        print()
    for w in result.warnings:
        print(f"warning: {w}")
    for name, table in result.tables.items():
        print(f"{name}: {len(table.rows)} row(s)" if not table.empty else f"{name}: no records")
    print(f"{len(result.runs)} run(s); wrote {len(result.files)} file(s) to {result.out} "
          f"(open {result.html})")
    return 0
