"""The data interface every dataset is served through.

A dataset is a `DatasetSplits`: class names (index = label), prompt templates, and train / val /
test lists of `Datum`. A datum points at an image file, or (for offline sets held in memory) at a
row of `DatasetSplits.images`. Images are served as float tensors in [0, 1]; CLIP normalisation
lives in the model, never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

DEFAULT_TEMPLATE = "a photo of a {}."


@dataclass(frozen=True)
class Datum:
    path: str  # absolute image path; "" when the image is held in memory
    label: int
    classname: str
    key: int = -1  # row of DatasetSplits.images for in-memory images


@dataclass
class DatasetSplits:
    name: str
    classnames: list[str]
    train: list[Datum]
    val: list[Datum]
    test: list[Datum]
    templates: list[str] = field(default_factory=lambda: [DEFAULT_TEMPLATE])
    images: np.ndarray | None = None  # uint8 (N, H, W, 3) for in-memory datasets
    # class name -> sentences describing it (the CuPL / HPT file format), for methods whose targets are
    # built from descriptions; None when the dataset has none
    descriptions: dict[str, list[str]] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    @property
    def template(self) -> str:
        """The single template prompt methods initialise from (the field's per-dataset choice)."""
        return self.templates[0]

    def with_splits(self, **splits: list[Datum]) -> "DatasetSplits":
        return replace(self, **splits)


def load_image(datum: Datum, images: np.ndarray | None = None) -> Image.Image:
    """Decode one image as RGB; a file that is missing or does not decode raises DataError."""
    if not datum.path:
        if images is None or datum.key < 0:
            raise DataError(f"in-memory datum {datum} has no image array")
        return Image.fromarray(images[datum.key]).convert("RGB")
    try:
        with Image.open(datum.path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image not found: {datum.path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"image does not decode: {datum.path} ({e.__class__.__name__})") from None


class ImageDataset(torch.utils.data.Dataset):
    """(image tensor in [0, 1], label) pairs for a list of Datum."""

    def __init__(self, items: Sequence[Datum], transform: Callable, images: np.ndarray | None = None):
        self.items = list(items)
        self.transform = transform
        self.images = images

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        d = self.items[i]
        return self.transform(load_image(d, self.images)), d.label
