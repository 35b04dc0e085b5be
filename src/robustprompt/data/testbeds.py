"""Offline testbed datasets for the embedded model: Fashion-MNIST-10 and generated shapes and colours.

Served through the same interface as real datasets (`DatasetSplits` with in-memory uint8 images,
(N, 32, 32, 3), at the embedded model's resolution). Everything is fixed by a seed.

The testbeds are drawn in another style than the pretraining images, on purpose (a domain shift, as
real downstream photos differ from web captions): "dim, grainy photos" with a textured dark-grey
background (pretraining: black or a flat grey backdrop), lower contrast and stronger sensor noise than
pretraining ever shows, and (for the generated sets) free sizes and positions instead of the
pretraining grid. Their prompt template `templates[0]` is not one of the pretraining caption templates.

| name          | classes | train/class | val/class | test/class | source                                   |
|---------------|---------|-------------|-----------|------------|------------------------------------------|
| fashion-mnist | 10      | 100         | 20        | 300        | FMNIST train (train/val), t10k (test)    |
| shapes        | 10      | 32          | 8         | 80         | generated                                |
| colors        | 10      | 32          | 8         | 80         | generated                                |
"""

from __future__ import annotations

import functools

import numpy as np

from ..synthetic import captions as C
from ..synthetic.generator import RES, shape_mask
from ..synthetic.sources import FASHION_MNIST_CLASSES, load_fashion_mnist
from .base import DatasetSplits, Datum
from .registry import register_dataset

SEED = 2024

# templates[0] is the prompt; none of these is a pretraining caption template (a test checks it).
TEMPLATES = {
    "fashion-mnist": ["a faded photo of a {}.", "a grainy picture of a {}.", "a dim photo of the {}."],
    "shapes": ["a faded drawing of a {}.", "a grainy picture of a {}.", "a dim image of the {}."],
    "colors": ["a faded photo of a {} object.", "a grainy picture of a {} shape.", "a dim image of something {}."],
}

SHAPES_CLASSES = ["circle", "square", "triangle", "star", "heart", "cross", "diamond", "hexagon", "crescent", "arrow"]
COLORS_CLASSES = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "white"]

SIZES = {  # per class: train, val, test
    "fashion-mnist": (100, 20, 300),
    "shapes": (32, 8, 80),
    "colors": (32, 8, 80),
}

# The testbed style (domain shift); see module docstring.
BACKGROUND = (0.1, 0.3)  # dark-grey level range (pretraining: black, or a flat backdrop of 0-0.3)
TEXTURE = 0.05  # amplitude of the smooth background texture (pretraining: none)
CONTRAST = (0.35, 0.55)  # object contrast against the background (pretraining: 0.6-1)
NOISE = (0.04, 0.08)  # sensor noise std on [0, 1] pixels (pretraining: 0-0.05)


def _style(rng: np.random.Generator, alpha: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Compose testbed images: object colours `rgb` (N, 3) with coverage `alpha` (N, H, W) in [0, 1]."""
    n = len(alpha)
    bg_level = rng.uniform(*BACKGROUND, (n, 1, 1, 1)).astype(np.float32)
    coarse = rng.normal(0, 1, (n, 4, 4, 1)).astype(np.float32)
    texture = coarse.repeat(RES // 4, axis=1).repeat(RES // 4, axis=2)
    for ax in (1, 2):  # smooth the blocky texture with a 5-tap box filter along both axes
        texture = sum(np.roll(texture, k, ax) for k in (-2, -1, 0, 1, 2)) / 5
    tint = rng.normal(0, 0.02, (n, 1, 1, 3)).astype(np.float32)
    bg = np.clip(bg_level + TEXTURE * texture + tint, 0, 1)
    c = rng.uniform(*CONTRAST, (n, 1, 1, 1)).astype(np.float32)
    img = bg + c * alpha[..., None] * (rgb[:, None, None, :] - bg)
    img += rng.normal(0, 1, img.shape).astype(np.float32) * rng.uniform(*NOISE, (n, 1, 1, 1)).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _clean(alpha: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The same objects drawn in the pretraining style (black background, full contrast, no noise)."""
    return (np.clip(alpha[..., None] * rgb[:, None, None, :], 0, 1) * 255 + 0.5).astype(np.uint8)


def _splits(name, classnames, images, labels, per_class) -> DatasetSplits:
    """Rows are ordered split by split (train, val, test), class-major inside each; keys index `images`."""
    out = {"train": [], "val": [], "test": []}
    row = 0
    for split, n in zip(("train", "val", "test"), per_class):
        for _ in range(n * len(classnames)):
            label = int(labels[row])
            out[split].append(Datum(path="", label=label, classname=classnames[label], key=row))
            row += 1
    return DatasetSplits(name=name, classnames=list(classnames), train=out["train"], val=out["val"],
                         test=out["test"], templates=list(TEMPLATES[name]), images=images)


@functools.lru_cache(maxsize=4)
def _fashion(root: str | None, clean: bool = False) -> DatasetSplits:
    rng = np.random.default_rng([SEED, 1])
    n_train, n_val, n_test = SIZES["fashion-mnist"]
    tr_img, tr_lab = load_fashion_mnist("train", root)
    te_img, te_lab = load_fashion_mnist("test", root)
    picks = []  # (source images, index) per row, split-major, class-major
    perm = rng.permutation(len(tr_lab))
    by_class = [perm[tr_lab[perm] == c] for c in range(10)]
    for c in range(10):
        picks += [(tr_img, int(i)) for i in by_class[c][:n_train]]
    for c in range(10):
        picks += [(tr_img, int(i)) for i in by_class[c][n_train:n_train + n_val]]
    for c in range(10):  # the first n_test test images of each class, in file order
        picks += [(te_img, int(i)) for i in np.flatnonzero(te_lab == c)[:n_test]]
    labels = np.array([c for n in (n_train, n_val, n_test) for c in range(10) for _ in range(n)])
    alpha = np.zeros((len(picks), RES, RES), np.float32)
    shifts = rng.integers(0, 5, (len(picks), 2))
    for r, (src, i) in enumerate(picks):
        dy, dx = (int(v) for v in shifts[r])
        alpha[r, dy:dy + 28, dx:dx + 28] = src[i].astype(np.float32) / 255.0
    white = np.ones((len(picks), 3), np.float32)
    images = _clean(alpha, white) if clean else _style(rng, alpha, white)
    return _splits("fashion-mnist", FASHION_MNIST_CLASSES, images, labels, (n_train, n_val, n_test))


def _colour(rng, name: str) -> np.ndarray:
    rgb = np.asarray(C.COLOURS[name][0], np.float32)
    return np.clip(rgb + rng.normal(0, 10, 3), 0, 255).astype(np.float32) / 255.0


def _free_placement(rng) -> tuple[float, float, float]:
    r = rng.uniform(5.5, 10.5)
    cx, cy = rng.uniform(r + 1, RES - r - 1, 2)
    return float(cx), float(cy), float(r)


@functools.lru_cache(maxsize=4)
def _generated(name: str, clean: bool = False) -> DatasetSplits:
    rng = np.random.default_rng([SEED, {"shapes": 2, "colors": 3}[name]])
    per_class = SIZES[name]
    classes = {"shapes": SHAPES_CLASSES, "colors": COLORS_CLASSES}[name]
    labels = np.array([c for n in per_class for c in range(len(classes)) for _ in range(n)])
    alpha = np.empty((len(labels), RES, RES), np.float32)
    rgb = np.empty((len(labels), 3), np.float32)
    # grey at low contrast on a grey background is no colour at all
    colours_for_shapes = [c for c in C.COLOUR_NAMES if c != "gray"]
    for r, label in enumerate(labels):
        if name == "shapes":
            shape = classes[label]
            colour = colours_for_shapes[int(rng.integers(len(colours_for_shapes)))]
        else:
            shape = C.SHAPE_NAMES[int(rng.integers(len(C.SHAPE_NAMES)))]
            colour = classes[label]
        cx, cy, rad = _free_placement(rng)
        alpha[r] = shape_mask(shape, cx, cy, rad)
        rgb[r] = _colour(rng, colour)
    images = _clean(alpha, rgb) if clean else _style(rng, alpha, rgb)
    return _splits(name, classes, images, labels, per_class)


TESTBEDS = ["fashion-mnist", "shapes", "colors"]


def build(name: str, fashion_mnist_root=None, clean: bool = False) -> DatasetSplits:
    """A testbed by name (cached: repeated calls return the same arrays; treat them as read-only).

    `clean=True` draws the same objects, labels and splits in the pretraining style instead (black
    background, full contrast, no noise): a diagnostic, and the "no domain shift" control.
    """
    if name == "fashion-mnist":
        return _fashion(str(fashion_mnist_root) if fashion_mnist_root else None, clean)
    if name in ("shapes", "colors"):
        return _generated(name, clean)
    raise ValueError(f"unknown testbed {name!r}; known: {', '.join(TESTBEDS)}")


@register_dataset("fashion-mnist", needs_root=False,
                  description="Fashion-MNIST-10 in the testbed style (dim: low contrast, sensor noise, dark-grey textured background); "
                              "offline ($ROBUSTPROMPT_FASHION_MNIST)")
def fashion_mnist(root=None) -> DatasetSplits:
    """Fashion-MNIST-10: train/val from the FMNIST train images, test from t10k; testbed style."""
    return build("fashion-mnist", root)


@register_dataset("shapes", needs_root=False, description="10 generated shapes (testbed style), offline")
def shapes(root=None) -> DatasetSplits:
    """10 generated shape classes (circle ... arrow), random colours, free sizes and positions."""
    return build("shapes")


@register_dataset("colors", needs_root=False, description="10 generated colours of random shapes (testbed style), offline")
def colors(root=None) -> DatasetSplits:
    """10 generated colour classes (red ... white) on random shapes, free sizes and positions."""
    return build("colors")
