"""Image transforms: PIL image -> float tensor (C, H, W) in [0, 1].

No normalisation here: CLIP's mean/std live inside the model, so attacks and noise act on
[0, 1] pixels.
"""

from __future__ import annotations

from typing import Callable

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from ..errors import ConfigError


class ToRGB:
    """Convert any PIL mode (L, RGBA, P, ...) to RGB; a class, not a lambda, so workers can pickle it."""

    def __call__(self, img):
        return img if img.mode == "RGB" else img.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


def _check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ConfigError(f"image resolution must be a positive integer, got {resolution!r}")
    return resolution


def train_transform(resolution: int, scale: tuple[float, float] = (0.08, 1.0)) -> Callable:
    """Random resized crop (bicubic, area fraction in `scale`) + horizontal flip, then to [0, 1]."""
    resolution = _check_resolution(resolution)
    lo, hi = float(scale[0]), float(scale[1])
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"crop scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
    return T.Compose(
        [
            ToRGB(),
            T.RandomResizedCrop(resolution, scale=(lo, hi), interpolation=InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
        ]
    )


def eval_transform(resolution: int) -> Callable:
    """CLIP's preprocessing without normalisation: shortest side to `resolution` (bicubic), center crop."""
    resolution = _check_resolution(resolution)
    return T.Compose(
        [
            ToRGB(),
            T.Resize(resolution, interpolation=InterpolationMode.BICUBIC),
            T.CenterCrop(resolution),
            T.ToTensor(),
        ]
    )
