"""Bad input: each is a one-line DataError that names the problem (exit code 2 from the CLI)."""

from __future__ import annotations

import json

import pytest

from robustprompt.data import dataset_entry, prepare_dataset
from robustprompt.errors import DataError
from test_data_helpers import image_tree, make_image, write_imagenet_classnames, zhou_tree


def _eurosat(root, **kw):
    return zhou_tree(root / "eurosat", "2750", "split_zhou_EuroSAT.json", ["Forest", "River"],
                     lambda y, c, s, i: f"{c}/{c}_{s}{i}.jpg", **kw)


def _raises(match, fn, *args, **kw) -> str:
    with pytest.raises(DataError, match=match) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_data_root(tmp_path):
    _raises("data root does not exist: .*nope", prepare_dataset, "eurosat", tmp_path / "nope", shots=1, seed=1)
    _raises("needs a data root", prepare_dataset, "eurosat", None, shots=1, seed=1)
    _raises("EuroSAT: folder not found: .*eurosat", prepare_dataset, "eurosat", tmp_path, shots=1, seed=1)


def test_unknown_dataset_and_class_split(tmp_path):
    _raises("unknown dataset 'eurosatt'", prepare_dataset, "eurosatt", tmp_path, shots=1, seed=1)
    _raises("must be one of all, base, novel", prepare_dataset, "eurosat", tmp_path, shots=1, seed=1, split="b")


def test_missing_split_file_names_it_and_points_to_the_docs(tmp_path):
    (tmp_path / "eurosat" / "2750").mkdir(parents=True)
    msg = _raises("split file not found", prepare_dataset, "eurosat", tmp_path, shots=1, seed=1)
    assert str(tmp_path / "eurosat" / "split_zhou_EuroSAT.json") in msg
    assert "DATASETS.md" in msg and "EuroSAT" in msg


def test_split_entry_whose_image_is_missing(tmp_path):
    _eurosat(tmp_path)
    (tmp_path / "eurosat" / "2750" / "River" / "River_val1.jpg").unlink()
    msg = _raises("image not found", prepare_dataset, "eurosat", tmp_path, shots=1, seed=1)
    assert "val entry 'River/River_val1.jpg'" in msg


def test_label_classname_mismatch(tmp_path):
    split = _eurosat(tmp_path)
    split["test"][0][2] = "River"  # label 0 is "Forest" elsewhere
    (tmp_path / "eurosat" / "split_zhou_EuroSAT.json").write_text(json.dumps(split))
    _raises("label/classname mismatch: label 0 is named both 'Forest' and 'River'",
            prepare_dataset, "eurosat", tmp_path, shots=1, seed=1)


def test_malformed_split_files(tmp_path):
    _eurosat(tmp_path)
    f = tmp_path / "eurosat" / "split_zhou_EuroSAT.json"
    f.write_text("{not json")
    _raises("not valid JSON", prepare_dataset, "eurosat", tmp_path, shots=1, seed=1)
    f.write_text(json.dumps({"train": [], "test": []}))
    _raises('"train", "val" and "test"', prepare_dataset, "eurosat", tmp_path, shots=1, seed=1)
    f.write_text(json.dumps({"train": [["a.jpg", 0]], "val": [], "test": []}))
    _raises("train entry 0 is not", prepare_dataset, "eurosat", tmp_path, shots=1, seed=1)
    f.write_text(json.dumps({"train": [["a.jpg", 0, "a"], ["b.jpg", 2, "b"]], "val": [], "test": []}))
    _raises("label 1 has no entries", prepare_dataset, "eurosat", tmp_path, shots=1, seed=1)


def test_k_larger_than_a_class_has(tmp_path):
    _eurosat(tmp_path)  # 3 train, 2 val per class
    msg = _raises("class 'Forest' \\(label 0\\) has 3 train images, fewer than the 16 asked for",
                  prepare_dataset, "eurosat", tmp_path, shots=16, seed=1)
    assert "--shots" in msg
    assert len(prepare_dataset("eurosat", tmp_path, shots=2, seed=1).train) == 4


def test_a_class_with_fewer_val_images_than_min_k_4_keeps_them_all(tmp_path):
    _eurosat(tmp_path)  # 3 train, 2 val per class: 3 shots ask for 3 val images, the field's code takes the 2
    ds = prepare_dataset("eurosat", tmp_path, shots=3, seed=1)
    assert len(ds.train) == 3 * ds.num_classes and len(ds.val) == 2 * ds.num_classes


def test_non_image_file_in_an_imagefolder(tmp_path):
    image_tree(tmp_path, {"ant": 3, "bee": 3})
    (tmp_path / "bee" / ".DS_Store").write_text("hidden files are skipped")
    assert dataset_entry("imagefolder").builder(tmp_path).num_classes == 2
    (tmp_path / "bee" / "notes.txt").write_text("x")
    _raises("non-image file in class folder: .*bee/notes.txt", dataset_entry("imagefolder").builder, tmp_path)


def test_empty_class_folder_and_too_small_class(tmp_path):
    image_tree(tmp_path, {"ant": 3, "bee": 2})
    _raises("class 'bee' has 2 images; .* needs at least 3", dataset_entry("imagefolder").builder, tmp_path)
    (tmp_path / "cat").mkdir()
    _raises("class folder has no images: .*cat", dataset_entry("imagefolder").builder, tmp_path)
    _raises("no class folders", dataset_entry("imagefolder").builder, tmp_path / "cat")


def test_duplicate_class_names(tmp_path):
    image_tree(tmp_path, {"golden_retriever": 3, "golden retriever": 3})
    _raises("duplicate class name 'golden retriever' \\(labels 0 and 1\\)", dataset_entry("imagefolder").builder, tmp_path)
    split = {"train": [["a.jpg", 0, "cat"], ["b.jpg", 1, "cat"]], "val": [], "test": []}
    (tmp_path / "s.json").write_text(json.dumps(split))
    _raises("duplicate class name 'cat'", dataset_entry("imagefolder").builder, tmp_path / "s.json")


def test_imagefolder_val_class_without_train_counterpart(tmp_path):
    image_tree(tmp_path / "train", {"ant": 2})
    image_tree(tmp_path / "val", {"bee": 1})
    _raises("no counterpart in", dataset_entry("imagefolder").builder, tmp_path)


def test_imagenet_layout_errors(tmp_path):
    (tmp_path / "imagenet").mkdir()
    _raises("classnames file not found: .*imagenet/classnames.txt", dataset_entry("imagenet").builder, tmp_path)
    write_imagenet_classnames(tmp_path / "imagenet" / "classnames.txt")
    _raises("image folders not found", dataset_entry("imagenet").builder, tmp_path)
    make_image(tmp_path / "imagenet" / "images" / "train" / "n99999999" / "a.jpg")
    _raises("n99999999 is not a wnid listed in", dataset_entry("imagenet").builder, tmp_path)
    (tmp_path / "imagenetv2" / "imagenetv2-matched-frequency-format-val" / "0").mkdir(parents=True)
    write_imagenet_classnames(tmp_path / "imagenetv2" / "classnames.txt")
    _raises("class folder has no images", dataset_entry("imagenetv2").builder, tmp_path)


def test_csv_errors(tmp_path):
    make_image(tmp_path / "a.jpg")
    f = tmp_path / "d.csv"
    f.write_text("a.jpg,zero,cat\n")
    _raises(r"d.csv:1: expected path,label\[,classname\] with an integer label", dataset_entry("csv").builder, f)
    f.write_text("a.jpg,0\n")
    _raises("no class name for label 0; add a classname column or a classnames.txt", dataset_entry("csv").builder, f)
    f.write_text("path,label,classname,split\na.jpg,0,cat,train\nb.jpg,0,cat,test\n")
    _raises("line 3: image not found: .*b.jpg", dataset_entry("csv").builder, f)


def test_cli_reports_one_line_and_exit_code_2(tmp_path, capsys):
    from robustprompt.cli import main

    assert main(["make-splits", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustprompt: error: image folder does not exist") and err.count("\n") == 1
    assert not (tmp_path / "missing").exists()
