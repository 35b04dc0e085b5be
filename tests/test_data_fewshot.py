"""Few-shot sampling, base/novel classes, the few-shot cache, and properties of split handling."""

from __future__ import annotations

import json
import math
import random
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustprompt.data import (
    DatasetSplits,
    Datum,
    base_novel_labels,
    few_shot,
    fewshot_cache_path,
    prepare_dataset,
    subsample_classes,
)
from robustprompt.data.splits import split_counts
from robustprompt.errors import DataError
from test_data_helpers import image_tree

CLASSES = ["ant", "bee", "cat", "dog", "eel"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fs")
    image_tree(root / "train", {c: 8 for c in CLASSES})
    image_tree(root / "val", {c: 5 for c in CLASSES})
    image_tree(root / "test", {c: 2 for c in CLASSES})
    return root


def _per_class(items):
    out = {}
    for d in items:
        out[d.label] = out.get(d.label, 0) + 1
    return out


def test_shots_per_class_and_val_min_k_4(tree):
    ds = prepare_dataset("imagefolder", tree, shots=2, seed=1)
    assert _per_class(ds.train) == {y: 2 for y in range(5)}
    assert _per_class(ds.val) == {y: 2 for y in range(5)}
    assert len(ds.test) == 10
    ds = prepare_dataset("imagefolder", tree, shots=8, seed=1)
    assert _per_class(ds.train) == {y: 8 for y in range(5)}
    assert _per_class(ds.val) == {y: 4 for y in range(5)}  # min(K, 4)
    full = prepare_dataset("imagefolder", tree, shots=0, seed=1)
    assert (len(full.train), len(full.val), len(full.test)) == (40, 25, 10)


def test_sampling_is_deterministic_per_seed_and_differs_across_seeds(tree):
    a = prepare_dataset("imagefolder", tree, shots=2, seed=1)
    b = prepare_dataset("imagefolder", tree, shots=2, seed=1)
    c = prepare_dataset("imagefolder", tree, shots=2, seed=2)
    assert a.train == b.train and a.val == b.val
    assert a.train != c.train


def test_sampling_ignores_the_global_rng(tree):
    random.seed(0)
    a = prepare_dataset("imagefolder", tree, shots=2, seed=3)
    random.seed(12345)
    random.random()
    b = prepare_dataset("imagefolder", tree, shots=2, seed=3)
    assert a.train == b.train


def test_base_and_novel_partition_the_classes(tree):
    full = prepare_dataset("imagefolder", tree, shots=2, seed=1, split="all")
    base = prepare_dataset("imagefolder", tree, shots=2, seed=1, split="base")
    novel = prepare_dataset("imagefolder", tree, shots=2, seed=1, split="novel")
    assert base.classnames == ["ant", "bee", "cat"] and novel.classnames == ["dog", "eel"]
    assert {d.label for d in base.test} == {0, 1, 2} and {d.label for d in novel.test} == {0, 1}
    for ds in (base, novel):
        for d in (*ds.train, *ds.val, *ds.test):
            assert d.classname == ds.classnames[d.label]
    # the base training set is the "all" sample restricted to the base classes (sample, then subsample)
    assert [d.path for d in base.train] == [d.path for d in full.train if d.label < 3]
    assert sorted(d.path for d in (*base.test, *novel.test)) == sorted(d.path for d in full.test)


def test_subsample_accepts_new_as_novel_and_rejects_others(tree):
    ds = prepare_dataset("imagefolder", tree, shots=1, seed=1)
    assert subsample_classes(ds, "new").classnames == ["dog", "eel"]
    with pytest.raises(DataError, match="base, novel"):
        subsample_classes(ds, "half")


def test_cache_is_json_with_relative_paths_and_survives_moving_the_root(tree, tmp_path):
    cache = tmp_path / "cache"
    a = prepare_dataset("imagefolder", tree, shots=2, seed=5, cache_dir=cache)
    path = fewshot_cache_path(cache, "imagefolder", 2, 5)
    assert path.name == "shot_2-seed_5.json"
    data = json.loads(path.read_text())
    assert data["shots"] == 2 and data["seed"] == 5 and len(data["train"]) == 10 and len(data["val"]) == 10
    assert all(not p.startswith("/") for p, _, _ in data["train"])
    assert [d.path for d in a.train] == [str(tree / p) for p, _, _ in data["train"]]
    moved = tmp_path / "moved"
    shutil.copytree(tree, moved)
    b = prepare_dataset("imagefolder", moved, shots=2, seed=5, cache_dir=cache)
    assert [d.path for d in b.train] == [str(moved / p) for p, _, _ in data["train"]]


def test_stale_cache_is_resampled(tree, tmp_path, caplog):
    cache = tmp_path / "cache"
    a = prepare_dataset("imagefolder", tree, shots=2, seed=5, cache_dir=cache)
    path = fewshot_cache_path(cache, "imagefolder", 2, 5)
    data = json.loads(path.read_text())
    data["fingerprint"] = "0" * 64
    data["train"] = data["train"][::-1]
    path.write_text(json.dumps(data))
    b = prepare_dataset("imagefolder", tree, shots=2, seed=5, cache_dir=cache)
    assert b.train == a.train
    assert "sampling again" in caplog.text
    assert json.loads(path.read_text())["fingerprint"] != "0" * 64


# --- properties ------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=2000))
def test_base_novel_partition_for_any_n(n):
    base, novel = base_novel_labels(n)
    assert base + novel == list(range(n))
    assert len(base) == math.ceil(n / 2)


def _items(sizes):
    return [Datum(f"/x/{y}/{i}.jpg", y, f"c{y}") for y, n in enumerate(sizes) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=8), st.integers(0, 10), st.integers(0, 99))
def test_few_shot_takes_exactly_k_without_duplicates_or_fails(sizes, k, seed):
    items = _items(sizes)
    names = [f"c{y}" for y in range(len(sizes))]
    if k > 0 and min(sizes) < k:
        with pytest.raises(DataError, match="fewer than the"):
            few_shot(items, k, seed, classnames=names)
        return
    out = few_shot(items, k, seed, classnames=names)
    assert len(out) == len(set(out))
    assert set(out) <= set(items)
    if k > 0:
        assert _per_class(out) == {y: k for y in range(len(sizes))}
        assert out == few_shot(list(items), k, seed, classnames=names)
    else:
        assert out == items


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=9))
def test_subsample_splits_every_item_once(sizes):
    items = _items(sizes)
    ds = DatasetSplits("t", [f"c{y}" for y in range(len(sizes))], items, [], items)
    base, novel = subsample_classes(ds, "base"), subsample_classes(ds, "novel") if len(sizes) > 1 else None
    n_novel = len(novel.test) if novel else 0
    assert len(base.test) + n_novel == len(items)
    assert base.num_classes == math.ceil(len(sizes) / 2)
    for part in (base, novel):
        if part:
            assert all(0 <= d.label < part.num_classes and part.classnames[d.label] == d.classname for d in part.test)


@given(st.integers(min_value=3, max_value=5000))
def test_default_split_counts_cover_every_image(n):
    tr, va, te = split_counts(n, 0.5, 0.2)
    assert tr + va + te == n and min(tr, va, te) >= 1
