"""Weak noise (ANPrompt's setting): mild image noise and mild text noise, deterministic by seed.

Specs are strings with a stable canonical ``name`` used as the results.json key:

=====================  ===================================================================
image spec             effect on float images in [0, 1] (B, C, H, W); output in [0, 1]
=====================  ===================================================================
``gaussian:SIGMA``     ``clip(x + SIGMA * N(0, 1))`` (default 0.02; ANPrompt uses 0.02, 0.05)
``blur:SIGMA``         Gaussian blur, std SIGMA pixels, kernel 2 * ceil(3 SIGMA) + 1,
                       reflect padding (default 1.0)
``jpeg:QUALITY``       JPEG round trip at QUALITY (1..100) via Pillow (default 50)
=====================  ===================================================================

=====================  ===================================================================
text spec              effect on class names / prompts
=====================  ===================================================================
``typo:RATE``          each character is, with probability RATE, swapped with its
                       neighbour or dropped; at least one edit, never an empty name
                       (default 0.1)
``template``           each class is put in an alternative template drawn from
                       ``ALT_TEMPLATES`` ("a blurry photo of a {}.", ...)
=====================  ===================================================================

Names: ``gaussian:0.02``, ``blur:1``, ``jpeg:50``, ``typo:0.1``, ``template`` (numbers written
with ``%g``, so "blur:1.0" and "blur:1" are the same key).

Randomness: image noise takes a ``torch.Generator`` or a ``seed``; text noise a ``seed`` and is
drawn per class name from ``random.Random(f"{seed}:{kind}:{name}")`` (independent of
PYTHONHASHSEED and of the other class names).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from robustprompt.errors import ConfigError

IMAGE_NOISE_KINDS = ("gaussian", "blur", "jpeg")
TEXT_NOISE_KINDS = ("typo", "template")
DEFAULT_PARAMS = {"gaussian": 0.02, "blur": 1.0, "jpeg": 50.0, "typo": 0.1}

#: ANPrompt-style evaluation set of image noises
DEFAULT_IMAGE_NOISES = ("gaussian:0.02", "gaussian:0.05", "blur:1.0", "jpeg:50")
#: text noises
DEFAULT_TEXT_NOISES = ("typo:0.1", "template")

#: alternative templates for the "template" text noise
ALT_TEMPLATES: Tuple[str, ...] = (
    "a blurry photo of a {}.",
    "a sketch of a {}.",
    "an image showing a {}.",
    "a low resolution photo of a {}.",
    "a cropped photo of a {}.",
    "a bad photo of a {}.",
    "a pixelated photo of a {}.",
    "a close-up photo of a {}.",
)


def _fmt(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class ImageNoise:
    """An image noise spec. ``kind`` in gaussian / blur / jpeg, ``param`` sigma or quality."""

    kind: str
    param: float

    @property
    def name(self) -> str:
        return f"{self.kind}:{_fmt(self.param)}"

    @property
    def domain(self) -> str:
        return "image"

    def __call__(self, images: Tensor, generator: Optional[torch.Generator] = None,
                 seed: Optional[int] = None) -> Tensor:
        return apply_image_noise(images, self, generator=generator, seed=seed)


@dataclass(frozen=True)
class TextNoise:
    """A text noise spec. ``kind`` typo (``param`` = rate) or template (``param`` unused)."""

    kind: str
    param: Optional[float] = None
    templates: Tuple[str, ...] = ALT_TEMPLATES

    @property
    def name(self) -> str:
        return self.kind if self.param is None else f"{self.kind}:{_fmt(self.param)}"

    @property
    def domain(self) -> str:
        return "text"

    def names(self, classnames: Sequence[str], seed: int = 0) -> List[str]:
        """Noisy class names (typo); the names unchanged for template noise."""
        if self.kind == "typo":
            return [typo(c, rate=float(self.param), seed=seed) for c in classnames]
        return list(classnames)

    def prompts(self, classnames: Sequence[str], template: str = "a photo of a {}.",
                seed: int = 0) -> List[str]:
        """Full prompts: ``template`` filled with noisy names (typo), or each clean name in an
        alternative template (template)."""
        if self.kind == "typo":
            return [template.format(n) for n in self.names(classnames, seed)]
        return [pick_template(c, seed=seed, templates=self.templates).format(c)
                for c in classnames]


NoiseSpec = Union[ImageNoise, TextNoise]


def parse_noise(spec: Union[str, NoiseSpec]) -> NoiseSpec:
    """Parse "gaussian:0.02", "blur:1.0", "jpeg:50", "typo:0.1", "template" (or a bare kind
    with its default parameter) into a spec with a stable ``name``."""
    if isinstance(spec, (ImageNoise, TextNoise)):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"noise spec must be a string like 'gaussian:0.02', got {spec!r}")
    text = spec.strip().lower()
    kind, _, arg = text.partition(":")
    kind, arg = kind.strip(), arg.strip()
    if kind not in IMAGE_NOISE_KINDS + TEXT_NOISE_KINDS:
        raise ConfigError(
            f"unknown noise {spec!r}: use one of "
            f"{', '.join(k + ':X' for k in IMAGE_NOISE_KINDS)}, typo:RATE, template"
        )
    if kind == "template":
        if arg:
            raise ConfigError(f"noise 'template' takes no parameter, got {spec!r}")
        return TextNoise("template")
    if arg:
        try:
            value = float(arg)
        except ValueError:
            raise ConfigError(f"cannot read the parameter of noise {spec!r}") from None
    else:
        value = DEFAULT_PARAMS[kind]
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"noise parameter must be a finite number >= 0 in {spec!r}")
    if kind == "jpeg":
        if value != int(value) or not 1 <= value <= 100:
            raise ConfigError(f"JPEG quality must be an integer in 1..100, got {spec!r}")
        return ImageNoise("jpeg", float(int(value)))
    if kind == "typo":
        if value > 1:
            raise ConfigError(f"typo rate must be in [0, 1], got {spec!r}")
        return TextNoise("typo", value)
    return ImageNoise(kind, value)


def parse_noise_list(specs: Union[str, Iterable[str]]) -> List[NoiseSpec]:
    """Parse "gaussian:0.02,jpeg:50" or a list of specs; duplicates (same name) dropped."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    out, seen = [], set()
    for s in specs:
        p = parse_noise(s)
        if p.name not in seen:
            seen.add(p.name)
            out.append(p)
    return out


# --------------------------------------------------------------------------------------------
# image noise


def gaussian_noise(images: Tensor, sigma: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """``clip(x + sigma * N(0, 1), 0, 1)``; noise drawn on the generator's device (CPU if None)."""
    x = images.float()
    if sigma == 0:
        return x.clone()
    dev = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(x.shape, generator=generator, device=dev, dtype=torch.float32)
    return (x + sigma * noise.to(x.device)).clamp(0.0, 1.0)


def gaussian_kernel1d(sigma: float, device=None) -> Tensor:
    radius = max(int(math.ceil(3 * sigma)), 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with std ``sigma`` pixels, kernel 2 * ceil(3 sigma) + 1,
    reflect padding (replicate where the image is smaller than the radius)."""
    x = images.float()
    if sigma == 0:
        return x.clone()
    b, c, h, w = x.shape
    k = gaussian_kernel1d(sigma, x.device)
    r = (k.numel() - 1) // 2
    mode = "reflect" if r < h and r < w else "replicate"
    y = F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w).clamp(0.0, 1.0)


def jpeg_compress(images: Tensor, quality: int) -> Tensor:
    """JPEG round trip at ``quality`` (Pillow, 8-bit, default 4:2:0 chroma subsampling),
    back to float in [0, 1] on the input's device."""
    import io

    import numpy as np
    from PIL import Image

    x = images.float()
    if x.shape[1] not in (1, 3):
        raise ValueError(f"JPEG needs 1 or 3 channels, got {x.shape[1]}")
    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for arr in u8:
        img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert(img.mode), dtype=np.uint8)
        out.append(torch.from_numpy(dec.copy()).reshape(arr.shape))
    y = torch.stack(out).permute(0, 3, 1, 2).float() / 255.0
    return y.to(x.device)


def apply_image_noise(images: Tensor, spec: Union[str, ImageNoise],
                      generator: Optional[torch.Generator] = None,
                      seed: Optional[int] = None) -> Tensor:
    """Apply an image noise spec to float images (B, C, H, W) in [0, 1]; returns [0, 1] floats.

    Gaussian noise is random: pass a ``generator`` (its state advances, e.g. across batches) or
    a ``seed`` (a fresh generator); the global RNG is used if neither is given. Blur and JPEG
    are deterministic.
    """
    spec = parse_noise(spec)
    if not isinstance(spec, ImageNoise):
        raise ConfigError(f"{spec.name!r} is a text noise, not an image noise")
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError("images must be a float tensor (B, C, H, W) in [0, 1]")
    if spec.kind == "gaussian":
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        return gaussian_noise(images, spec.param, generator)
    if spec.kind == "blur":
        return gaussian_blur(images, spec.param)
    return jpeg_compress(images, int(spec.param))


# --------------------------------------------------------------------------------------------
# text noise


def _rng(seed: int, kind: str, name: str) -> random.Random:
    return random.Random(f"{seed}:{kind}:{name}")


def typo(name: str, rate: float = 0.1, seed: int = 0) -> str:
    """Character swaps and drops in a class name, deterministic by (seed, name).

    Each non-space character is, with probability ``rate``, dropped or swapped with the next
    (non-space, different) character; if that left the name unchanged, one such edit is forced.
    The result is never empty: a one-letter name has its letter doubled instead. rate 0 returns
    the name unchanged.
    """
    if not name or rate <= 0:
        return name
    rng = _rng(seed, "typo", name)
    chars = list(name)
    out: List[str] = []
    i = 0
    while i < len(chars):
        ch = chars[i]
        if ch != " " and rng.random() < rate:
            can_swap = i + 1 < len(chars) and chars[i + 1] != " " and chars[i + 1] != ch
            if can_swap and rng.random() < 0.5:
                out.extend([chars[i + 1], ch])
                i += 2
                continue
            i += 1  # drop
            continue
        out.append(ch)
        i += 1
    result = "".join(out)
    if result.strip() and result != name:
        return result
    # force one edit
    letters = [j for j, c in enumerate(chars) if c != " "]
    if len(letters) <= 1:
        j = letters[0] if letters else 0
        return name[:j] + name[j] + name[j:]  # double the only letter
    swaps = [j for j in letters[:-1] if chars[j + 1] != " " and chars[j + 1] != chars[j]]
    if swaps and rng.random() < 0.5:
        j = rng.choice(swaps)
        chars[j], chars[j + 1] = chars[j + 1], chars[j]
        return "".join(chars)
    j = rng.choice(letters)
    return name[:j] + name[j + 1:]


def pick_template(name: str, seed: int = 0, templates: Sequence[str] = ALT_TEMPLATES) -> str:
    """The alternative template for a class name, deterministic by (seed, name)."""
    if not templates:
        raise ConfigError("the list of alternative templates is empty")
    return _rng(seed, "template", name).choice(list(templates))


def apply_text_noise(classnames: Sequence[str], spec: Union[str, TextNoise],
                     template: str = "a photo of a {}.", seed: int = 0) -> List[str]:
    """Noisy prompts for the class names under a text noise spec (see :class:`TextNoise`)."""
    spec = parse_noise(spec)
    if not isinstance(spec, TextNoise):
        raise ConfigError(f"{spec.name!r} is an image noise, not a text noise")
    return spec.prompts(classnames, template=template, seed=seed)
