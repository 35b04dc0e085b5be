"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompts coupled text -> vision at every layer.

Text: 2 context tokens replacing "a photo" in "a photo of a {}." (layer 0, in the token
embeddings) and N(0, 0.02) prompts replacing positions 1..2 at layers 1..depth-1. Vision: at every
prompted layer l the vision prompts are Linear_l(text prompts of layer l) (text_width ->
vision_width), appended after CLS+patches at layer 0 and replacing the last n tokens later, as in
the authors' trainers/maple.py and clip/model.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..backbone import TowerEdits
from ..components.deep_prompts import DEPTH_RULE_HELP, DeepTextPrompt, PromptCoupling, resolve_depth, vision_prompt_edits
from ..dataclass_io import check_at_least, check_positive
from .ivlp import DeepVLPrompting, check_ctx_init, check_depth
from .registry import register_method


@dataclass(frozen=True)
class MaPLeConfig:
    n_ctx: int = field(default=2, metadata={"help": "learnable text tokens per prompted layer (positions 1..n)"})
    ctx_init: str = field(default="a photo of a", metadata={
        "help": "prompt words; its first n_ctx tokens initialise the layer-0 context ('' = random 'X X')"})
    depth: int = field(default=9, metadata={"help": "prompted layers from layer 0 in both towers (of 12 in ViT-B)"})
    depth_rule: Literal["scale", "clamp", "exact"] = field(default="scale", metadata={"help": DEPTH_RULE_HELP})
    tie_init: bool = field(default=True, metadata={
        "help": "deeper coupling layers start as copies of one initialisation (the authors' _get_clones)"})
    init_std: float = field(default=0.02, metadata={"help": "std of the N(0, std) init of deep text prompts"})

    def __post_init__(self):
        check_at_least(self, 1, "n_ctx")
        check_depth(self.depth, self.depth_rule, "depth", 1)
        check_ctx_init(self.ctx_init, self.n_ctx)
        check_positive(self, "init_std")


@register_method("maple", MaPLeConfig)
class MaPLe(DeepVLPrompting):
    """MaPLe: deep text prompts with vision prompts coupled to them by a Linear per layer."""

    def __init__(self, backbone, classnames, template, config: MaPLeConfig):
        super().__init__(backbone, classnames, template, config)
        # one depth for both towers: the coupled prompts need the same layers on each side
        self.depth = min(resolve_depth(config.depth, backbone.text_layers, config.depth_rule),
                         resolve_depth(config.depth, backbone.vision_layers, config.depth_rule))
        self.text_prompt = DeepTextPrompt(backbone, config.n_ctx, self.depth, config.ctx_init, config.init_std)
        self.coupling = PromptCoupling(range(self.depth), backbone.text_width, backbone.vision_width, config.tie_init)

    def vision_prompts(self):
        """{layer: (n_ctx, vision_width)}: the coupling projection of each layer's text prompts."""
        return self.coupling(self.text_prompt.prompts())

    def vision_prompt_layout(self) -> tuple[int, int]:
        return self.depth, self.config.n_ctx

    def vision_edits(self) -> TowerEdits:
        return TowerEdits(layers=vision_prompt_edits(self.vision_prompts()))
