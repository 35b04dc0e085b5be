"""IVLP (independent vision-language prompting, the baseline of MaPLe, Khattak et al., CVPR 2023).

Deep prompts in both towers, learnt independently: text context at positions 1..n (layer 0 in the
token embeddings, initialised from "a photo of a"; layers 1..depth_text-1 replaced, N(0, 0.02)) and
vision prompts appended after CLS+patches at layer 0 and replaced at layers 1..depth_vision-1
(N(0, 0.02)), as in the authors' trainers/independentVL.py and clip/model.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

from ..backbone import TowerEdits
from ..components.deep_prompts import (DEPTH_RULE_HELP, REFERENCE_LAYERS, DeepTextPrompt, LayerPrompts,
                                       resolve_depth, vision_prompt_edits)
from ..dataclass_io import check, check_at_least, check_positive
from .base import Method
from .registry import register_method


def check_depth(depth: int, rule: str, name: str, minimum: int) -> None:
    """Config-time validation of a prompt depth (the model's own depth is checked when the method is built)."""
    check(depth >= minimum, f"{name} must be >= {minimum}, got {depth}")
    check(rule != "scale" or depth <= REFERENCE_LAYERS,
          f"{name} {depth} > {REFERENCE_LAYERS}: depth_rule 'scale' states depths for a {REFERENCE_LAYERS}-layer "
          "tower; use depth_rule 'exact'")


def check_ctx_init(ctx_init: str, n_ctx: int, name: str = "n_ctx") -> None:
    check(not ctx_init or len(ctx_init.split()) >= n_ctx,
          f"ctx_init {ctx_init!r} has fewer words than {name}={n_ctx}; use a longer ctx_init or ''")


class DeepVLPrompting(Method):
    """Shared forward of deep vision-language prompt methods (IVLP, MaPLe and their adversarial and
    refined variants): a `DeepTextPrompt` as `self.text_prompt`; subclasses say which edits each
    tower gets by overriding `text_edits` / `vision_edits` (add refiners or collected layers there)."""

    image_towers = ("vit",)  # prompts enter the image transformer's layers

    text_prompt: DeepTextPrompt

    def text_edits(self) -> TowerEdits:
        return TowerEdits(layers=self.text_prompt.edits())

    def vision_edits(self) -> TowerEdits:
        raise NotImplementedError

    def vision_prompt_layout(self) -> tuple[int, int]:
        """(prompted vision layers counted from layer 0, prompt tokens appended per layer)."""
        raise NotImplementedError

    def class_features(self, classnames: tuple[str, ...]) -> Tensor:
        return self.text_prompt.encode(classnames, self.text_edits()).features

    def image_features(self, images: Tensor) -> Tensor:
        return self.backbone.vision(images, self.vision_edits()).features


@dataclass(frozen=True)
class IVLPConfig:
    n_ctx_text: int = field(default=2, metadata={"help": "learnable text tokens per prompted layer (positions 1..n)"})
    n_ctx_vision: int = field(default=2, metadata={"help": "learnable vision tokens per prompted layer (appended)"})
    depth_text: int = field(default=9, metadata={"help": "prompted text layers from layer 0 (of 12 in ViT-B), >= 1"})
    depth_vision: int = field(default=9, metadata={"help": "prompted vision layers from layer 0; 0 = text only"})
    ctx_init: str = field(default="a photo of a", metadata={
        "help": "prompt words; its first n_ctx_text tokens initialise the layer-0 text context ('' = random 'X X')"})
    depth_rule: Literal["scale", "clamp", "exact"] = field(default="scale", metadata={"help": DEPTH_RULE_HELP})
    init_std: float = field(default=0.02, metadata={"help": "std of the N(0, std) init of random prompt tokens"})

    def __post_init__(self):
        check_at_least(self, 1, "n_ctx_text", "n_ctx_vision")
        check_depth(self.depth_text, self.depth_rule, "depth_text", 1)
        check_depth(self.depth_vision, self.depth_rule, "depth_vision", 0)
        check_ctx_init(self.ctx_init, self.n_ctx_text, "n_ctx_text")
        check_positive(self, "init_std")


@register_method("ivlp", IVLPConfig)
class IVLP(DeepVLPrompting):
    """IVLP: independent deep text and vision prompts (2+2 tokens, depth 9)."""

    def __init__(self, backbone, classnames, template, config: IVLPConfig):
        super().__init__(backbone, classnames, template, config)
        self.depth_text = resolve_depth(config.depth_text, backbone.text_layers, config.depth_rule, what="depth_text")
        self.depth_vision = resolve_depth(config.depth_vision, backbone.vision_layers, config.depth_rule,
                                          what="depth_vision")
        self.text_prompt = DeepTextPrompt(backbone, config.n_ctx_text, self.depth_text, config.ctx_init,
                                          config.init_std)
        self.vision_prompt = (LayerPrompts(range(self.depth_vision), config.n_ctx_vision, backbone.vision_width,
                                           config.init_std) if self.depth_vision else None)
        if self.vision_prompt is None:
            self.frozen_image_side = True  # language-only IVLP: the image tower is frozen, its features may be cached

    def vision_prompt_layout(self) -> tuple[int, int]:
        return self.depth_vision, self.config.n_ctx_vision

    def vision_edits(self) -> TowerEdits:
        if self.vision_prompt is None:
            return TowerEdits()
        return TowerEdits(layers=vision_prompt_edits(self.vision_prompt.prompts()))
