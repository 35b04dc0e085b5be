"""`robustprompt predict` and `robustprompt.predict`: top-k names with probabilities, other class names, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import robustprompt
from robustprompt.cli import main
from robustprompt.inference import Predictor

from helpers import TINY_ARGS, make_imagefolder, fails


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("data") / "colours")


@pytest.fixture(scope="module")
def run(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "coop"
    assert main(["train", "--dataset", "imagefolder", "--data-root", str(tree), "--out", str(out), *TINY_ARGS]) == 0
    return out


@pytest.fixture(scope="module")
def images(tree, tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(1)
    paths = [tree / "red" / "000.png", tree / "blue" / "001.png"]
    extra = d / "big photo.jpg"  # another size and format: the eval transform resizes and crops
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(extra, quality=90)
    return [*paths, extra]


def _snapshot(run: Path) -> dict:
    return {p.relative_to(run): p.stat().st_mtime_ns for p in run.rglob("*")}


def test_cli_predict_text_and_json(run, images, capsys):
    before = _snapshot(run)
    capsys.readouterr()
    assert main(["predict", str(run), *map(str, images), "--top-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["image"] for o in out] == list(map(str, images))
    classes = {"red", "green", "blue", "yellow"}
    for o in out:
        probs = [p["prob"] for p in o["predictions"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert {p["class"] for p in o["predictions"]} <= classes
    assert main(["predict", str(run), str(images[0]), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(images[0]) and len(lines) == 3
    prob, name = lines[1].split()
    assert 0 < float(prob) <= 1 and name in classes
    assert _snapshot(run) == before  # predict writes nothing


def test_python_api_equals_softmax_of_the_method(run, images):
    from robustprompt.data.transforms import eval_transform
    from robustprompt.engine.runs import load_run

    top = robustprompt.predict(run, images, top_k=10)  # more than there are classes: all of them
    _, method = load_run(run)
    method.eval()
    x = torch.stack([eval_transform(method.backbone.image_size)(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        probs = torch.softmax(method(x, method.class_context()), dim=-1)
    for i, ranked in enumerate(top):
        assert len(ranked) == 4 and sum(p for _, p in ranked) == pytest.approx(1.0, abs=1e-5)
        for name, p in ranked:
            assert p == pytest.approx(probs[i, method.classnames.index(name)].item(), abs=1e-6)
    # one path or one PIL image alone also works
    single = robustprompt.predict(run, images[0], top_k=1)
    pil = robustprompt.predict(run, [Image.open(images[0])], top_k=1)
    # one image alone and in a batch of four differ in float rounding only (batched matmul order)
    for one in (single, pil):
        (name, p), = one[0]
        assert name == top[0][0][0] and p == pytest.approx(top[0][0][1], rel=1e-5, abs=1e-7)


def test_other_class_names(run, images, capsys):
    capsys.readouterr()
    assert main(["predict", str(run), str(images[0]), "--classes", "purple, orange ,red", "--json"]) == 0
    (out,) = json.loads(capsys.readouterr().out)
    assert {p["class"] for p in out["predictions"]} == {"purple", "orange", "red"}  # top 5 clipped to 3
    api = robustprompt.predict(run, [images[0]], classes=["purple", "orange", "red"], top_k=5)
    assert [(n, pytest.approx(p, abs=1e-6)) for n, p in api[0]] == [(o["class"], o["prob"]) for o in out["predictions"]]


def test_class_features_are_computed_once(run, images):
    pred = Predictor(run)
    calls = []
    original = pred.method.class_context
    pred.method.class_context = lambda names=None: calls.append(names) or original(names)
    pred.predict(images * 3, top_k=2, batch_size=2)  # 9 images in 5 batches
    pred.predict(images, top_k=2)
    assert len(calls) == 1
    pred.predict(images, classes="cat,dog", top_k=2)
    assert len(calls) == 2


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written
def test_duplicate_class_names(run, images, capsys):
    fails(capsys, ["predict", str(run), str(images[0]), "--classes", "red,green,red"], "duplicate class name 'red'")
    fails(capsys, ["predict", str(run), str(images[0]), "--classes", "Red,green, red"],
           "duplicate class name 'Red' and 'red'")


def test_empty_class_name(run, images, capsys):
    fails(capsys, ["predict", str(run), str(images[0]), "--classes", "red,,green"], "empty class name")


def test_missing_image(run, images, tmp_path, capsys):
    missing = tmp_path / "nope.png"
    fails(capsys, ["predict", str(run), str(images[0]), str(missing)], f"image not found: {missing}")


def test_corrupt_image(run, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")
    fails(capsys, ["predict", str(run), str(bad)], f"image does not decode: {bad}")
    fails(capsys, ["predict", str(run), str(tmp_path)], "not an image file")


def test_predict_on_a_folder_that_is_not_a_run(tmp_path, images, capsys):
    fails(capsys, ["predict", str(tmp_path), str(images[0])], "not a run directory")


def test_top_k_must_be_positive(run, images, capsys):
    fails(capsys, ["predict", str(run), str(images[0]), "--top-k", "0"], "expected a positive integer")
    with pytest.raises(robustprompt.errors.ConfigError, match="top_k"):
        robustprompt.predict(run, images, top_k=0)
