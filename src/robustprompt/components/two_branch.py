"""The two-branch head that MMRL introduced and ANPrompt keeps: tokens in the higher layers of both
towers, a class-token feature v_cls and a representation feature v_rep, fused on the training
classes and read from the class token alone on any other class set, and trained with both branches'
cross-entropy plus cosine agreement with the frozen model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..dataclass_io import check, check_at_least


def prompted_layers(depth: int, first_layer: int, ref_depth: int) -> list[int]:
    """0-based block indices that carry anti-noise prompts on a tower of `depth` blocks.

    first_layer is 1-based on a tower of ref_depth blocks (6 of 12 -> blocks 5..11); other depths
    scale proportionally: start = floor((first_layer - 1) * depth / ref_depth) (3 blocks -> 1..2,
    24 blocks -> 10..23).
    """
    start = ((first_layer - 1) * depth) // ref_depth
    return list(range(min(start, depth - 1), depth))


def check_layer_range(cfg) -> None:
    """Config-time validation of the fields prompted_layers reads (layer_ref_depth, first_layer)."""
    check_at_least(cfg, 1, "layer_ref_depth")
    check(1 <= cfg.first_layer <= cfg.layer_ref_depth,
          f"first_layer must be in 1..layer_ref_depth ({cfg.layer_ref_depth}), got {cfg.first_layer}")


def fused_logits(method, v_cls: Tensor, v_rep: Tensor, ctx, weight: float) -> Tensor:
    """weight * z_cls + (1 - weight) * z_rep on the classes the method was trained on; z_cls elsewhere."""
    z_cls = method.logits_from_features(v_cls, ctx)
    if not ctx.seen:
        return z_cls
    return weight * z_cls + (1.0 - weight) * method.logits_from_features(v_rep, ctx)


class TwoBranchHead:
    """Mixin for a `Method` with `vision_features(images) -> (v_cls, v_rep)` and a `fusion_weight`: the image
    side is the class-token feature, the logits are `fused_logits`."""

    fusion_weight: float

    def image_features(self, images: Tensor) -> Tensor:
        return self.vision_features(images)[0]

    def forward(self, images: Tensor, ctx) -> Tensor:
        v_cls, v_rep = self.vision_features(images)
        return fused_logits(self, v_cls, v_rep, ctx, self.fusion_weight)

    def branch_terms(self, images: Tensor, labels: Tensor, ctx) -> dict[str, Tensor]:
        """`branch_losses` of these images against the frozen features `self.text_frozen`, with v_rep."""
        if not ctx.seen:
            raise ValueError(f"{type(self).__name__}'s loss needs the context of its training classes (class_context())")
        v_cls, v_rep = self.vision_features(images)
        return {**branch_losses(self, images, v_cls, v_rep, labels, ctx, self.fusion_weight, self.text_frozen),
                "v_rep": v_rep}


def branch_losses(method, images: Tensor, v_cls: Tensor, v_rep: Tensor, labels: Tensor, ctx, weight: float,
                  text_frozen: Tensor) -> dict[str, Tensor]:
    """z_cls, and the terms: ce = weight * CE(z_cls) + (1 - weight) * CE(z_rep) (with ce_cls, ce_rep), and
    the cosine disagreements of v_cls with the frozen image feature (img) and of the class features
    with the frozen text features (txt)."""
    z_cls = method.logits_from_features(v_cls, ctx)
    z_rep = method.logits_from_features(v_rep, ctx)
    ce_cls, ce_rep = F.cross_entropy(z_cls, labels), F.cross_entropy(z_rep, labels)
    with torch.no_grad():
        v_frozen = method.backbone.encode_image(images)
    img = 1.0 - F.cosine_similarity(v_cls.float(), v_frozen.float(), dim=-1).mean()
    txt = 1.0 - F.cosine_similarity(ctx.features.float(), text_frozen, dim=-1).mean()
    return {"z_cls": z_cls, "ce": weight * ce_cls + (1.0 - weight) * ce_rep, "ce_cls": ce_cls, "ce_rep": ce_rep,
            "img": img, "txt": txt}
