"""The user's own data: an ImageFolder tree ("imagefolder") or a CSV list ("csv").

ImageFolder (`--dataset imagefolder --data-root TREE`), first rule that applies:

1. TREE is a `.json` file: a split file (CoOp format), paths relative to the file's folder.
2. TREE/split.json exists (what `robustprompt make-splits TREE` writes): it is used.
3. TREE/train/ exists: one sub-folder per class in train/ (labels = sorted folder names);
   val/ and test/ are optional and may only hold classes that train/ has. Without val/, 20% of
   each training class (at least one image) is moved to val with `random.Random(1)`; without
   test/, test = val (as the field does for ImageNet).
4. Otherwise TREE holds one sub-folder per class and each class is split 50% train / 20% val /
   30% test: sorted file names, shuffled by `random.Random(1)` (one RNG, classes in label order),
   val = round(0.2 n) and test = round(0.3 n), each at least 1, train the rest (so every class
   needs at least 3 images). A tree used only to test a trained run (`eval RUN --dataset
   imagefolder --data-root TREE`, not the run's own data) is all test: one image per class is enough.

In every class folder (searched recursively) hidden files are skipped and image files
(`IMAGE_EXTENSIONS`) are read; any other file is an error that names it, and so is a class folder
with no image. Files at the top of the tree (README.txt, split.json) are ignored.

CSV (`--dataset csv --data-root FILE_OR_DIR`): rows `path,label[,classname]` (a header row naming
the columns `path,label[,classname][,split]` is optional), paths relative to the CSV's folder.
A folder may hold train.csv (+ val.csv, test.csv, same rules as train/ val/ test/ above) or one
single .csv; a single CSV with a `split` column is split by it, one without is split like rule 4.
Class names come from the classname column or from classnames.txt beside the CSV (line i =
label i).
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from .base import DatasetSplits
from .registry import register_dataset
from .splits import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TRAIN_FRAC,
    DEFAULT_VAL_FRAC,
    IMAGE_EXTENSIONS,
    SPLITS,
    Record,
    assemble,
    check_images_exist,
    is_hidden,
    is_image_file,
    read_split_json,
    split_per_class,
)

SPLIT_FILE = "split.json"  # the split file an ImageFolder tree may hold (make-splits' default output)
CLASSNAMES_FILE = "classnames.txt"


def require_root(root: str | Path | None, dataset: str) -> Path:
    """The data root as an absolute Path; a missing one is a DataError naming it."""
    if root is None or str(root) == "":
        raise DataError(f"dataset {dataset!r} needs a data root (--data-root DIR)")
    p = Path(os.path.abspath(os.path.expanduser(str(root))))
    if not p.exists():
        raise DataError(f"data root does not exist: {p}")
    return p


def list_images(folder: str | Path) -> list[str]:
    """Sorted absolute paths of the images under `folder` (recursive, hidden entries skipped).

    A non-image file is a DataError that names it; so is a folder with no image.
    """
    folder = str(folder)
    images: list[str] = []
    other: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for f in sorted(filenames):
            if is_hidden(f):
                continue
            (images if is_image_file(f) else other).append(os.path.join(dirpath, f))
    if other:
        more = f" (and {len(other) - 1} more)" if len(other) > 1 else ""
        exts = " ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(
            f"non-image file in class folder: {other[0]}{more}; remove or move it (images are: {exts})"
        )
    if not images:
        raise DataError(f"class folder has no images: {folder}")
    return sorted(images)


def class_folders(tree: str | Path, ignore: Sequence[str] = ()) -> list[str]:
    """Sorted names of the class folders of `tree` (non-hidden sub-folders not in `ignore`)."""
    tree = Path(tree)
    if not tree.is_dir():
        raise DataError(f"image folder does not exist or is not a directory: {tree}")
    names = sorted(e.name for e in os.scandir(tree) if e.is_dir() and not is_hidden(e.name) and e.name not in ignore)
    if not names:
        raise DataError(f"no class folders in {tree} (expected one sub-folder of images per class; see DATASETS.md)")
    return names


def scan_tree(tree: str | Path, ignore: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """[(class folder name, sorted image paths)] in sorted folder order."""
    tree = Path(tree)
    return [(name, list_images(tree / name)) for name in class_folders(tree, ignore)]


def complete_splits(
    records: dict[str, list[Record]],
    *,
    seed: int = DEFAULT_SPLIT_SEED,
    val_frac: float = DEFAULT_VAL_FRAC,
    source: str = "",
) -> dict[str, list[Record]]:
    """Fill in what an explicit layout lacks: val carved from train (seeded), test = val."""
    records = dict(records)
    if "val" not in records:
        groups: dict[int, list[str]] = defaultdict(list)
        names: dict[int, str] = {}
        for path, label, raw in records["train"]:
            groups[label].append(path)
            names[label] = raw
        carved = split_per_class(
            [(y, names[y], groups[y]) for y in sorted(groups)],
            seed=seed,
            train_frac=1.0 - val_frac,
            val_frac=val_frac,
            source=f"{source}: carving val from train: ",
        )
        records["train"], records["val"] = carved["train"], carved["val"]
    if "test" not in records:
        records["test"] = list(records["val"])
    return records


def make_split(
    tree: str | Path,
    *,
    seed: int = DEFAULT_SPLIT_SEED,
    train_frac: float = DEFAULT_TRAIN_FRAC,
    val_frac: float = DEFAULT_VAL_FRAC,
    ignore: Sequence[str] = (),
    name: str = "imagefolder",
    eval_only: bool = False,
) -> DatasetSplits:
    """Read an ImageFolder tree into train / val / test (rules 3 and 4 of this module's doc)."""
    tree = Path(os.path.abspath(os.path.expanduser(str(tree))))
    if not tree.is_dir():
        raise DataError(f"image folder does not exist or is not a directory: {tree}")
    if (tree / "train").is_dir():
        train = scan_tree(tree / "train", ignore)
        labels = {raw: y for y, (raw, _) in enumerate(train)}
        records: dict[str, list[Record]] = {
            "train": [(p, y, raw) for y, (raw, paths) in enumerate(train) for p in paths]
        }
        for split in ("val", "test"):
            if (tree / split).is_dir():
                recs: list[Record] = []
                for raw, paths in scan_tree(tree / split, ignore):
                    if raw not in labels:
                        raise DataError(f"class folder {tree / split / raw} has no counterpart in {tree / 'train'}")
                    recs.extend((p, labels[raw], raw) for p in paths)
                records[split] = recs
        records = complete_splits(records, seed=seed, val_frac=val_frac, source=str(tree))
    elif eval_only:
        records = {"test": [(p, y, raw) for y, (raw, paths) in enumerate(scan_tree(tree, ignore)) for p in paths]}
    else:
        groups = [(y, raw, paths) for y, (raw, paths) in enumerate(scan_tree(tree, ignore))]
        records = split_per_class(
            groups, seed=seed, train_frac=train_frac, val_frac=val_frac, source=f"{tree}: "
        )
    return assemble(name, records, str(tree))


@register_dataset(
    "imagefolder",
    description="your own images, one folder per class (train/ val/ test/ optional); root = the tree or a split .json",
    eval_only=True,
)
def build_imagefolder(root: Path, eval_only: bool = False) -> DatasetSplits:
    root = require_root(root, "imagefolder")
    if root.is_file():
        if root.suffix.lower() != ".json":
            raise DataError(f"imagefolder: {root} is a file; give the folder of the tree or a split .json")
        return read_split_json(root, root.parent, name="imagefolder")
    if (root / SPLIT_FILE).is_file():
        return read_split_json(root / SPLIT_FILE, root, name="imagefolder")
    return make_split(root, eval_only=eval_only)


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------

_Row = tuple[str, int, "str | None", "str | None", int]  # path, label, classname, split, line


def _read_csv_rows(path: Path) -> list[_Row]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(i, r) for i, r in enumerate(csv.reader(f), 1) if any(c.strip() for c in r)]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    if not rows:
        raise DataError(f"{path}: the CSV has no rows")
    header = [c.strip().lower() for c in rows[0][1]]
    if "path" in header and "label" in header:
        cols = {k: header.index(k) for k in ("path", "label", "classname", "split") if k in header}
        rows = rows[1:]
    else:
        cols = {"path": 0, "label": 1, "classname": 2}
    base = path.parent
    out: list[_Row] = []
    for lineno, r in rows:
        cells = [c.strip() for c in r]
        try:
            rel = cells[cols["path"]]
            label = int(cells[cols["label"]])
        except (IndexError, ValueError):
            raise DataError(
                f"{path}:{lineno}: expected path,label[,classname] with an integer label, got {','.join(r)[:80]!r}"
            ) from None
        if not rel:
            raise DataError(f"{path}:{lineno}: empty path")
        ci = cols.get("classname")
        cname = cells[ci] if ci is not None and ci < len(cells) and cells[ci] else None
        si = cols.get("split")
        split = None
        if si is not None:
            split = cells[si].lower() if si < len(cells) else ""
            if split not in SPLITS:
                raise DataError(f"{path}:{lineno}: split must be train, val or test, got {split!r}")
        out.append((os.path.normpath(os.path.join(base, rel)), label, cname, split, lineno))
    if not out:
        raise DataError(f"{path}: the CSV has a header but no rows")
    return out


def _read_classnames_txt(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def _name_rows(rows: list[_Row], names: list[str] | None, source: Path) -> list[tuple[str, int, str, str | None, int]]:
    out = []
    for path, label, cname, split, lineno in rows:
        if names is not None:
            if label < 0 or label >= len(names):
                raise DataError(f"{source}:{lineno}: label {label} has no line in {CLASSNAMES_FILE} ({len(names)} names)")
            if cname is not None and cname != names[label]:
                raise DataError(
                    f"{source}:{lineno}: label/classname mismatch: label {label} is {names[label]!r} in "
                    f"{CLASSNAMES_FILE} but {cname!r} here"
                )
            cname = names[label]
        elif cname is None:
            raise DataError(
                f"{source}:{lineno}: no class name for label {label}; add a classname column or a "
                f"{CLASSNAMES_FILE} beside the CSV (line i = name of label i)"
            )
        out.append((path, label, cname, split, lineno))
    return out


@register_dataset(
    "csv",
    description="your own image list: path,label[,classname][,split] rows; root = the .csv or a folder with train.csv",
    eval_only=True,
)
def build_csv(root: Path, eval_only: bool = False) -> DatasetSplits:
    root = require_root(root, "csv")
    if root.is_dir():
        if (root / "train.csv").is_file():
            files = {s: root / f"{s}.csv" for s in SPLITS if (root / f"{s}.csv").is_file()}
        else:
            found = sorted(p for p in root.glob("*.csv") if not is_hidden(p.name))
            if len(found) != 1:
                what = "no .csv file" if not found else f"{len(found)} .csv files and no train.csv"
                raise DataError(f"csv: {root} holds {what}; give the CSV file itself, or name them train.csv, val.csv, test.csv")
            files = {None: found[0]}
    else:
        files = {None: root}
    first = next(iter(files.values()))
    names = _read_classnames_txt(first.parent / CLASSNAMES_FILE)
    records: dict[str, list[Record]] = {}
    written: list[tuple[str, str]] = []
    if None not in files:
        for split, f in files.items():
            rows = _name_rows(_read_csv_rows(f), names, f)
            records[split] = [(p, y, c) for p, y, c, _, _ in rows]
            written += [(p, f"{f.name} line {n}") for p, _, _, _, n in rows]
        source = str(root)
        records = complete_splits(records, source=source)
    else:
        f = files[None]
        source = str(f)
        rows = _name_rows(_read_csv_rows(f), names, f)
        written += [(p, f"line {n}") for p, _, _, _, n in rows]
        if any(s is not None for _, _, _, s, _ in rows):
            for split in SPLITS:
                records[split] = [(p, y, c) for p, y, c, s, _ in rows if s == split]
            if not records["train"]:
                raise DataError(f"{f}: no row has split 'train'")
        elif eval_only:
            records = {"test": [(p, y, c) for p, y, c, _, _ in rows]}
        else:
            # Validate labels and names first, so the split below sees consistent classes.
            assemble("csv", {"train": [(p, y, c) for p, y, c, _, _ in rows]}, source)
            groups: dict[int, list[str]] = defaultdict(list)
            lab2name: dict[int, str] = {}
            for p, y, c, _, _ in rows:
                groups[y].append(p)
                lab2name[y] = c
            records = split_per_class([(y, lab2name[y], groups[y]) for y in sorted(groups)], source=f"{f}: ")
    ds = assemble("csv", records, source)
    check_images_exist(written, source)
    return ds
