"""Miniature dataset trees for the data tests (tiny generated images, a few per class).

Imported by the other test_data_*.py files; it holds no tests itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COUNTS = {"train": 3, "val": 2, "test": 2}


def make_image(path: Path, color: tuple[int, int, int] = (0, 0, 0), size: tuple[int, int] = (4, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def color_for(label: int, i: int) -> tuple[int, int, int]:
    return (40 * label % 256, 30 * i % 256, 128)


def zhou_tree(
    ddir: Path,
    image_sub: str,
    split_file: str,
    classes: list[str],
    rel_of,
    counts: dict[str, int] = COUNTS,
) -> dict:
    """Images under ddir/image_sub and a split_zhou file listing them; rel_of(label, raw, split, i) -> relpath."""
    prefix = ddir / image_sub if image_sub else ddir
    split = {}
    for s, n in counts.items():
        entries = []
        for label, raw in enumerate(classes):
            for i in range(n):
                rel = rel_of(label, raw, s, i)
                make_image(prefix / rel, color_for(label, i))
                entries.append([rel, label, raw])
        split[s] = entries
    ddir.mkdir(parents=True, exist_ok=True)
    (ddir / split_file).write_text(json.dumps(split))
    return split


def image_tree(tree: Path, per_class: dict[str, int], ext: str = ".jpg") -> dict[str, list[Path]]:
    """tree/<class>/img_<i><ext> for each class."""
    out = {}
    for label, (cls, n) in enumerate(per_class.items()):
        out[cls] = [make_image(tree / cls / f"img_{i:02d}{ext}", color_for(label, i)) for i in range(n)]
    return out


WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]
WNID_NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark"]


def write_imagenet_classnames(path: Path, wnids=WNIDS, names=WNID_NAMES) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{w} {n}\n" for w, n in zip(wnids, names)))
