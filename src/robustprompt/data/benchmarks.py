"""The 11 few-shot benchmarks and the 4 ImageNet variants, read in the layout of CoOp's DATASETS.md.

`root` is the data root that holds one folder per dataset (`$DATA/eurosat`, `$DATA/imagenet`,
...). A root that is itself the dataset's folder (its name is the expected folder name) works too.

| name            | folder                    | images                                      | split                              |
|-----------------|---------------------------|---------------------------------------------|------------------------------------|
| imagenet        | imagenet/                 | images/train/<wnid>, images/val/<wnid>      | classnames.txt; test = val         |
| caltech101      | caltech-101/              | 101_ObjectCategories/                       | split_zhou_Caltech101.json         |
| oxford_pets     | oxford_pets/              | images/                                     | split_zhou_OxfordPets.json         |
| stanford_cars   | stanford_cars/            | (paths relative to stanford_cars/)          | split_zhou_StanfordCars.json       |
| oxford_flowers  | oxford_flowers/           | jpg/                                        | split_zhou_OxfordFlowers.json      |
| food101         | food-101/                 | images/                                     | split_zhou_Food101.json            |
| fgvc_aircraft   | fgvc_aircraft/            | images/<id>.jpg                             | variants.txt, images_variant_*.txt |
| sun397          | sun397/                   | SUN397/                                     | split_zhou_SUN397.json             |
| dtd             | dtd/                      | images/                                     | split_zhou_DescribableTextures.json|
| eurosat         | eurosat/                  | 2750/                                       | split_zhou_EuroSAT.json            |
| ucf101          | ucf101/                   | UCF-101-midframes/                          | split_zhou_UCF101.json             |
| imagenetv2      | imagenetv2/               | imagenetv2-matched-frequency-format-val/<i> | classnames.txt (test only)         |
| imagenet_sketch | imagenet-sketch/          | images/<wnid>                               | classnames.txt (test only)         |
| imagenet_a      | imagenet-adversarial/     | imagenet-a/<wnid> (200 classes)             | classnames.txt (test only)         |
| imagenet_r      | imagenet-rendition/       | imagenet-r/<wnid> (200 classes)             | classnames.txt (test only)         |

The ImageNet variants are test sets: their train and val are empty. ImageNet-A and -R are
200-class subsets: labels follow their sorted wnid folders and names come from ImageNet's
classnames.txt ("wnid name" lines; a variant folder without its own copy uses
`$DATA/imagenet/classnames.txt`). Classes of the ImageNet family are wnids, so two wnids that
share a name (CLIP's list names two pairs "missile" and "sunglasses") are kept, with a warning;
everywhere else a duplicate class name is an error.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

from ..errors import DataError
from .base import DatasetSplits
from .imagefolder import class_folders, list_images, require_root
from .registry import register_dataset
from .splits import Record, assemble, check_images_exist, read_split_json

# The field's per-dataset prompt template (CoOp's CUSTOM_TEMPLATES), by registry name.
TEMPLATES: dict[str, str] = {
    "imagenet": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "oxford_pets": "a photo of a {}, a type of pet.",
    "stanford_cars": "a photo of a {}.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "food101": "a photo of {}, a type of food.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "sun397": "a photo of a {}.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenetv2": "a photo of a {}.",
    "imagenet_sketch": "a photo of a {}.",
    "imagenet_a": "a photo of a {}.",
    "imagenet_r": "a photo of a {}.",
}

# The field's class-name fixes (applied before the "_" -> " " cleaning). The published split
# files already carry the new names; applying them again lets a split written by make-splits
# from the raw folders give the same names.
CALTECH101_RENAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}
CALTECH101_IGNORED = ("BACKGROUND_Google", "Faces_easy")  # for make-splits --ignore
EUROSAT_RENAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


def _dataset_dir(root: Path | None, name: str, folder: str, title: str) -> Path:
    root = require_root(root, name)
    if (root / folder).is_dir():
        return root / folder
    if root.name == folder and root.is_dir():
        return root
    raise DataError(f"{title}: folder not found: {root / folder} (lay it out as DATASETS.md, section {title}, shows)")


def _require_dir(path: Path, title: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{title}: image folder not found: {path} (see DATASETS.md, section {title})")
    return path


# ---------------------------------------------------------------------------------------------
# The 10 datasets that come with a split_zhou_*.json
# ---------------------------------------------------------------------------------------------

# name: (title in DATASETS.md, dataset folder, image folder ("" = the dataset folder), split file, renames)
ZHOU_LAYOUTS: dict[str, tuple[str, str, str, str, Mapping[str, str] | None]] = {
    "caltech101": ("Caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", CALTECH101_RENAMES),
    "oxford_pets": ("OxfordPets", "oxford_pets", "images", "split_zhou_OxfordPets.json", None),
    "stanford_cars": ("StanfordCars", "stanford_cars", "", "split_zhou_StanfordCars.json", None),
    "oxford_flowers": ("Flowers102", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json", None),
    "food101": ("Food101", "food-101", "images", "split_zhou_Food101.json", None),
    "sun397": ("SUN397", "sun397", "SUN397", "split_zhou_SUN397.json", None),
    "dtd": ("DTD", "dtd", "images", "split_zhou_DescribableTextures.json", None),
    "eurosat": ("EuroSAT", "eurosat", "2750", "split_zhou_EuroSAT.json", EUROSAT_RENAMES),
    "ucf101": ("UCF101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", None),
}


def read_zhou(name: str, root: Path | None) -> DatasetSplits:
    """Read one of the split-file benchmarks of `ZHOU_LAYOUTS` under the data root."""
    title, folder, image_dir, split_file, renames = ZHOU_LAYOUTS[name]
    ddir = _dataset_dir(root, name, folder, title)
    split_path = ddir / split_file
    hint = f"see DATASETS.md, section {title}, for where to get it"
    if not split_path.is_file():
        raise DataError(f"{title}: split file not found: {split_path} ({hint}; or write one with `robustprompt make-splits`)")
    prefix = _require_dir(ddir / image_dir, title) if image_dir else ddir
    return read_split_json(split_path, prefix, name=name, templates=[TEMPLATES[name]], rename=renames, hint=hint)


def _zhou_builder(name: str):
    title, folder, image_dir, split_file, _ = ZHOU_LAYOUTS[name]

    def build(root: Path) -> DatasetSplits:
        return read_zhou(name, root)

    build.__name__ = f"build_{name}"
    build.__qualname__ = build.__name__
    build.__doc__ = f"{title}: {folder}/{image_dir + '/' if image_dir else ''} with {folder}/{split_file}."
    return build


for _name in ZHOU_LAYOUTS:
    _fn = _zhou_builder(_name)
    register_dataset(_name, description=_fn.__doc__)(_fn)
del _name, _fn


# ---------------------------------------------------------------------------------------------
# FGVCAircraft: variants.txt and images_variant_{train,val,test}.txt
# ---------------------------------------------------------------------------------------------


def _read_lines(path: Path, title: str) -> list[tuple[int, str]]:
    if not path.is_file():
        raise DataError(f"{title}: file not found: {path} (see DATASETS.md, section {title})")
    with open(path, encoding="utf-8") as f:
        return [(i, line.strip()) for i, line in enumerate(f, 1) if line.strip()]


@register_dataset("fgvc_aircraft", description="FGVCAircraft: fgvc_aircraft/images/ with variants.txt and images_variant_*.txt.")
def build_fgvc_aircraft(root: Path) -> DatasetSplits:
    title = "FGVCAircraft"
    ddir = _dataset_dir(root, "fgvc_aircraft", "fgvc_aircraft", title)
    image_dir = _require_dir(ddir / "images", title)
    variants = [line for _, line in _read_lines(ddir / "variants.txt", title)]
    cname2lab = {c: y for y, c in enumerate(variants)}
    records: dict[str, list[Record]] = {}
    where: list[tuple[str, str]] = []
    for split in ("train", "val", "test"):
        fname = f"images_variant_{split}.txt"
        out = []
        for lineno, line in _read_lines(ddir / fname, title):
            parts = line.split(" ", 1)
            if len(parts) != 2:
                raise DataError(f"{ddir / fname}:{lineno}: expected 'image_id variant', got {line[:80]!r}")
            image_id, variant = parts[0], parts[1].strip()
            if variant not in cname2lab:
                raise DataError(f"{ddir / fname}:{lineno}: variant {variant!r} is not in variants.txt")
            path = os.path.join(image_dir, image_id + ".jpg")
            out.append((path, cname2lab[variant], variant))
            where.append((path, f"{fname} line {lineno}"))
        records[split] = out
    ds = assemble("fgvc_aircraft", records, str(ddir), templates=[TEMPLATES["fgvc_aircraft"]], classnames=variants)
    check_images_exist(where, str(ddir))
    return ds


# ---------------------------------------------------------------------------------------------
# ImageNet and its variants
# ---------------------------------------------------------------------------------------------


def read_imagenet_classnames(path: str | Path) -> "OrderedDict[str, str]":
    """classnames.txt: one "wnid class name" line per class, in label order."""
    path = Path(path)
    out: OrderedDict[str, str] = OrderedDict()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(" ", 1)
            if len(parts) != 2 or not parts[1].strip():
                raise DataError(f"{path}:{lineno}: expected 'wnid class name', got {line[:80]!r}")
            if parts[0] in out:
                raise DataError(f"{path}:{lineno}: wnid {parts[0]} listed twice")
            out[parts[0]] = parts[1].strip()
    if not out:
        raise DataError(f"{path}: no class names")
    return out


def _classnames_for(ddir: Path, title: str) -> "OrderedDict[str, str]":
    own = ddir / "classnames.txt"
    if own.is_file():
        return read_imagenet_classnames(own)
    shared = ddir.parent / "imagenet" / "classnames.txt"
    if shared.is_file():
        return read_imagenet_classnames(shared)
    raise DataError(
        f"{title}: classnames file not found: {own} (copy imagenet/classnames.txt there; see DATASETS.md, section {title})"
    )


def _wnid_records(image_dir: Path, folders: list[str], classes_from: Path) -> list[Record]:
    labels = {w: y for y, w in enumerate(folders)}
    out: list[Record] = []
    for wnid in class_folders(image_dir):
        if wnid not in labels:
            raise DataError(f"class folder {image_dir / wnid} has no counterpart in {classes_from}")
        out.extend((p, labels[wnid], wnid) for p in list_images(image_dir / wnid))
    return out


def _check_wnids(image_dir: Path, wnid2name: Mapping[str, str], names_file: str) -> list[str]:
    folders = class_folders(image_dir)
    unknown = [w for w in folders if w not in wnid2name]
    if unknown:
        raise DataError(f"class folder {image_dir / unknown[0]} is not a wnid listed in {names_file}")
    return folders


@register_dataset("imagenet", description="ImageNet: imagenet/images/{train,val}/<wnid> with imagenet/classnames.txt; test = val.")
def build_imagenet(root: Path) -> DatasetSplits:
    title = "ImageNet"
    ddir = _dataset_dir(root, "imagenet", "imagenet", title)
    wnid2name = _classnames_for(ddir, title)
    names_file = str(ddir / "classnames.txt")
    train_dir, val_dir = ddir / "images" / "train", ddir / "images" / "val"
    if not train_dir.is_dir() and not val_dir.is_dir():
        raise DataError(f"{title}: image folders not found: {train_dir} and {val_dir} (see DATASETS.md, section {title})")
    # Labels follow the sorted wnid folders of train/ (of val/ when only val/ is there), as the field does.
    folders = _check_wnids(train_dir if train_dir.is_dir() else val_dir, wnid2name, names_file)
    classes_from = train_dir if train_dir.is_dir() else val_dir
    train = _wnid_records(train_dir, folders, classes_from) if train_dir.is_dir() else []
    val = _wnid_records(val_dir, folders, classes_from) if val_dir.is_dir() else []
    return assemble(
        "imagenet",
        {"train": train, "val": val, "test": list(val)},
        str(ddir),
        templates=[TEMPLATES["imagenet"]],
        rename=wnid2name, allow_duplicate_names=True,
        classnames=folders,
    )


def _wnid_testset(name: str, title: str, folder: str, image_sub: str, root: Path | None) -> DatasetSplits:
    ddir = _dataset_dir(root, name, folder, title)
    wnid2name = _classnames_for(ddir, title)
    image_dir = _require_dir(ddir / image_sub, title)
    names_file = str(ddir / "classnames.txt")
    folders = _check_wnids(image_dir, wnid2name, names_file)
    test = _wnid_records(image_dir, folders, image_dir)
    return assemble(
        name,
        {"train": [], "val": [], "test": test},
        str(ddir),
        templates=[TEMPLATES[name]],
        rename=wnid2name,
        allow_duplicate_names=True,
        classnames=folders,
    )


@register_dataset("imagenet_sketch", description="ImageNet-Sketch (test only): imagenet-sketch/images/<wnid> with classnames.txt.")
def build_imagenet_sketch(root: Path) -> DatasetSplits:
    return _wnid_testset("imagenet_sketch", "ImageNet-Sketch", "imagenet-sketch", "images", root)


@register_dataset("imagenet_a", description="ImageNet-A (test only, 200 classes): imagenet-adversarial/imagenet-a/<wnid> with classnames.txt.")
def build_imagenet_a(root: Path) -> DatasetSplits:
    return _wnid_testset("imagenet_a", "ImageNet-A", "imagenet-adversarial", "imagenet-a", root)


@register_dataset("imagenet_r", description="ImageNet-R (test only, 200 classes): imagenet-rendition/imagenet-r/<wnid> with classnames.txt.")
def build_imagenet_r(root: Path) -> DatasetSplits:
    return _wnid_testset("imagenet_r", "ImageNet-R", "imagenet-rendition", "imagenet-r", root)


@register_dataset(
    "imagenetv2",
    description="ImageNet-V2 (test only): imagenetv2/imagenetv2-matched-frequency-format-val/<0..999> with classnames.txt.",
)
def build_imagenetv2(root: Path) -> DatasetSplits:
    title = "ImageNetV2"
    ddir = _dataset_dir(root, "imagenetv2", "imagenetv2", title)
    wnid2name = _classnames_for(ddir, title)
    image_dir = _require_dir(ddir / "imagenetv2-matched-frequency-format-val", title)
    wnids = list(wnid2name)
    present = set(class_folders(image_dir))
    extra = sorted(present - {str(i) for i in range(len(wnids))})
    if extra:
        raise DataError(f"class folder {image_dir / extra[0]} is not a label 0..{len(wnids) - 1}")
    test: list[Record] = []
    for label, wnid in enumerate(wnids):
        class_dir = image_dir / str(label)
        if str(label) not in present:
            raise DataError(f"{title}: class folder missing: {class_dir}")
        test.extend((p, label, wnid) for p in list_images(class_dir))
    return assemble(
        "imagenetv2",
        {"train": [], "val": [], "test": test},
        str(ddir),
        templates=[TEMPLATES["imagenetv2"]],
        rename=wnid2name,
        allow_duplicate_names=True,
        classnames=wnids,
    )
