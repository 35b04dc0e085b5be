"""Each of the 15 benchmark layouts, ImageFolder and CSV, read from a miniature tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from robustprompt.data import (
    ImageDataset,
    dataset_entry,
    eval_transform,
    list_datasets,
    prepare_dataset,
    read_split_json,
    train_transform,
    write_split_json,
)
from robustprompt.data.benchmarks import TEMPLATES
from test_data_helpers import (
    COUNTS,
    WNID_NAMES,
    WNIDS,
    image_tree,
    make_image,
    write_imagenet_classnames,
    zhou_tree,
)

BENCHMARKS = [
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
    "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r",
]

# name: (dataset folder, image folder, split file, raw class names, expected names, relpath(label, raw, split, i))
ZHOU = {
    "caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                   ["accordion", "airplanes", "Faces"], ["accordion", "airplane", "face"],
                   lambda y, c, s, i: f"{c}/image_{s}{i:04d}.jpg"),
    "oxford_pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json",
                    ["abyssinian", "american_bulldog", "yorkshire_terrier"],
                    ["abyssinian", "american bulldog", "yorkshire terrier"],
                    lambda y, c, s, i: f"{c}_{s}{i}.jpg"),
    "stanford_cars": ("stanford_cars", "", "split_zhou_StanfordCars.json",
                      ["2012 Tesla Model S", "2012 BMW M3 coupe", "2007 Dodge Dakota Club Cab"],
                      ["2012 Tesla Model S", "2012 BMW M3 coupe", "2007 Dodge Dakota Club Cab"],
                      lambda y, c, s, i: f"cars_{'test' if s == 'test' else 'train'}/{s}{y}{i:04d}.jpg"),
    "oxford_flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                       ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"],
                       ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"],
                       lambda y, c, s, i: f"image_{s}{y}{i:04d}.jpg"),
    "food101": ("food-101", "images", "split_zhou_Food101.json",
                ["apple_pie", "baby_back_ribs", "baklava"], ["apple pie", "baby back ribs", "baklava"],
                lambda y, c, s, i: f"{c}/{s}{i}.jpg"),
    "sun397": ("sun397", "SUN397", "split_zhou_SUN397.json",
               ["abbey", "airplane_cabin", "indoor apse"], ["abbey", "airplane cabin", "indoor apse"],
               lambda y, c, s, i: f"{c[0]}/{c.replace(' ', '_')}/sun_{s}{i}.jpg"),
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json",
            ["banded", "blotchy", "braided"], ["banded", "blotchy", "braided"],
            lambda y, c, s, i: f"{c}/{c}_{s}{i:04d}.jpg"),
    "eurosat": ("eurosat", "2750", "split_zhou_EuroSAT.json",
                ["AnnualCrop", "Forest", "Sea or Lake"], ["Annual Crop Land", "Forest", "Sea or Lake"],
                lambda y, c, s, i: f"{c.replace(' ', '')}/{s}_{i}.jpg"),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
               ["Apply_Eye_Makeup", "Apply_Lipstick", "Archery"], ["Apply Eye Makeup", "Apply Lipstick", "Archery"],
               lambda y, c, s, i: f"{c}/v_{c}_g{i:02d}_{s}.jpg"),
}


def test_every_benchmark_is_registered():
    names = list_datasets()
    for n in BENCHMARKS + ["imagefolder", "csv"]:
        assert n in names
        assert dataset_entry(n).needs_root
        assert dataset_entry(n).description


def _check(ds, names, counts, template):
    assert ds.num_classes == len(names)
    assert ds.classnames == names
    assert ds.template == template
    for split, n in counts.items():
        items = getattr(ds, split)
        assert len(items) == n * len(names), split
        for d in items:
            assert os.path.isabs(d.path) and os.path.isfile(d.path)
            assert d.classname == names[d.label]
        assert sorted({d.label for d in items}) == (list(range(len(names))) if n else [])


@pytest.mark.parametrize("name", sorted(ZHOU))
def test_split_file_benchmarks(tmp_path, name):
    folder, image_sub, split_file, raw, names, rel_of = ZHOU[name]
    split = zhou_tree(tmp_path / folder, image_sub, split_file, raw, rel_of)
    ds = dataset_entry(name).builder(tmp_path)
    _check(ds, names, COUNTS, TEMPLATES[name])
    prefix = tmp_path / folder / image_sub if image_sub else tmp_path / folder
    for s in ("train", "val", "test"):  # same order and labels as the file
        assert [(d.path, d.label) for d in getattr(ds, s)] == [
            (os.path.normpath(prefix / rel), y) for rel, y, _ in split[s]
        ]
    # the dataset's own folder works as a root too
    assert dataset_entry(name).builder(tmp_path / folder).classnames == names


def test_fgvc_aircraft(tmp_path):
    ddir = tmp_path / "fgvc_aircraft"
    variants = ["707-320", "A300B4", "Falcon 2000"]
    ddir.mkdir()
    (ddir / "variants.txt").write_text("\n".join(variants) + "\n")
    for s, n in COUNTS.items():
        lines = []
        for y, v in enumerate(variants):
            for i in range(n):
                image_id = f"{1000000 + 100 * y + 10 * len(s) + i}"
                make_image(ddir / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {v}")
        (ddir / f"images_variant_{s}.txt").write_text("\n".join(lines) + "\n")
    ds = dataset_entry("fgvc_aircraft").builder(tmp_path)
    _check(ds, variants, COUNTS, "a photo of a {}, a type of aircraft.")


def test_imagenet(tmp_path):
    ddir = tmp_path / "imagenet"
    write_imagenet_classnames(ddir / "classnames.txt", WNIDS[:3], WNID_NAMES[:3])
    for split, n in (("train", 3), ("val", 2)):
        for w in WNIDS[:3]:
            for i in range(n):
                make_image(ddir / "images" / split / w / f"{w}_{i}.JPEG")
    ds = prepare_dataset("imagenet", tmp_path, shots=0, seed=1)
    _check(ds, WNID_NAMES[:3], {"train": 3, "val": 2, "test": 2}, "a photo of a {}.")
    assert ds.test == ds.val  # the field evaluates on ImageNet's val set


def test_imagenet_keeps_two_wnids_that_share_a_name(tmp_path, caplog):
    # CLIP's ImageNet names give two wnid pairs one name ("missile", "sunglasses"); classes are wnids.
    ddir = tmp_path / "imagenet"
    write_imagenet_classnames(ddir / "classnames.txt", WNIDS[:3], ["missile", "sunglasses", "missile"])
    for w in WNIDS[:3]:
        make_image(ddir / "images" / "train" / w / "a.jpg")
    ds = dataset_entry("imagenet").builder(tmp_path)
    assert ds.classnames == ["missile", "sunglasses", "missile"]
    assert [d.label for d in ds.train] == [0, 1, 2]
    assert "duplicate class name 'missile'" in caplog.text


def test_imagenetv2(tmp_path):
    ddir = tmp_path / "imagenetv2"
    write_imagenet_classnames(ddir / "classnames.txt", WNIDS[:3], WNID_NAMES[:3])
    for y in range(3):
        for i in range(2):
            make_image(ddir / "imagenetv2-matched-frequency-format-val" / str(y) / f"{i}.jpeg")
    ds = dataset_entry("imagenetv2").builder(tmp_path)
    _check(ds, WNID_NAMES[:3], {"train": 0, "val": 0, "test": 2}, "a photo of a {}.")


def test_imagenet_sketch(tmp_path):
    ddir = tmp_path / "imagenet-sketch"
    write_imagenet_classnames(ddir / "classnames.txt")
    image_tree(ddir / "images", {w: 2 for w in WNIDS}, ext=".JPEG")
    ds = dataset_entry("imagenet_sketch").builder(tmp_path)
    _check(ds, WNID_NAMES, {"train": 0, "val": 0, "test": 2}, "a photo of a {}.")


@pytest.mark.parametrize("name,folder,sub", [("imagenet_a", "imagenet-adversarial", "imagenet-a"),
                                              ("imagenet_r", "imagenet-rendition", "imagenet-r")])
def test_imagenet_a_r_are_subsets_mapped_to_imagenet_names(tmp_path, name, folder, sub):
    ddir = tmp_path / folder
    write_imagenet_classnames(ddir / "classnames.txt")  # all 5 ImageNet classes
    subset = [WNIDS[4], WNIDS[1], WNIDS[3]]
    image_tree(ddir / sub, {w: 2 for w in subset})
    (ddir / sub / "README.txt").write_text("not a class")  # shipped with ImageNet-A; ignored
    ds = dataset_entry(name).builder(tmp_path)
    # labels follow the sorted wnid folders; names are ImageNet's
    _check(ds, [WNID_NAMES[1], WNID_NAMES[3], WNID_NAMES[4]], {"train": 0, "val": 0, "test": 2}, "a photo of a {}.")


def test_variant_without_its_own_classnames_uses_imagenets(tmp_path):
    write_imagenet_classnames(tmp_path / "imagenet" / "classnames.txt")
    image_tree(tmp_path / "imagenet-rendition" / "imagenet-r", {WNIDS[0]: 1, WNIDS[2]: 1})
    ds = dataset_entry("imagenet_r").builder(tmp_path)
    assert ds.classnames == [WNID_NAMES[0], WNID_NAMES[2]]


# --- ImageFolder -----------------------------------------------------------------------------


def test_imagefolder_single_tree_is_split_50_20_30_seeded(tmp_path):
    image_tree(tmp_path / "tree", {"black_cat": 10, "dog": 3, "eel": 5})
    (tmp_path / "tree" / "README.txt").write_text("top-level files are ignored")
    ds = dataset_entry("imagefolder").builder(tmp_path / "tree")
    assert ds.classnames == ["black cat", "dog", "eel"]
    per = {s: [sum(d.label == y for d in getattr(ds, s)) for y in range(3)] for s in ("train", "val", "test")}
    assert per == {"train": [5, 1, 2], "val": [2, 1, 1], "test": [3, 1, 2]}
    again = dataset_entry("imagefolder").builder(tmp_path / "tree")
    assert again == ds  # deterministic
    paths = [d.path for s in ("train", "val", "test") for d in getattr(ds, s)]
    assert len(set(paths)) == 18


def test_imagefolder_with_train_val_test(tmp_path):
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        image_tree(tmp_path / split, {"ant": n, "bee": n})
    ds = dataset_entry("imagefolder").builder(tmp_path)
    _check(ds, ["ant", "bee"], {"train": 3, "val": 2, "test": 1}, "a photo of a {}.")


def test_imagefolder_train_only_carves_val_and_tests_on_it(tmp_path):
    image_tree(tmp_path / "train", {"ant": 5, "bee": 10})
    ds = dataset_entry("imagefolder").builder(tmp_path)
    assert [sum(d.label == y for d in ds.val) for y in range(2)] == [1, 2]
    assert len(ds.train) == 12 and ds.test == ds.val
    assert not {d.path for d in ds.train} & {d.path for d in ds.val}


def test_split_json_round_trips_and_imagefolder_reads_it(tmp_path):
    image_tree(tmp_path, {"ant": 4, "bee": 4, "cat": 3})
    ds = dataset_entry("imagefolder").builder(tmp_path)
    out = write_split_json(tmp_path / "split.json", ds, tmp_path)
    raw = out.read_text()
    assert str(tmp_path) not in raw  # relative paths
    back = read_split_json(out, tmp_path, name="imagefolder")
    assert back == ds
    assert dataset_entry("imagefolder").builder(tmp_path) == ds  # tree/split.json is used
    assert dataset_entry("imagefolder").builder(out) == ds  # a split file as root


def test_make_splits_cli_writes_a_file_the_readers_accept(tmp_path, capsys):
    from robustprompt.cli import main

    ddir = tmp_path / "caltech-101"
    image_tree(ddir / "101_ObjectCategories", {"BACKGROUND_Google": 3, "airplanes": 6, "Faces": 5, "Faces_easy": 3})
    out = ddir / "split_zhou_Caltech101.json"
    argv = ["make-splits", str(ddir / "101_ObjectCategories"), "--out", str(out), "--seed", "3",
            "--ignore", "BACKGROUND_Google", "--ignore", "Faces_easy"]
    assert main(argv) == 0
    assert "2 classes" in capsys.readouterr().out
    ds = dataset_entry("caltech101").builder(tmp_path)
    assert ds.classnames == ["face", "airplane"]  # sorted folder names: "Faces" < "airplanes"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (5, 2, 4)
    assert main(argv) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert main(argv + ["--force", "--seed", "4"]) == 0
    assert dataset_entry("caltech101").builder(tmp_path).train != ds.train  # another seed, another split


# --- CSV -------------------------------------------------------------------------------------


def test_csv_single_file_with_header_and_split_column(tmp_path):
    rows = ["path,label,classname,split"]
    for y, c in enumerate(["red fox", "owl"]):
        for s, n in (("train", 3), ("val", 1), ("test", 2)):
            for i in range(n):
                make_image(tmp_path / "img" / f"{y}_{s}_{i}.png")
                rows.append(f"img/{y}_{s}_{i}.png,{y},{c},{s}")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    for root in (tmp_path / "data.csv", tmp_path):
        ds = dataset_entry("csv").builder(root)
        _check(ds, ["red fox", "owl"], {"train": 3, "val": 1, "test": 2}, "a photo of a {}.")


def test_csv_files_per_split_with_classnames_txt(tmp_path):
    (tmp_path / "classnames.txt").write_text("sea_lion\nwalrus\n")
    for s, n in (("train", 2), ("test", 1)):
        lines = []
        for y in range(2):
            for i in range(n):
                make_image(tmp_path / s / f"{y}{i}.jpg")
                lines.append(f"{s}/{y}{i}.jpg,{y}")
        (tmp_path / f"{s}.csv").write_text("\n".join(lines) + "\n")
    ds = dataset_entry("csv").builder(tmp_path)
    assert ds.classnames == ["sea lion", "walrus"]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (2, 2, 2)  # val carved from train (1 per class)


def test_csv_without_split_column_is_split_per_class(tmp_path):
    lines = []
    for y in range(2):
        for i in range(4):
            make_image(tmp_path / f"{y}{i}.jpg")
            lines.append(f"{y}{i}.jpg,{y},class{y}")
    (tmp_path / "all.csv").write_text("\n".join(lines))
    ds = dataset_entry("csv").builder(tmp_path / "all.csv")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (4, 2, 2)


# --- Transforms and serving ------------------------------------------------------------------


def test_transforms_give_unnormalised_tensors_in_0_1(tmp_path):
    from PIL import Image

    img = Image.new("L", (37, 23), 200)  # grey, non-square: converted to RGB
    ev = eval_transform(16)(img)
    assert ev.shape == (3, 16, 16) and ev.dtype == torch.float32
    assert torch.allclose(ev, torch.full_like(ev, 200 / 255), atol=1 / 255)
    tr = train_transform(8, scale=(0.5, 1.0))(img)
    assert tr.shape == (3, 8, 8) and 0 <= tr.min() and tr.max() <= 1
    image_tree(tmp_path, {"a": 3, "b": 3, "c": 3})
    ds = prepare_dataset("imagefolder", tmp_path, shots=1, seed=1)
    x, y = ImageDataset(ds.train, eval_transform(4))[0]
    assert x.shape == (3, 4, 4) and y == 0


def test_prepare_dataset_accepts_str_and_path(tmp_path):
    image_tree(tmp_path, {"a": 3, "b": 3})
    assert prepare_dataset("imagefolder", str(tmp_path), shots=1, seed=1).num_classes == 2
    assert prepare_dataset("imagefolder", Path(tmp_path), shots=1, seed=1).num_classes == 2
