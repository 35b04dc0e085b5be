"""Dataset registry: `@register_dataset(name)` on a builder `fn(root) -> DatasetSplits`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DataError
from .base import DatasetSplits


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    builder: Callable[[Path | None], DatasetSplits]
    needs_root: bool
    description: str
    eval_only: bool = False  # the builder takes `eval_only=True`: a tree used only for testing is all test


_DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, *, needs_root: bool = True, description: str = "", eval_only: bool = False):
    def deco(fn):
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} registered twice")
        _DATASETS[name] = DatasetEntry(name, fn, needs_root, description or (fn.__doc__ or "").strip().split("\n")[0],
                                       eval_only)
        return fn

    return deco


def list_datasets() -> list[str]:
    _import_builtin()
    return sorted(_DATASETS)


def dataset_entry(name: str) -> DatasetEntry:
    _import_builtin()
    if name not in _DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(_DATASETS))}")
    return _DATASETS[name]


_BUILTIN_MODULES = ["imagefolder", "benchmarks", "testbeds", "emoji_suite"]


def _import_builtin() -> None:
    # Builders register themselves on import.
    import importlib

    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as e:  # a builder module not written yet; anything else is a bug
            if e.name != f"{__package__}.{mod}":
                raise
