"""MMRL (Guo et al., CVPR 2025): a shared representation space projected into the higher layers of
both towers, with a class-token branch and a representation-token branch.

As the authors' code (yunncheng/MMRL: trainers/mmrl.py, clip/model_mmrl.py, configs/trainers/MMRL/vit_b16.yaml):
- representation tokens R (n_rep_tokens x rep_dim, N(0, 0.02)) mapped into layers 6..12 of 12 of each
  tower by one Linear per layer and tower (all layers' Linears start as copies of one initialisation);
  at the first of those layers the tokens are inserted after CLS / after SOS (the text EOT moves back
  by n_rep_tokens), at the later ones they replace the tokens at those places;
- the image side: the usual CLS feature, and the representation feature: mean of the output tokens
  at the representation places after ln_post, times a learnable projection proj_rep (width x
  embed_dim, initialised at random with std width^-0.5, not from CLIP's proj);
- the class side: the dataset's template with the representation tokens in the text tower;
- loss alpha CE(z_cls) + (1 - alpha) CE(z_rep) + reg_weight * [(1 - cos(v_cls, v_frozen)) +
  (1 - cos(t, t_frozen))], frozen features from the same template and image;
- inference: alpha z_cls + (1 - alpha) z_rep on the training classes, z_cls on any other class set.
ANPrompt grew from this trainer (methods/anprompt.py adds noise prompts, NRVPP and WALoss).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..backbone import LayerEdit, TowerEdits
from ..components.context import TemplateTokens
from ..components.two_branch import TwoBranchHead, check_layer_range, prompted_layers
from ..dataclass_io import check_at_least, check_unit_interval
from .base import Method, TextContext
from .registry import register_method


@dataclass(frozen=True)
class MMRLConfig:
    n_rep_tokens: int = field(default=5, metadata={"help": "representation tokens [code: 5]"})
    rep_dim: int = field(default=512, metadata={"help": "width of the shared representation space [code: 512; "
                                                        "2048 for EuroSAT]"})
    first_layer: int = field(default=6, metadata={"help": "first layer with representation tokens, 1-based, on a "
                                                          "tower of layer_ref_depth blocks [code: layers 6..12 of 12]"})
    layer_ref_depth: int = field(default=12, metadata={"help": "the depth first_layer is counted on"})
    init_std: float = field(default=0.02, metadata={"help": "std of R at init [code]"})
    alpha: float = field(default=0.7, metadata={"help": "weight of the class-token branch [code: 0.7]"})
    reg_weight: float = field(default=1.0, metadata={
        "help": "weight of each cosine regulariser [code: 1.0 by default; per dataset in trainers/config.py, e.g. "
                "StanfordCars 7, SUN397 6, ImageNet 0.5, EuroSAT 0.01]"})

    def __post_init__(self):
        check_at_least(self, 1, "n_rep_tokens", "rep_dim")
        check_layer_range(self)
        check_at_least(self, 0, "init_std")
        check_unit_interval(self, "alpha")
        check_at_least(self, 0, "reg_weight")


def _cloned_linears(layers, d_in: int, d_out: int) -> nn.ModuleDict:
    one = nn.Linear(d_in, d_out)
    return nn.ModuleDict({str(l): copy.deepcopy(one) for l in layers})


@register_method("mmrl", MMRLConfig)
class MMRL(TwoBranchHead, Method):
    """MMRL: shared representation tokens in the higher layers of both towers, two branches."""

    image_towers = ("vit",)  # representation tokens enter the image transformer's layers

    def __init__(self, backbone, classnames, template, config: MMRLConfig):
        super().__init__(backbone, classnames, template, config)
        bb, cfg = backbone, config
        self.text_layers = prompted_layers(bb.text_layers, cfg.first_layer, cfg.layer_ref_depth)
        self.vision_layers = prompted_layers(bb.vision_layers, cfg.first_layer, cfg.layer_ref_depth)
        self.rep_tokens = nn.Parameter(torch.randn(cfg.n_rep_tokens, cfg.rep_dim) * cfg.init_std)
        self.r2t = _cloned_linears(self.text_layers, cfg.rep_dim, bb.text_width)
        self.r2v = _cloned_linears(self.vision_layers, cfg.rep_dim, bb.vision_width)
        width = bb.vision_width
        self.proj_rep = nn.Parameter(width ** -0.5 * torch.randn(width, bb.embed_dim))
        self._template_tokens = TemplateTokens(template)
        with torch.no_grad():
            self.register_buffer("text_frozen", bb.text_features([template.format(c) for c in self.classnames]).float(),
                                 persistent=False)

    def _edits(self, layers, proj) -> TowerEdits:
        return TowerEdits(layers={l: LayerEdit("insert" if i == 0 else "replace", proj[str(l)](self.rep_tokens), start=1)
                                  for i, l in enumerate(layers)})

    def class_features(self, classnames: tuple[str, ...]) -> Tensor:
        return self._template_tokens.encode(self.backbone, classnames, self.proj_rep.device,
                                            self._edits(self.text_layers, self.r2t)).features

    def vision_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(v_cls, v_rep), unnormalised."""
        out = self.backbone.vision(images, self._edits(self.vision_layers, self.r2v))
        K = self.config.n_rep_tokens
        v_rep = out.tokens[:, 1:1 + K].mean(dim=1) @ self.proj_rep.to(out.tokens.dtype)
        return out.features, v_rep

    @property
    def fusion_weight(self) -> float:
        return self.config.alpha

    def loss(self, images: Tensor, labels: Tensor, ctx: TextContext) -> tuple[Tensor, dict[str, Tensor]]:
        t = self.branch_terms(images, labels, ctx)
        loss = t["ce"] + self.config.reg_weight * (t["img"] + t["txt"])
        return loss, {"ce_cls": t["ce_cls"].detach(), "ce_rep": t["ce_rep"].detach(), "reg_img": t["img"].detach(),
                      "reg_txt": t["txt"].detach()}
