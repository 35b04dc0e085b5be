"""NAP-Tuning (Zhang et al., 2025, "Neural Augmented Prompt Tuning for Adversarially Robust VLMs").

[paper] AdvPT extended to text + vision prompts over many layers, plus a Neural Augmentor: token
refiners (residual modules, one per modality and per layer) that reconstruct purified features.
Here (METHODS.md, "NAP-Tuning"):
- prompts: IVLP's (2 text + 2 vision tokens, depth 9 with the same depth rule, text from "a photo of a");
- refiners: `components.refiner.TokenRefiner` after the block output of every prompted layer of each
  tower, on the tokens chosen by `refine_vision` / `refine_text` [ours]. With selection "prompts"
  only the last prompted layer has one: at earlier layers the next layer's prompts overwrite the
  refined tokens (IVLP's replace), so such a refiner would have no effect and no gradient;
- loss (`adversarial_loss`, with the engine's PGD images made through the current prompts and
  refiners): the adversarial loss of `adv.loss` (half / full / trades) plus
  w_pur * mean_i sum_l ||R_l(h_l(x_adv_i))[CLS] - stopgrad(R_l(h_l(x_i)))[CLS]||^2 / width over the
  prompted vision layers and the images that were attacked [ours: the paper's objective is not public].
  The clean target is the model's own (refined) hidden state of the clean image, detached.
Without `adv.enabled` the method trains with plain cross-entropy, like IVLP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbone import TowerEdits
from ..components.refiner import RefinerHook, TokenRefiner, text_positions, vision_positions
from ..config import check
from .base import TextContext
from .ivlp import IVLP, IVLPConfig
from .registry import register_method

Selection = Literal["all", "prompts", "cls"]


@dataclass(frozen=True)
class NAPTuningConfig(IVLPConfig):
    refiner_ratio: float = field(default=0.25, metadata={
        "help": "refiner bottleneck width as a fraction of the tower width [ours]"})
    refiner_activation: Literal["gelu", "relu"] = field(default="gelu", metadata={"help": "refiner activation [ours]"})
    refiner_up_init_std: float = field(default=1e-4, metadata={
        "help": "std of W_up at init; 0 = exactly the identity at init (then W_down and the layer norm get no "
                "gradient on the first step) [ours]"})
    refine_vision: Selection = field(default="all", metadata={
        "help": "vision tokens a refiner acts on: all | prompts (the appended prompt tokens) | cls [ours]"})
    refine_text: Selection = field(default="prompts", metadata={
        "help": "text tokens a refiner acts on: all | prompts (positions 1..n) | cls (the pooled EOT token) [ours]"})
    w_pur: float = field(default=1.0, metadata={
        "help": "weight of the purification term (refined adversarial CLS states vs clean ones) [ours]"})

    def __post_init__(self):
        super().__post_init__()
        check(self.refiner_ratio > 0, f"refiner_ratio must be > 0, got {self.refiner_ratio}")
        check(self.refiner_up_init_std >= 0, f"refiner_up_init_std must be >= 0, got {self.refiner_up_init_std}")
        check(self.w_pur >= 0, f"w_pur must be >= 0, got {self.w_pur}")


def refined_layers(depth: int, selection: str) -> tuple[int, ...]:
    """Layers that get a refiner: every prompted layer 0..depth-1, except that a refiner on the prompt
    tokens alone acts only at the last prompted layer (at every earlier one the next layer's prompts
    replace the refined tokens before anything reads them, so it could never learn)."""
    if depth < 1:
        return ()
    return (depth - 1,) if selection == "prompts" else tuple(range(depth))


def _refiners(layers, width: int, cfg: NAPTuningConfig) -> nn.ModuleDict:
    return nn.ModuleDict({str(l): TokenRefiner(width, cfg.refiner_ratio, cfg.refiner_activation,
                                               cfg.refiner_up_init_std) for l in layers})


@register_method("naptuning", NAPTuningConfig)
class NAPTuning(IVLP):
    """NAP-Tuning: IVLP prompts + per-layer token refiners in both towers + a purification loss."""

    def __init__(self, backbone, classnames, template, config: NAPTuningConfig):
        super().__init__(backbone, classnames, template, config)
        # one refiner per prompted layer and tower (layers 0..depth-1, as the prompts); see refined_layers
        self.text_refiners = _refiners(refined_layers(self.depth_text, config.refine_text), backbone.text_width,
                                       config)
        self.vision_refiners = _refiners(refined_layers(self.depth_vision, config.refine_vision),
                                         backbone.vision_width, config)

    @property
    def refined_vision_layers(self) -> tuple[int, ...]:
        return tuple(int(l) for l in self.vision_refiners)

    # ---- edits
    def text_edits(self, eot_index: Tensor | None = None) -> TowerEdits:
        pos = text_positions(self.config.refine_text, self.config.n_ctx_text, eot_index)
        return TowerEdits(layers=self.text_prompt.edits(),
                          refiners={int(l): RefinerHook(r, pos) for l, r in self.text_refiners.items()})

    def vision_edits(self, collect: tuple[int, ...] = ()) -> TowerEdits:
        edits = super().vision_edits()
        pos = vision_positions(self.config.refine_vision, self.config.n_ctx_vision)
        edits.refiners = {int(l): RefinerHook(r, pos) for l, r in self.vision_refiners.items()}
        edits.collect = tuple(collect)
        return edits

    def class_features(self, classnames: tuple[str, ...]) -> Tensor:
        emb, eot = self.text_prompt.context.embeddings(tuple(classnames))
        return self.backbone.text(emb, eot, self.text_edits(eot)).features

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
        """The purification term of adversarial images against their clean versions (a test helper)."""
        _, adv_cls = self._vision(adv_images)
        with torch.no_grad():
            _, clean_cls = self._vision(images)
        return self.purification_term(adv_cls, clean_cls)

    def adversarial_loss(self, images: Tensor, adv_images: Tensor, labels: Tensor, ctx: TextContext,
                         mode: str, trades_beta: float = 6.0) -> tuple[Tensor, dict[str, float]]:
        """Method.adversarial_loss (same half / full / trades split) + w_pur * purification term."""
        stats: dict[str, float] = {}
        if mode == "trades":
            clean_f, clean_cls = self._vision(images)
            adv_f, adv_cls = self._vision(adv_images)
            clean, adv = self.logits_from_features(clean_f, ctx), self.logits_from_features(adv_f, ctx)
            ce = F.cross_entropy(clean, labels)
            kl = F.kl_div(F.log_softmax(adv, -1), F.softmax(clean, -1), reduction="batchmean")
            loss = ce + trades_beta * kl
            stats.update(ce=ce.item(), kl=kl.item())
        else:
            k = images.shape[0] // 2 if mode == "half" else 0
            inputs = torch.cat([images[:k], adv_images[k:]]) if k else adv_images
            feats, cls = self._vision(inputs)
            loss = F.cross_entropy(self.logits_from_features(feats, ctx), labels)
            stats["ce"] = loss.item()
            adv_cls = {l: h[k:] for l, h in cls.items()}
            clean_cls = None
        if self.config.w_pur > 0:
            if clean_cls is None:  # the attacked images' clean states: a target only, no gradient
                with torch.no_grad():
                    _, clean_cls = self._vision(images[k:])
            pur = self.purification_term(adv_cls, clean_cls)
            loss = loss + self.config.w_pur * pur
            stats["pur"] = pur.item()
        return loss, stats
