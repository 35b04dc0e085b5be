"""Offline testbed datasets: classes, split sizes, dtypes, determinism, domain shift, templates."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from robustprompt.data import testbeds as T
from robustprompt.data.base import DatasetSplits, load_image
from robustprompt.synthetic import captions as C

EXPECTED = {
    "fashion-mnist": (["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                       "ankle boot"], (100, 20, 300)),
    "shapes": (T.SHAPES_CLASSES, (32, 8, 80)),
    "colors": (T.COLORS_CLASSES, (32, 8, 80)),
}


@pytest.mark.parametrize("name", T.TESTBEDS)
def test_testbed_classes_sizes_dtypes(name):
    ds = T.build(name)
    classes, (n_train, n_val, n_test) = EXPECTED[name]
    assert isinstance(ds, DatasetSplits) and ds.name == name
    assert ds.classnames == classes and len(classes) >= 8
    assert ds.images.dtype == np.uint8 and ds.images.shape[1:] == (32, 32, 3)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        items = getattr(ds, split)
        assert len(items) == n * len(classes)
        counts = np.bincount([d.label for d in items], minlength=len(classes))
        assert (counts == n).all()
        assert all(d.path == "" and d.classname == classes[d.label] and 0 <= d.key < len(ds.images) for d in items)
    keys = [d.key for s in (ds.train, ds.val, ds.test) for d in s]
    assert len(set(keys)) == len(keys)  # no image in two splits
    assert load_image(ds.test[0], ds.images).size == (32, 32)


def test_generated_testbeds_are_deterministic():
    for name in ("shapes", "colors"):
        a = T._generated.__wrapped__(name)
        b = T.build(name)
        assert np.array_equal(a.images, b.images) and a.test == b.test


def test_fashion_testbed_is_deterministic_and_uses_t10k_for_test():
    from robustprompt.synthetic.sources import load_fashion_mnist

    a = T._fashion.__wrapped__(None)
    assert np.array_equal(a.images, T.build("fashion-mnist").images)
    te_img, te_lab = load_fashion_mnist("test")
    first = a.test[0]  # the first t-shirt of t10k, drawn in the testbed style
    assert first.label == 0 and te_lab[np.flatnonzero(te_lab == 0)[0]] == 0


def test_testbeds_differ_in_style_from_pretraining():
    from robustprompt.pretrain.config import PretrainConfig
    from robustprompt.synthetic.generator import PretrainStream

    cfg = PretrainConfig()  # the shipped recipe's photometric ranges lie outside the testbed style
    assert cfg.backdrop_contrast > T.CONTRAST[1] and cfg.noise_std < T.NOISE[1]
    assert cfg.levels == 0 or cfg.levels_high - cfg.levels_low > T.CONTRAST[1]
    pre, _ = PretrainStream(0, replace(cfg.mix(1), fashion=0.0)).batch(0, 200)

    def corner_std(ims):  # within-image spread of the 4x4 corner patches: texture plus noise
        c = np.concatenate([ims[:, :4, :4], ims[:, -4:, -4:]], axis=1).astype(float)
        return float(c.std(axis=(1, 2)).mean())

    for name in T.TESTBEDS:
        ims = T.build(name).images[:200]
        assert corner_std(ims) > 2 * corner_std(pre)  # testbeds: textured backgrounds, stronger noise
        assert np.median(ims[:, :4, :4]) > 20  # testbeds: never black


@pytest.mark.parametrize("name", T.TESTBEDS)
def test_prompt_template_is_not_a_pretraining_template(name):
    template = T.TEMPLATES[name][0]
    x = "zzz"
    prompt = template.format(x)
    for t in C.TEMPLATES:
        for art in ("a ", "an ", "the ", "one ", ""):
            assert prompt != t.format(art + x)


def test_testbeds_are_registered():
    from robustprompt.data.registry import _DATASETS

    for name in T.TESTBEDS:
        entry = _DATASETS[name]
        assert entry.needs_root is False and entry.description
        assert entry.builder(None).classnames == EXPECTED[name][0]
