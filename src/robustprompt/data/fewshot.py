"""Few-shot sampling, base/novel classes, and `prepare_dataset`, the one call the engine makes.

Rules (the field's protocol, METHODS.md):

- K shots per class from train, with its own `random.Random(seed)` (never the global RNG):
  classes in label order, each class's images in the reader's order, `rng.sample(class, K)`.
  Validation takes min(K, 4) per class from val the same way (its own `random.Random(seed)`).
  Test is never sampled. K <= 0 means every train and val image.
- **A class with fewer than K train images is an error** (DataError naming the class, how many it
  has and K): the field's code silently took all images of such a class; an error keeps "K-shot"
  meaning K. Val is not: a class with fewer than min(K, 4) val images keeps all of them, as the
  field's code does (the engine trains on the last epoch and never reads val; emoji-world has 2 val
  images per class).
- Sampling happens on all classes, then classes are subsampled, as the field does: the base
  training set of seed S is the "all" training set of seed S restricted to the base classes.
- Base / novel: classes sorted by label; base = the first ceil(n/2), novel = the rest, each
  relabelled from 0; class names follow.
- Evaluation-only datasets (ImageNet-V2/-Sketch/-A/-R: no train split) are returned unsampled.
- With `cache_dir`, the sampled train/val lists are kept as
  `cache_dir/<dataset>/shot_<K>-seed_<S>.json` with paths relative to the data root, plus a
  fingerprint of the full train/val lists; a cache that does not match the data is resampled
  (sampling is deterministic, so the cache is a record, never a different answer).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from .base import DatasetSplits, Datum
from .registry import dataset_entry
from .splits import write_json_atomic

log = logging.getLogger(__name__)

CLASS_SUBSETS = ("all", "base", "novel")
VAL_SHOTS_MAX = 4
CACHE_FORMAT = "robustprompt-fewshot/1"


def _check_subset(which: str) -> str:
    which = "novel" if which == "new" else which  # "new" is the field's older name for novel
    if which not in CLASS_SUBSETS:
        raise DataError(f"class split must be one of {', '.join(CLASS_SUBSETS)}, got {which!r}")
    return which


def base_novel_labels(n: int) -> tuple[list[int], list[int]]:
    """(base labels, novel labels) of n classes: base = the first ceil(n/2)."""
    m = math.ceil(n / 2)
    return list(range(m)), list(range(m, n))


def subsample_classes(ds: DatasetSplits, which: str) -> DatasetSplits:
    """Keep the base, novel or all classes of `ds`, relabelled from 0 (train, val and test)."""
    which = _check_subset(which)
    if which == "all":
        return ds
    base, novel = base_novel_labels(ds.num_classes)
    keep = base if which == "base" else novel
    if not keep:
        raise DataError(f"dataset {ds.name!r} has {ds.num_classes} class(es): no {which} classes")
    relabel = {y: i for i, y in enumerate(keep)}
    names = [ds.classnames[y] for y in keep]

    def sub(items: Sequence[Datum]) -> list[Datum]:
        return [replace(d, label=relabel[d.label]) for d in items if d.label in relabel]

    return replace(ds, classnames=names, train=sub(ds.train), val=sub(ds.val), test=sub(ds.test))


def few_shot(
    items: Sequence[Datum],
    k: int,
    seed: int,
    *,
    what: str = "train",
    classnames: Sequence[str] | None = None,
    at_most: bool = False,
) -> list[Datum]:
    """K items per label, sampled with `random.Random(seed)`; k <= 0 returns all items.

    Output: classes in label order, each class's picks in their input order. A class with fewer
    than k items is a DataError (with `at_most`, it keeps all its items); with `classnames`, so is
    a class that has no item at all.
    """
    if k <= 0:
        return list(items)
    groups: dict[int, list[tuple[int, Datum]]] = defaultdict(list)
    for i, d in enumerate(items):
        groups[d.label].append((i, d))
    labels = sorted(groups) if classnames is None else range(len(classnames))
    rng = random.Random(seed)
    out: list[Datum] = []
    for label in labels:
        group = groups.get(label, [])
        if len(group) < k and not (at_most and group):
            name = classnames[label] if classnames is not None else group[0][1].classname
            have = f"{len(group)} {what} image" + ("" if len(group) == 1 else "s")
            raise DataError(
                f"few-shot: class {name!r} (label {label}) has {have}, fewer than the {k} asked for; "
                f"lower --shots or add images"
            )
        picked = rng.sample(group, min(k, len(group)))
        out.extend(d for _, d in sorted(picked, key=lambda t: t[0]))
    return out


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def _rel(path: str, base: str) -> str:
    r = os.path.relpath(path, base)
    return path if r.startswith("..") else r.replace(os.sep, "/")


def _fingerprint(ds: DatasetSplits, base: str) -> str:
    h = hashlib.sha256()
    h.update("\n".join(ds.classnames).encode())
    for split in ("train", "val"):
        h.update(f"\0{split}\0".encode())
        for d in getattr(ds, split):
            h.update(f"{_rel(d.path, base)}\t{d.label}\n".encode())
    return h.hexdigest()


def fewshot_cache_path(cache_dir: str | Path, name: str, shots: int, seed: int) -> Path:
    return Path(cache_dir).expanduser() / name / f"shot_{shots}-seed_{seed}.json"


def _load_cache(path: Path, ds: DatasetSplits, base: str, fingerprint: str) -> tuple[list, list] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") != CACHE_FORMAT or data.get("fingerprint") != fingerprint:
            return None
        by_path = {_rel(d.path, base): d for d in (*ds.train, *ds.val)}
        out = []
        for split in ("train", "val"):
            items = []
            for rel, label, _ in data[split]:
                d = by_path.get(rel)
                if d is None or d.label != label:
                    return None
                items.append(d)
            out.append(items)
        return out[0], out[1]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def sample_shots(ds: DatasetSplits, shots: int, seed: int) -> DatasetSplits:
    train = few_shot(ds.train, shots, seed, what="train", classnames=ds.classnames)
    val = few_shot(ds.val, min(shots, VAL_SHOTS_MAX), seed, what="val", classnames=ds.classnames,
                   at_most=True) if ds.val else []
    return ds.with_splits(train=train, val=val)


def _sample_cached(
    ds: DatasetSplits, name: str, root: Path | None, shots: int, seed: int, cache_dir: str | Path | None
) -> DatasetSplits:
    in_memory = any(not d.path for d in (*ds.train, *ds.val))
    if cache_dir is None or in_memory:
        return sample_shots(ds, shots, seed)
    base = str(root.parent if root is not None and root.is_file() else (root or Path("/")))
    path = fewshot_cache_path(cache_dir, name, shots, seed)
    fingerprint = _fingerprint(ds, base)
    if path.is_file():
        hit = _load_cache(path, ds, base, fingerprint)
        if hit is not None:
            return ds.with_splits(train=hit[0], val=hit[1])
        log.warning("few-shot cache %s does not match the data under %s; sampling again", path, base)
    out = sample_shots(ds, shots, seed)
    record = {
        "format": CACHE_FORMAT,
        "dataset": name,
        "shots": shots,
        "seed": seed,
        "fingerprint": fingerprint,
        "classnames": ds.classnames,
        "train": [[_rel(d.path, base), d.label, d.classname] for d in out.train],
        "val": [[_rel(d.path, base), d.label, d.classname] for d in out.val],
    }
    try:
        write_json_atomic(path, record)
    except OSError as e:
        log.warning("could not write the few-shot cache %s (%s)", path, e)
    return out


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def prepare_dataset(
    name: str,
    root: str | Path | None,
    *,
    shots: int,
    seed: int,
    split: str = "all",
    cache_dir: str | Path | None = None,
    eval_only: bool = False,
) -> DatasetSplits:
    """Build dataset `name` from `root`, take K shots per class (seeded), keep base/novel/all classes.

    name: a registered dataset (`list_datasets()`); root: the data root (the folder holding
    `eurosat/`, `imagenet/`, ...), or for "imagefolder"/"csv" the tree / CSV itself; None for
    datasets that need none. shots: K train images per class (val gets min(K, 4)); <= 0 keeps
    all. seed: the sampling seed. split: "all", "base" or "novel" classes (METHODS.md).
    cache_dir: where to keep the sampled lists as JSON (none when None).
    eval_only: the data is used only for testing (not the data a run trained on): a user's tree
    without its own split is then all test images, so one image per class is enough.
    Every problem with the data is a one-line DataError.
    """
    which = _check_subset(split)
    entry = dataset_entry(name)
    root_path: Path | None = None
    if root is None or str(root) == "":
        if entry.needs_root:
            raise DataError(f"dataset {name!r} needs a data root (--data-root DIR)")
    else:
        root_path = Path(os.path.abspath(os.path.expanduser(str(root))))
        if not root_path.exists():
            raise DataError(f"data root does not exist: {root_path}")
    ds = entry.builder(root_path, eval_only=True) if eval_only and entry.eval_only else entry.builder(root_path)
    if shots > 0 and ds.train:
        ds = _sample_cached(ds, name, root_path, int(shots), int(seed), cache_dir)
    return subsample_classes(ds, which)
