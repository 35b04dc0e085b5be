"""Finding run directories and reading their results.json (JSON and YAML safe_load only).

A run directory holds `config.yaml` and `results.json` (see `robustprompt.engine.rundir`). A
directory with `config.yaml` but no `results.json` is a run that has not finished; it is skipped
with a warning. A results.json that is not JSON, or whose records are malformed, is an error
naming the file: a report never guesses a number.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RobustPromptError

CONFIG = "config.yaml"
RESULTS = "results.json"
SPLITS = ("base", "novel", "all")
SUPPORTED_SCHEMA = 1


@dataclass(frozen=True)
class Protocol:
    """What must match for runs to be averaged together (apart from the seed)."""

    method: str  # the run's label (config `label`, e.g. the preset advivlp), else its method
    dataset: str  # the training dataset
    train_split: str
    shots: str
    backbone: str  # "model/pretrained"


@dataclass
class Run:
    path: Path
    protocol: Protocol
    seed: str
    evaluations: list[dict] = field(default_factory=list)


@dataclass
class Collection:
    runs: list[Run]
    warnings: list[str]


def find_run_dirs(paths, *, skip: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(finished run directories, unfinished ones) under `paths`, sorted; a run's own subfolders are not searched."""
    runs: list[Path] = []
    unfinished: list[Path] = []
    skip = skip.resolve() if skip is not None else None
    for p in paths:
        p = Path(p).expanduser()
        if not p.exists():
            raise RobustPromptError(f"report: path not found: {p}")
        if not p.is_dir():
            raise RobustPromptError(f"report: not a directory: {p}")
        for root, dirs, files in os.walk(p):
            here = Path(root)
            if skip is not None and here.resolve() == skip:
                dirs[:] = []
                continue
            if CONFIG in files:
                (runs if RESULTS in files else unfinished).append(here)
                dirs[:] = []  # checkpoint/ and friends belong to the run
                continue
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    dedup = lambda xs: sorted({x.resolve(): x for x in xs}.values(), key=lambda x: str(x))  # noqa: E731
    return dedup(runs), dedup(unfinished)


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise RobustPromptError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RobustPromptError(f"{path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise RobustPromptError(f"{path}: the top level must be a JSON object")
    return data


def _read_config(path: Path) -> dict:
    from ..config import load_yaml

    try:
        return load_yaml(path)
    except RobustPromptError:
        return {}


def _check_record(r, i: int, path: Path) -> dict:
    where = f"{path}: evaluations[{i}]"
    if not isinstance(r, dict):
        raise RobustPromptError(f"{where} is not an object")
    for key in ("dataset", "split", "metric", "value"):
        if key not in r:
            raise RobustPromptError(f"{where} has no {key!r}")
    v = r["value"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
        raise RobustPromptError(f"{where} has value {v!r}; expected an accuracy in [0, 1]")
    if r["split"] not in SPLITS:
        raise RobustPromptError(f"{where} has split {r['split']!r}; expected one of {', '.join(SPLITS)}")
    return r


def read_run(path: Path) -> Run:
    results = _read_json(path / RESULTS)
    version = results.get("schema_version", SUPPORTED_SCHEMA)
    if not isinstance(version, int) or version > SUPPORTED_SCHEMA:
        raise RobustPromptError(f"{path / RESULTS} has schema_version {version!r}; this robustprompt reads "
                                f"up to {SUPPORTED_SCHEMA} (upgrade robustprompt)")
    info = results.get("run") if isinstance(results.get("run"), dict) else {}
    cfg = _read_config(path / CONFIG)
    data_cfg = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    model_cfg = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    backbone = results.get("backbone") if isinstance(results.get("backbone"), dict) else {}
    method = info.get("label") or info.get("method", cfg.get("label") or cfg.get("method"))
    dataset = info.get("dataset", data_cfg.get("dataset"))
    if not method or not dataset:
        raise RobustPromptError(f"{path / RESULTS} does not say which method and dataset it holds "
                                "(no 'run' section and no usable config.yaml)")
    model = backbone.get("model", model_cfg.get("name"))
    pretrained = backbone.get("pretrained", model_cfg.get("pretrained"))
    label = info.get("label") or cfg.get("label") or method  # a preset's name (advivlp) for a shared method (ivlp)
    protocol = Protocol(
        method=str(label),
        dataset=str(dataset),
        train_split=str(info.get("train_split", data_cfg.get("split", "?"))),
        shots=str(info.get("shots", data_cfg.get("shots", "?"))),
        backbone=f"{model or '?'}/{pretrained or 'default'}",
    )
    evaluations = results.get("evaluations", [])
    if not isinstance(evaluations, list):
        raise RobustPromptError(f"{path / RESULTS}: 'evaluations' must be a list")
    records = [_check_record(r, i, path / RESULTS) for i, r in enumerate(evaluations)]
    seed = info.get("seed", cfg.get("seed", "?"))
    return Run(path=path, protocol=protocol, seed=str(seed), evaluations=records)


def collect(paths, *, skip: Path | None = None) -> Collection:
    """Every finished run under `paths`; an empty result is an error."""
    paths = list(paths)
    if not paths:
        raise RobustPromptError("report: give at least one directory")
    found, unfinished = find_run_dirs(paths, skip=skip)
    warnings = [f"skipped unfinished run (no {RESULTS}): {p}" for p in unfinished]
    if not found:
        where = ", ".join(str(p) for p in paths)
        extra = f" ({len(unfinished)} unfinished)" if unfinished else ""
        raise RobustPromptError(f"report: no run directories (config.yaml + results.json) under {where}{extra}")
    runs = [read_run(p) for p in found]
    seen: dict[tuple, Path] = {}
    for r in runs:
        key = (r.protocol, r.seed)
        if key in seen:
            warnings.append(f"{r.path} repeats seed {r.seed} of {seen[key]} (same method, dataset and "
                            "protocol); both are counted")
        else:
            seen[key] = r.path
    return Collection(runs=runs, warnings=warnings)
