"""Reports over run directories: Markdown and CSV tables, PNG plots, one self-contained HTML page.

    from robustprompt.report import build_report
    result = build_report(["runs/"], "runs/report", tables=["b2n", "robustness"], plots=True)
    result.html      # runs/report/report.html

Writes into `out`:
    report.md, report.html           every selected table (and the figures, embedded in the HTML)
    <table>.md, <table>.csv          one pair per table that has rows (b2n, robustness, noise, clean)
    plots/*.png                      b2n_bars, eps_<dataset>_<split>, noise_<dataset>
Everything is computed in memory first and written with atomic renames; a bad input (no runs, a
results.json that is not JSON, an output folder that cannot be created) fails before anything is
written. Only results.json (JSON) and config.yaml (YAML safe_load) are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, RobustPromptError
from .collect import Collection, Protocol, Run, collect, find_run_dirs, read_run
from .tables import TABLES, Table, build_tables, to_csv, to_markdown

__all__ = ["build_report", "ReportResult", "TABLES", "collect", "find_run_dirs", "read_run", "build_tables",
           "Run", "Protocol", "Table", "Collection"]


@dataclass
class ReportResult:
    out: Path
    runs: list[Path]
    tables: dict[str, Table]
    files: list[Path] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    comparisons: dict = field(default_factory=dict)  # (A, B) -> (rows, notes), see report/compare.py

    @property
    def html(self) -> Path:
        return self.out / "report.html"

    @property
    def markdown(self) -> Path:
        return self.out / "report.md"


def _check_out(out: Path) -> None:
    """Fail before any work if `out` cannot be created and written."""
    p = out
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        raise RobustPromptError(f"report: cannot create output folder {out}: {p} is not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise RobustPromptError(f"report: output folder {p} is not writable")


def build_report(paths, out: str | Path | None = None, *, tables=TABLES, plots: bool = True,
                 title: str = "robustprompt report", compare: list[tuple[str, str]] = ()) -> ReportResult:
    """Find the runs under `paths`, aggregate them and write the report into `out` (default: paths[0]/report).
    `compare`: pairs of methods (A, B) compared image by image (report/compare.py)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p).expanduser() for p in paths]
    if not paths:
        raise RobustPromptError("report: give at least one directory")
    names = list(dict.fromkeys(tables or TABLES))
    unknown = [t for t in names if t not in TABLES]
    if unknown:
        raise ConfigError(f"report: unknown table {unknown[0]!r}; choose from {', '.join(TABLES)}")
    out = Path(out).expanduser() if out is not None else paths[0] / "report"
    _check_out(out)
    found = collect(paths, skip=out)
    built = build_tables(found.runs, names)
    from .compare import comparison_rows, markdown_rows

    comparisons = {(a, b): comparison_rows(found.runs, a, b) for a, b in compare}
    figures = []
    if plots:
        try:
            from .plots import build_figures
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            raise RobustPromptError("report: plots need matplotlib (pip install matplotlib) or use --no-plots") from None
        figures = build_figures(built)

    from .html import render_html

    contents: dict[str, bytes] = {}
    md = [f"# {title}", "", f"{len(found.runs)} run(s) from {', '.join(str(p) for p in paths)}.", ""]
    for name, table in built.items():
        md.append(to_markdown(table))
        if not table.empty:
            contents[f"{name}.md"] = (to_markdown(table, level=1) + "\n").encode()
            contents[f"{name}.csv"] = to_csv(table).encode()
    for (a, b), (rows, notes) in comparisons.items():
        md += [f"## {a} against {b} (paired)", "", markdown_rows(rows, a, b), ""] + [f"- {n}" for n in notes] + [""]
    if figures:
        md += ["## Figures", ""] + [f"![{f.title}](plots/{f.name}.png)\n" for f in figures]
    if found.warnings:
        md += ["## Warnings", ""] + [f"- {w}" for w in found.warnings] + [""]
    contents["report.md"] = "\n".join(md).encode()
    for f in figures:
        contents[f"plots/{f.name}.png"] = f.png
    contents["report.html"] = render_html(title, found, built, figures, paths, comparisons).encode()

    from ..atomic import atomic_write_bytes

    try:
        (out / "plots" if figures else out).mkdir(parents=True, exist_ok=True)
        written = []
        for rel, data in contents.items():
            atomic_write_bytes(out / rel, data)
            written.append(out / rel)
    except OSError as e:
        raise RobustPromptError(f"report: cannot write into {out}: {e.strerror or e}") from None
    return ReportResult(out=out, runs=[r.path for r in found.runs], tables=built, files=written,
                        figures=[f.name for f in figures], warnings=found.warnings, comparisons=comparisons)
