"""KgCoOp (Yao et al., CVPR 2023): CoOp kept close to the hand-crafted prompt's text features.

loss = CE + kg_weight * (1 - mean_c cos(t_c^learned, t_c^zero-shot)), with t^zero-shot the frozen
text features of the dataset's template, computed once per set of class names (authors'
trainers/kgcoop.py: W = 8.0, 4 context tokens initialised from "a photo of a").

The hand-crafted prompt is the dataset's template (CoOp's CUSTOM_TEMPLATES), except where KgCoOp's
own CUSTOM_TEMPLATES differs from CoOp's: for DTD it is "a photo of a {}, a type of texture."
(htyao89/KgCoOp@c43ccc3, KgCoOp/trainers/kgcoop.py), where CoOp's is "{} texture.".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..dataclass_io import check, check_at_least
from .base import TextContext
from .coop import CoOp, CoOpConfig
from .registry import register_method


# [code] KgCoOp's CUSTOM_TEMPLATES where it differs from CoOp's, keyed by CoOp's template of the dataset
KGCOOP_TEMPLATES = {"{} texture.": "a photo of a {}, a type of texture."}


@dataclass(frozen=True)
class KgCoOpConfig(CoOpConfig):
    n_ctx: int = field(default=4, metadata={"help": "number of learnable context vectors"})
    ctx_init: str = field(default="a photo of a", metadata={
        "help": "initial words, e.g. 'a photo of a' (n_ctx <= its tokens); '' = random"})
    kg_weight: float = field(default=8.0, metadata={
        "help": "lambda: weight of 1 - mean cos(learned, zero-shot class text features)"})
    kg_template: str = field(default="", metadata={
        "help": "hand-crafted template with {} for the zero-shot features; '' = the dataset's, as KgCoOp's "
                "code has it (DTD: 'a photo of a {}, a type of texture.')"})

    def __post_init__(self):
        super().__post_init__()
        check_at_least(self, 0, "kg_weight")
        check(not self.kg_template or "{}" in self.kg_template,
              f"kg_template must contain {{}}, got {self.kg_template!r}")


@register_method("kgcoop", KgCoOpConfig)
class KgCoOp(CoOp):
    """KgCoOp: CoOp + lambda * (1 - cos) to the hand-crafted prompt's text features."""

    def __init__(self, backbone, classnames, template, config: KgCoOpConfig):
        super().__init__(backbone, classnames, template, config)
        self._zeroshot: dict[tuple[str, ...], Tensor] = {}

    def zeroshot_features(self, classnames: tuple[str, ...]) -> Tensor:
        """(C, E) L2-normalised frozen features of the hand-crafted prompts, computed once per name set."""
        names = tuple(classnames)
        if names not in self._zeroshot:
            template = self.config.kg_template or KGCOOP_TEMPLATES.get(self.template, self.template)
            with torch.autocast(self.backbone.device.type, enabled=False):  # fp32 even inside bf16 training
                feats = self.backbone.text_features([template.format(c) for c in names])
            self._zeroshot[names] = feats.detach().float()
        return self._zeroshot[names]

    def kg_term(self, ctx: TextContext) -> Tensor:
        zs = self.zeroshot_features(ctx.classnames).to(ctx.features.device, torch.float32)
        return 1.0 - F.cosine_similarity(ctx.features.float(), zs, dim=-1, eps=1e-7).mean()

    def loss_from_features(self, image_features: Tensor, labels: Tensor, ctx: TextContext):
        ce, stats = super().loss_from_features(image_features, labels, ctx)
        kg = self.kg_term(ctx)
        return ce + self.config.kg_weight * kg, {**stats, "kg": kg.detach()}

    def loss(self, images: Tensor, labels: Tensor, ctx: TextContext):
        return self.loss_from_features(self.image_features(images), labels, ctx)
