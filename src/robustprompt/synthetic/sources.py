"""Offline image sources: Fashion-MNIST (Debian's `dataset-fashion-mnist`) and DejaVu fonts.

Nothing here downloads anything. Locations are configurable:

- Fashion-MNIST: function argument, else `$ROBUSTPROMPT_FASHION_MNIST`, else
  `/usr/share/datasets/fashion-mnist` (where `apt-get install dataset-fashion-mnist` puts it).
  The folder holds `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` (or the same names without `.gz`).
- Fonts: `$ROBUSTPROMPT_FONT_DIR`, else `/usr/share/fonts/truetype/dejavu` (`fonts-dejavu-core`).
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np

from ..errors import DataError

FASHION_MNIST_ENV = "ROBUSTPROMPT_FASHION_MNIST"
FASHION_MNIST_DEFAULT = "/usr/share/datasets/fashion-mnist"
FONT_DIR_ENV = "ROBUSTPROMPT_FONT_DIR"
FONT_DIR_DEFAULT = "/usr/share/fonts/truetype/dejavu"

# Fashion-MNIST's ten labels, in label order, as natural-language class names.
FASHION_MNIST_CLASSES = [
    "t-shirt", "trousers", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]


def fashion_mnist_dir(root: str | os.PathLike | None = None) -> Path:
    """The Fashion-MNIST folder: `root`, else $ROBUSTPROMPT_FASHION_MNIST, else Debian's location."""
    p = Path(root or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT).expanduser()
    if not p.is_dir():
        raise DataError(
            f"Fashion-MNIST not found at {p}; install it with `apt-get install dataset-fashion-mnist` "
            f"or point ${FASHION_MNIST_ENV} (or --fashion-mnist) at a folder holding "
            "train-images-idx3-ubyte.gz etc."
        )
    return p


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DataError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    n = int(np.prod(dims))
    if len(data) - offset != n:
        raise DataError(f"{path} is truncated: expected {n} bytes of data, found {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


@functools.lru_cache(maxsize=4)
def _load_split(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    base = Path(folder)
    out = []
    for kind in ("images-idx3", "labels-idx1"):
        stem = f"{split}-{kind}-ubyte"
        path = base / f"{stem}.gz"
        if not path.is_file():
            path = base / stem
        if not path.is_file():
            raise DataError(f"Fashion-MNIST file missing: {base / (stem + '.gz')}")
        out.append(_read_idx(path))
    images, labels = out
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DataError(f"Fashion-MNIST {split} files in {base} do not match (images {images.shape}, labels {labels.shape})")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_fashion_mnist(split: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) for split "train" (60000) or "test" (10000)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    return _load_split(str(fashion_mnist_dir(root).resolve()), "train" if split == "train" else "t10k")


def font_dir() -> Path:
    return Path(os.environ.get(FONT_DIR_ENV) or FONT_DIR_DEFAULT).expanduser()


# Bold faces: thin strokes vanish at 32 px.
FONT_FILES = ["DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf"]


def font_paths() -> list[Path]:
    """The DejaVu fonts the generator renders letters and digits with; raises if none is installed."""
    d = font_dir()
    paths = [d / f for f in FONT_FILES if (d / f).is_file()]
    if not paths:
        raise DataError(
            f"no DejaVu fonts in {d}; install them with `apt-get install fonts-dejavu-core` "
            f"or point ${FONT_DIR_ENV} at a folder holding {FONT_FILES[0]}"
        )
    return paths
