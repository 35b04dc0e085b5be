"""Zero-shot CLIP: the dataset's template, no learnable parameters."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from .base import Method
from .registry import register_method


@dataclass(frozen=True)
class ZeroShotConfig:
    template: str = field(default="", metadata={"help": "prompt template with {}; empty = the dataset's"})

    def __post_init__(self):
        if self.template and "{}" not in self.template:
            raise ValueError(f"template must contain {{}}, got {self.template!r}")


@register_method("zeroshot", ZeroShotConfig)
class ZeroShotCLIP(Method):
    """Zero-shot CLIP with the dataset's prompt template."""

    frozen_image_side = True

    def class_features(self, classnames: tuple[str, ...]) -> Tensor:
        template = self.config.template or self.template
        return self.backbone.text_features([template.format(c) for c in classnames])
