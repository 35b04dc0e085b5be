"""NAP-Tuning (Zhang et al., 2025, "Neural Augmented Prompt Tuning for Adversarially Robust VLMs").

[paper] AdvPT extended to text + vision prompts over many layers, plus a Neural Augmentor: token
refiners (residual modules) that reconstruct purified features. The paper's code is not public; the
defaults follow the first author's development code, jiamingzhang94/MAPT at commit 9a9bb04
(`clip_m/model.py`, `trainers/maple.py`, `train.py`, `configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml`),
read from a public code index and checked by a fidelity fixture (tests/test_fidelity.py) [code]:
- prompts: MaPLe's (the code's trainer is a MaPLe trainer): text context at positions 1..n, deep text
  prompts, vision prompts coupled to them by a Linear per layer; N_CTX 16 (with more than 4 tokens the
  code ignores CTX_INIT and starts from random "X X ..." tokens) and PROMPT_DEPTH 12 (`train.py`);
- refiners: `Linear(d, 2d) -> ReLU -> Linear(2d, d)`, default init, no norm, applied as
  `prefix + refiner(prefix)` to the vision tokens (CLS and patches, not the prompts) entering each
  deep-prompted block 1..depth-1 (here: the outputs of blocks 0..depth-2, before the next prompts are
  put in); no text refiner (the code's text branch leaves `prefix_refined = prefix`);
- loss: the engine's adversarial objective (the preset: 0.5 CE(clean) + 0.5 CE(adversarial), PGD-5
  from a zero start); the purification term below exists in the code but is commented out (w_pur = 0).
`naptuning-ivlp` is the same refiners on IVLP's independent prompts (issue 15's first reading of the code,
and the base of this project's first reconstruction, preset `naptuning-v1`, docs/adversarial.md):
refiners after the block output of every prompted layer on `refine_vision` / `refine_text` tokens (with
selection "prompts" only the last prompted layer has one: at earlier layers the next layer's prompts
overwrite the refined tokens), a layer-normed GELU bottleneck, and the purification term
w_pur * mean_i sum_l ||R_l(h_l(x_adv_i))[CLS] - stopgrad(R_l(h_l(x_i)))[CLS]||^2 / width over the
refined vision layers and the attacked images [ours].
Without `adv.enabled` the method trains with plain cross-entropy, like MaPLe / IVLP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ..backbone import TowerEdits
from ..components.refiner import RefinerHook, TokenRefiner, text_positions, vision_positions
from ..dataclass_io import check, check_at_least, check_positive
from .base import TextContext
from .ivlp import IVLP, IVLPConfig
from .maple import MaPLe, MaPLeConfig
from .registry import register_method

VisionSelection = Literal["all", "prompts", "cls", "tokens", "none"]
TextSelection = Literal["all", "prompts", "cls", "none"]


@dataclass(frozen=True)
class RefinerFields:
    """The refiner fields of both NAP-Tuning configs (a mixin: the prompt fields come from MaPLe / IVLP)."""

    refiner_ratio: float = field(default=2.0, metadata={
        "help": "refiner hidden width as a multiple of the tower width [code: 2; ours (v1): 0.25]"})
    refiner_activation: Literal["gelu", "relu"] = field(default="relu", metadata={
        "help": "refiner activation [code: relu; ours (v1): gelu]"})
    refiner_norm: bool = field(default=False, metadata={
        "help": "layer norm before the refiner's first linear [code: none; ours (v1): yes]"})
    refiner_init: Literal["default", "normal"] = field(default="default", metadata={
        "help": "default: nn.Linear's own init [code]; normal: W_up ~ N(0, refiner_up_init_std), bias 0 [ours (v1)]"})
    refiner_up_init_std: float = field(default=1e-4, metadata={
        "help": "with refiner_init normal: std of W_up at init; 0 = exactly the identity at init [ours]"})
    refiner_site: Literal["input", "output"] = field(default="input", metadata={
        "help": "input: on the tokens entering each deep-prompted block 1..depth-1 [code]; output: after the "
                "output of every prompted block 0..depth-1 [ours (v1)]"})
    refine_vision: VisionSelection = field(default="tokens", metadata={
        "help": "vision tokens a refiner acts on: tokens (CLS and patches) [code] | all | prompts (the appended "
                "prompt tokens) | cls | none [ours (v1): all]"})
    refine_text: TextSelection = field(default="none", metadata={
        "help": "text tokens a refiner acts on: none [code] | all | prompts (positions 1..n) | cls (the pooled EOT "
                "token) [ours (v1): prompts]"})
    w_pur: float = field(default=0.0, metadata={
        "help": "weight of the purification term (refined adversarial CLS states vs clean ones) [code: 0, the "
                "term is commented out; ours (v1): 1]"})

    def check_refiners(self) -> None:
        check_positive(self, "refiner_ratio")
        check_at_least(self, 0, "refiner_up_init_std", "w_pur")
        for tower, sel in (("refine_vision", self.refine_vision), ("refine_text", self.refine_text)):
            check(not (self.refiner_site == "input" and sel == "prompts"),
                  f"{tower}=prompts needs refiner_site=output (at a block's input the prompts are replaced)")


@dataclass(frozen=True)
class NAPTuningConfig(RefinerFields, MaPLeConfig):
    n_ctx: int = field(default=16, metadata={
        "help": "learnable text tokens per prompted layer (positions 1..n) [code: N_CTX 16]"})
    ctx_init: str = field(default="", metadata={
        "help": "prompt words initialising the layer-0 context ('' = random 'X X ...') [code: CTX_INIT is "
                "ignored when N_CTX > 4]"})
    depth: int = field(default=12, metadata={"help": "prompted layers from layer 0 in both towers [code: 12]"})

    def __post_init__(self):
        super().__post_init__()
        self.check_refiners()


@dataclass(frozen=True)
class NAPTuningIVLPConfig(RefinerFields, IVLPConfig):
    def __post_init__(self):
        super().__post_init__()
        self.check_refiners()


def refined_layers(depth: int, selection: str, site: str = "output") -> tuple[int, ...]:
    """Layers whose block output gets a refiner. site "input": the outputs of blocks 0..depth-2, i.e. the
    tokens entering the deep-prompted blocks 1..depth-1. site "output": every prompted layer 0..depth-1,
    except that a refiner on the prompt tokens alone acts only at the last prompted layer (at every
    earlier one the next layer's prompts replace the refined tokens before anything reads them)."""
    if depth < 1 or selection == "none":
        return ()
    if site == "input":
        return tuple(range(depth - 1))
    return (depth - 1,) if selection == "prompts" else tuple(range(depth))


def _refiners(layers, width: int, cfg: RefinerFields) -> nn.ModuleDict:
    return nn.ModuleDict({str(l): TokenRefiner(width, cfg.refiner_ratio, cfg.refiner_activation,
                                               cfg.refiner_up_init_std, norm=cfg.refiner_norm,
                                               init=cfg.refiner_init) for l in layers})


class TokenRefinement:
    """NAP-Tuning's refiners and purification term on top of a deep prompt method (MaPLe or IVLP)."""

    def __init__(self, backbone, classnames, template, config):
        super().__init__(backbone, classnames, template, config)
        depth_vision, _ = self.vision_prompt_layout()
        self.text_refiners = _refiners(refined_layers(self.text_prompt.depth, config.refine_text, config.refiner_site),
                                       backbone.text_width, config)
        self.vision_refiners = _refiners(refined_layers(depth_vision, config.refine_vision, config.refiner_site),
                                         backbone.vision_width, config)

    @property
    def refined_vision_layers(self) -> tuple[int, ...]:
        return tuple(int(l) for l in self.vision_refiners)

    # ---- edits
    def text_edits(self, eot_index: Tensor | None = None) -> TowerEdits:
        if not self.text_refiners:
            return TowerEdits(layers=self.text_prompt.edits())
        pos = text_positions(self.config.refine_text, self.text_prompt.n_ctx, eot_index)
        return TowerEdits(layers=self.text_prompt.edits(),
                          refiners={int(l): RefinerHook(r, pos) for l, r in self.text_refiners.items()})

    def vision_edits(self, collect: tuple[int, ...] = ()) -> TowerEdits:
        edits = super().vision_edits()
        if self.vision_refiners:
            pos = vision_positions(self.config.refine_vision, self.vision_prompt_layout()[1])
            edits.refiners = {int(l): RefinerHook(r, pos) for l, r in self.vision_refiners.items()}
        edits.collect = tuple(collect)
        return edits

    def class_features(self, classnames: tuple[str, ...]) -> Tensor:
        context = self.text_prompt.context
        return context.encode(tuple(classnames), self.text_edits(context.eot_index(classnames))).features

    # ---- adversarial objective
    def _vision(self, images: Tensor):
        """(features, {layer: CLS state after the refiner}) of the prompted vision tower."""
        out = self.backbone.vision(images, self.vision_edits(collect=self.refined_vision_layers))
        return out.features, {l: h[:, 0] for l, h in out.hidden.items()}

    def purification_term(self, adv_cls: dict[int, Tensor], clean_cls: dict[int, Tensor]) -> Tensor:
        """mean over images of sum_l ||adv_l - stopgrad(clean_l)||^2 / width (vision CLS states)."""
        if not adv_cls:
            return torch.zeros((), device=self.backbone.device)
        width = self.backbone.vision_width
        per_image = sum(((adv_cls[l].float() - clean_cls[l].detach().float()) ** 2).sum(-1) for l in adv_cls)
        return (per_image / width).mean()

    def purification(self, images: Tensor, adv_images: Tensor) -> Tensor:
        """The purification term of adversarial images against their clean versions (their refined CLS states)."""
        _, adv_cls = self._vision(adv_images)
        with torch.no_grad():
            _, clean_cls = self._vision(images)
        return self.purification_term(adv_cls, clean_cls)

    def adversarial_terms(self, clean: Tensor, attacked: Tensor, ctx: TextContext):
        """w_pur * the purification term, added by the engine to its adversarial objective (none when w_pur = 0)."""
        if self.config.w_pur <= 0:
            return None
        pur = self.purification(clean, attacked)
        return self.config.w_pur * pur, {"pur": pur.detach()}


@register_method("naptuning", NAPTuningConfig)
class NAPTuning(TokenRefinement, MaPLe):
    """NAP-Tuning as the author's code has it: MaPLe prompts + vision token refiners."""


@register_method("naptuning-ivlp", NAPTuningIVLPConfig)
class NAPTuningIVLP(TokenRefinement, IVLP):
    """The refiners on IVLP's independent prompts (the base of preset naptuning-v1)."""
