"""Split files and the checks every reader shares.

The split file format is the field's (CoOp's `split_zhou_<Dataset>.json`)::

    {"train": [[relative_path, label, classname], ...], "val": [...], "test": [...]}

Paths are relative to a prefix folder that each reader knows (e.g. `eurosat/2750`). Every reader
turns its raw records (absolute path, label, raw class name) into a `DatasetSplits` through
`assemble`, which enforces the same rules everywhere:

- labels are integers that run 0..n-1 with no gap;
- one label has one class name (else: "label/classname mismatch") and one class name has one
  label (else: "duplicate class name");
- class names are cleaned (`clean_classname`: "_" -> " ", spaces collapsed) and must stay unique;
- every image that a split names exists on disk (checked with one directory listing per folder).
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..errors import DataError
from .base import DEFAULT_TEMPLATE, DatasetSplits, Datum

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

# Files read as images in folder trees. Hidden files (".DS_Store", "._x.jpg") are always skipped;
# any other file with another extension inside a class folder is an error.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)

DOCS_HINT = "see DATASETS.md"

# Record = (absolute image path, label, raw class name).
Record = tuple[str, int, str]


def clean_classname(name: str) -> str:
    """The field's class-name cleaning: underscores become spaces, runs of spaces collapse."""
    return " ".join(str(name).replace("_", " ").split())


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def check_unique_classnames(classnames: Sequence[str], source: str) -> None:
    seen: dict[str, int] = {}
    for label, name in enumerate(classnames):
        if name in seen:
            raise DataError(f"{source}: duplicate class name {name!r} (labels {seen[name]} and {label})")
        seen[name] = label


def check_images_exist(records: Iterable[tuple[str, str]], source: str) -> None:
    """records: (absolute path, where it is listed, e.g. "train entry 'a/b.jpg'").

    One `listdir` per folder rather than a stat per file, so 100k-image splits check quickly.
    """
    by_dir: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for rec in records:
        by_dir[os.path.dirname(rec[0])].append(rec)
    missing: list[tuple[str, str]] = []
    for folder, recs in by_dir.items():
        try:
            present = set(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            present = set()
        missing.extend(r for r in recs if os.path.basename(r[0]) not in present)
    if missing:
        path, where = missing[0]
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise DataError(f"{source}: {where}: image not found: {path}{more}")


def assemble(
    name: str,
    records: Mapping[str, Sequence[Record]],
    source: str,
    *,
    templates: Sequence[str] | None = None,
    rename: Mapping[str, str] | None = None,
    classnames: Sequence[str] | None = None,
    allow_duplicate_names: bool = False,
) -> DatasetSplits:
    """Validate labels and class names across all splits and build a `DatasetSplits`.

    `rename` maps raw class names to the field's names before cleaning (e.g. Caltech101's
    "airplanes" -> "airplane", or an ImageNet wnid -> its name); names not in it are only
    cleaned. `classnames` (raw, index = label) fixes the class list when a reader knows it from
    its own file (FGVCAircraft's variants.txt); a class may then have no image.
    `allow_duplicate_names` is for readers whose classes are keyed by an id (ImageNet's wnids):
    two ids with one name are then kept, with a warning, instead of being an error.
    """
    lab2name: dict[int, str] = {}
    name2lab: dict[str, int] = {}
    if classnames is not None:
        for label, raw in enumerate(classnames):
            if raw in name2lab:
                raise DataError(f"{source}: duplicate class name {raw!r} (labels {name2lab[raw]} and {label})")
            lab2name[label], name2lab[raw] = raw, label
    for split in SPLITS:
        for path, label, raw in records.get(split, ()):
            if isinstance(label, bool) or not isinstance(label, int) or label < 0:
                raise DataError(f"{source}: {split} entry {path!r} has label {label!r}; labels are integers >= 0")
            if classnames is not None and label >= len(classnames):
                raise DataError(f"{source}: {split} entry {path!r} has label {label}; there are {len(classnames)} classes")
            known = lab2name.setdefault(label, raw)
            if known != raw:
                raise DataError(
                    f"{source}: label/classname mismatch: label {label} is named both {known!r} and {raw!r}"
                )
            other = name2lab.setdefault(raw, label)
            if other != label:
                raise DataError(f"{source}: duplicate class name {raw!r} (labels {other} and {label})")
    if not lab2name:
        raise DataError(f"{source}: no images listed")
    n = max(lab2name) + 1
    gaps = [y for y in range(n) if y not in lab2name]
    if gaps:
        raise DataError(f"{source}: labels must run 0..{n - 1} without gaps; label {gaps[0]} has no entries")
    rename = rename or {}
    classnames = [clean_classname(rename.get(lab2name[y], lab2name[y])) for y in range(n)]
    if any(not c for c in classnames):
        raise DataError(f"{source}: label {classnames.index('')} has an empty class name")
    if allow_duplicate_names:
        try:
            check_unique_classnames(classnames, source)
        except DataError as e:
            log.warning("%s (kept: the classes are told apart by their ids)", e)
    else:
        check_unique_classnames(classnames, source)
    splits = {
        split: [Datum(path, label, classnames[label]) for path, label, _ in records.get(split, ())]
        for split in SPLITS
    }
    return DatasetSplits(
        name=name,
        classnames=classnames,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        templates=list(templates or [DEFAULT_TEMPLATE]),
    )


def read_split_json(
    path: str | Path,
    prefix: str | Path,
    *,
    name: str,
    templates: Sequence[str] | None = None,
    rename: Mapping[str, str] | None = None,
    hint: str = DOCS_HINT,
    check_images: bool = True,
) -> DatasetSplits:
    """Read a split file (`{"train"|"val"|"test": [[relpath, label, classname], ...]}`).

    Relative paths are joined to `prefix`; absolute paths are kept. A missing file names the
    path it looked for and `hint` (where to get it).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"split file not found: {path} ({hint}; or write one with `robustprompt make-splits`)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"split file is not valid JSON: {path} (line {e.lineno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"split file is not UTF-8 JSON: {path}") from None
    if not isinstance(raw, dict) or any(not isinstance(raw.get(s), list) for s in SPLITS):
        raise DataError(f"split file {path} must hold the lists \"train\", \"val\" and \"test\"")
    prefix = os.path.abspath(os.path.expanduser(str(prefix)))
    records: dict[str, list[Record]] = {}
    written: list[tuple[str, str]] = []
    for split in SPLITS:
        out = []
        for i, entry in enumerate(raw[split]):
            if (
                not isinstance(entry, (list, tuple))
                or len(entry) != 3
                or not isinstance(entry[0], str)
                or not isinstance(entry[2], str)
            ):
                raise DataError(
                    f"{path}: {split} entry {i} is not [relative_path, label, classname]: {str(entry)[:80]}"
                )
            rel, label, cname = entry
            abspath = os.path.normpath(os.path.join(prefix, rel))
            out.append((abspath, label, cname))
            written.append((abspath, f"{split} entry {rel!r}"))
        records[split] = out
    ds = assemble(name, records, str(path), templates=templates, rename=rename)
    if check_images:
        check_images_exist(written, str(path))
    return ds


def split_to_json(ds: DatasetSplits, prefix: str | Path) -> dict[str, list[list]]:
    """The split-file dict of `ds`, paths relative to `prefix` where they lie under it."""
    prefix = os.path.abspath(os.path.expanduser(str(prefix)))

    def rel(p: str) -> str:
        r = os.path.relpath(p, prefix)
        return p if r.startswith("..") else r.replace(os.sep, "/")

    out = {}
    for split in SPLITS:
        items = getattr(ds, split)
        if any(not d.path for d in items):
            raise DataError(f"dataset {ds.name!r} holds in-memory images; it cannot be written as a split file")
        out[split] = [[rel(d.path), d.label, d.classname] for d in items]
    return out


def dumps_lists(obj: Mapping) -> str:
    """JSON of a flat dict, with lists of entries written one entry per line (diff-friendly)."""
    parts = []
    for key, value in obj.items():
        if isinstance(value, list) and value and all(isinstance(v, (list, tuple)) for v in value):
            inner = ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in value)
            parts.append(f"  {json.dumps(key)}: [\n{inner}\n  ]")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def write_json_atomic(path: str | Path, obj: Mapping) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    from ..atomic import atomic_write_text

    atomic_write_text(path, dumps_lists(obj))


def write_split_json(path: str | Path, ds: DatasetSplits, prefix: str | Path) -> Path:
    """Write `ds` as a split file with paths relative to `prefix`; `read_split_json` reads it back."""
    write_json_atomic(path, split_to_json(ds, prefix))
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Seeded per-class splitting (ImageFolder trees without train/ val/ test/, make-splits, CSV)
# ---------------------------------------------------------------------------------------------

DEFAULT_SPLIT_SEED = 1
DEFAULT_TRAIN_FRAC = 0.5
DEFAULT_VAL_FRAC = 0.2


def check_fractions(train_frac: float, val_frac: float) -> None:
    if not (0 < train_frac <= 1) or not (0 <= val_frac < 1) or train_frac + val_frac > 1 + 1e-9:
        raise DataError(
            f"split fractions must satisfy 0 < train <= 1, 0 <= val, train + val <= 1 "
            f"(got train {train_frac}, val {val_frac})"
        )


def split_counts(n: int, train_frac: float, val_frac: float) -> tuple[int, int, int]:
    """(train, val, test) sizes for a class of n images.

    val = round(n * val_frac) and test = round(n * (1 - train_frac - val_frac)), each at least 1
    when its fraction is above 0; train gets the rest and must keep at least 1 image.
    """
    test_frac = max(0.0, round(1.0 - train_frac - val_frac, 9))  # 1 - 0.5 - 0.2 is 0.30000000000000004
    n_val = max(1, round(n * val_frac)) if val_frac > 1e-9 else 0
    n_test = max(1, round(n * test_frac)) if test_frac > 1e-9 else 0
    return n - n_val - n_test, n_val, n_test


def split_per_class(
    groups: Sequence[tuple[int, str, Sequence[str]]],
    *,
    seed: int = DEFAULT_SPLIT_SEED,
    train_frac: float = DEFAULT_TRAIN_FRAC,
    val_frac: float = DEFAULT_VAL_FRAC,
    source: str = "",
) -> dict[str, list[Record]]:
    """Split each class's images (sorted paths) into train / val / test with `random.Random(seed)`.

    groups: (label, raw class name, image paths) in label order. The paths of each class are
    sorted, shuffled by one RNG shared across classes in label order, then cut by `split_counts`.
    """
    check_fractions(train_frac, val_frac)
    rng = random.Random(seed)
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for label, raw, paths in groups:
        paths = sorted(paths)
        n_train, n_val, n_test = split_counts(len(paths), train_frac, val_frac)
        if n_train < 1:
            need = len(paths) - n_train + 1
            raise DataError(
                f"{source}class {raw!r} has {len(paths)} images; splitting it into train/val/test "
                f"needs at least {need}"
            )
        rng.shuffle(paths)
        parts = {
            "train": paths[:n_train],
            "val": paths[n_train : n_train + n_val],
            "test": paths[n_train + n_val :],
        }
        for split in SPLITS:
            out[split].extend((p, label, raw) for p in sorted(parts[split]))
    return out
