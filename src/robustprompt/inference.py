"""Prediction with a trained run: top-k class names with probabilities.

    import robustprompt
    robustprompt.predict("runs/coop-eurosat-s1", ["photo.jpg"], top_k=3)
    # [[('Forest', 0.91), ('Pasture', 0.05), ('River', 0.02)]]
    robustprompt.predict(run, images, classes=["cat", "dog", "car"])   # prompts transfer to new classes

`Predictor` keeps the loaded run and the class features of each class list, for many calls.
Images are decoded and checked before anything is computed; a missing or undecodable image is
a DataError naming it. Class features are computed once per class list; probabilities are the
softmax of the method's logits (CLIP's logit scale included).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence, Union

import torch

from .errors import ConfigError, DataError

if TYPE_CHECKING:
    import PIL.Image

ImageLike = Union[str, Path, "PIL.Image.Image"]


def parse_classes(classes: str | Iterable[str]) -> list[str]:
    """'a, b,c' or ['a', 'b', 'c'] -> ['a', 'b', 'c']; empty or duplicate names are a ConfigError."""
    items = classes.split(",") if isinstance(classes, str) else list(classes)
    names = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"class names must be strings, got {item!r}")
        names.append(" ".join(item.split()))
    if not names or any(not n for n in names):
        raise ConfigError(f"empty class name in {classes!r}" if names else "no class names given")
    seen: dict[str, str] = {}
    for n in names:
        key = unicodedata.normalize("NFKC", n).casefold()
        if key in seen:
            same = repr(n) if seen[key] == n else f"{seen[key]!r} and {n!r}"
            raise ConfigError(f"duplicate class name {same} in the class list")
        seen[key] = n
    return names


def load_images(images: Sequence[ImageLike]):
    """Decode every image as RGB before any computation; the first bad one is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    out = []
    for img in images:
        if isinstance(img, Image.Image):
            out.append(img.convert("RGB"))
            continue
        if not isinstance(img, (str, Path)):
            raise DataError(f"expected an image path or a PIL image, got {type(img).__name__}")
        p = Path(img).expanduser()
        if not p.exists():
            raise DataError(f"image not found: {p}")
        if not p.is_file():
            raise DataError(f"not an image file: {p}")
        try:
            with Image.open(p) as im:
                im.load()
                out.append(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"image does not decode: {p} ({e.__class__.__name__})") from None
    return out


class Predictor:
    """A loaded run, ready to classify images among its own or other class names."""

    def __init__(self, run: str | Path, *, device: str | torch.device = "cpu"):
        from .engine.runs import load_run

        self.device = torch.device(device)
        self.cfg, self.method = load_run(run, self.device)
        self.method.eval()
        self.classnames = list(self.method.classnames)
        self._contexts: dict[tuple[str, ...], object] = {}

    def context(self, classnames: Sequence[str]):
        from .engine.precision import autocast

        key = tuple(classnames)
        if key not in self._contexts:
            try:
                with torch.no_grad(), autocast(self.cfg.train.precision, self.device):
                    self._contexts[key] = self.method.class_context(key)
            except ValueError as e:  # e.g. a class-specific context trained for another number of classes
                raise ConfigError(f"these class names do not fit the run: {e}") from None
        return self._contexts[key]

    @torch.no_grad()
    def probabilities(self, images: Sequence[ImageLike], classes=None, *, batch_size: int = 32):
        """(probabilities (N, C) as a float32 tensor, class names)."""
        from .data.transforms import eval_transform
        from .engine.precision import autocast

        names = self.classnames if classes is None else parse_classes(classes)
        if isinstance(images, (str, Path)) or hasattr(images, "convert"):
            images = [images]
        images = list(images)
        if not images:
            raise DataError("no images given")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        decoded = load_images(images)
        ctx = self.context(names)
        transform = eval_transform(self.method.backbone.image_size)
        out = []
        for i in range(0, len(decoded), batch_size):
            x = torch.stack([transform(im) for im in decoded[i:i + batch_size]]).to(self.device)
            with autocast(self.cfg.train.precision, self.device):
                logits = self.method(x, ctx)
            out.append(torch.softmax(logits.float(), dim=-1).cpu())
        return torch.cat(out), names

    def predict(self, images: Sequence[ImageLike], classes=None, top_k: int = 5, *,
                batch_size: int = 32) -> list[list[tuple[str, float]]]:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
        probs, names = self.probabilities(images, classes, batch_size=batch_size)
        k = min(top_k, len(names))
        values, indices = probs.topk(k, dim=-1)
        return [[(names[j], float(v)) for v, j in zip(vs.tolist(), ix.tolist())] for vs, ix in zip(values, indices)]


def predict(run: str | Path, images: Sequence[ImageLike] | ImageLike, classes=None, top_k: int = 5, *,
            device: str | torch.device = "cpu", batch_size: int = 32) -> list[list[tuple[str, float]]]:
    """Top-k (class name, probability) per image, best first, for the run in `run`.

    `images`: paths or PIL images (one or a list). `classes`: None for the run's own classes, or
    other names ("a,b,c" or a list) to which the learned prompts transfer. Checks the arguments and
    decodes every image before loading the model.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    if classes is not None:
        classes = parse_classes(classes)
    if isinstance(images, (str, Path)) or hasattr(images, "convert"):
        images = [images]
    images = list(images)
    if not images:
        raise DataError("no images given")
    decoded = load_images(images)  # fail on a bad image before the model loads
    return Predictor(run, device=device).predict(decoded, classes, top_k, batch_size=batch_size)
