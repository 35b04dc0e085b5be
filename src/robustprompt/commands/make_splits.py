"""`robustprompt make-splits`: write a split file (CoOp's split_zhou format) for an ImageFolder tree."""

from __future__ import annotations

from pathlib import Path

from ._common import formatter

EPILOG = """\
The tree holds one sub-folder of images per class (or train/ [val/ test/] sub-folders, kept as
they are). Each class is split by its own share: val = round(n * VAL_FRAC) and
test = round(n * (1 - TRAIN_FRAC - VAL_FRAC)), each at least 1, train the rest; the sorted file
names are shuffled with random.Random(SEED). Paths in the file are relative to TREE.

examples:
  robustprompt make-splits ~/data/my_birds                       # writes ~/data/my_birds/split.json
  robustprompt train --dataset imagefolder --data-root ~/data/my_birds ...
  robustprompt make-splits ~/data/dtd/images --out ~/data/dtd/split_zhou_DescribableTextures.json
  robustprompt make-splits ~/data/caltech-101/101_ObjectCategories \\
      --ignore BACKGROUND_Google --ignore Faces_easy --out ~/data/caltech-101/split_zhou_Caltech101.json
"""


def register(sub) -> None:
    p = sub.add_parser(
        "make-splits",
        help="write a seeded train/val/test split file for an ImageFolder tree",
        description="Write a train/val/test split file ({\"train\": [[relative_path, label, classname], ...], "
        "\"val\": ..., \"test\": ...}) for a folder-per-class image tree. The benchmark readers and "
        "`--dataset imagefolder` read it.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    p.add_argument("tree", help="folder with one sub-folder of images per class")
    p.add_argument("--out", help="split file to write (default: TREE/split.json)")
    p.add_argument("--seed", type=int, default=1, help="seed of the shuffle (default: 1)")
    p.add_argument("--train-frac", type=float, default=0.5, metavar="F", help="train share per class (default: 0.5)")
    p.add_argument("--val-frac", type=float, default=0.2, metavar="F", help="val share per class (default: 0.2); test gets the rest")
    p.add_argument("--ignore", action="append", default=[], metavar="NAME", help="class folder to leave out (repeatable)")
    p.add_argument("--force", action="store_true", help="overwrite an existing split file")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.imagefolder import make_split
    from ..data.splits import write_split_json
    from ..errors import DataError

    tree = Path(args.tree).expanduser().absolute()
    out = Path(args.out).expanduser().absolute() if args.out else tree / "split.json"
    if out.exists() and not args.force:
        raise DataError(f"split file exists: {out} (use --force to overwrite)")
    ds = make_split(tree, seed=args.seed, train_frac=args.train_frac, val_frac=args.val_frac, ignore=args.ignore)
    write_split_json(out, ds, tree)
    print(
        f"wrote {out}: {ds.num_classes} classes, {len(ds.train)} train / {len(ds.val)} val / "
        f"{len(ds.test)} test images (seed {args.seed})"
    )
    return 0
