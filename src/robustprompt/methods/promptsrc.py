"""PromptSRC (Khattak et al., ICCV 2023): IVLP prompts regularised towards the frozen model.

As the authors' code (muzairkhattak/PromptSRC, trainers/promptsrc.py, config
vit_b16_c2_ep20_batch4_4+4ctx.yaml):
- prompts: IVLP's, 4 text + 4 vision tokens, depth 9 in both towers, text from "a photo of a";
- mutual agreement: L1 between the prompted, normalised class text features and the frozen ones
  (the mean over 60 ImageNet templates of the frozen text features, then normalised), x 25; L1
  between the prompted and the frozen normalised image features, x 10;
- self-consistency of logits: KL(p_frozen || p_prompted), summed over the batch and classes and
  divided by their number, where the frozen logits pair frozen image features with the template
  ensemble;
- Gaussian prompt aggregation (GPA): after epoch e of N the learnable state is accumulated with weight
  g(e) / sum_e g(e), g the N(gpa_mean, gpa_std) density; the final prompts are the aggregate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..dataclass_io import check_at_least
from .base import TextContext
from .ivlp import IVLP, IVLPConfig
from .registry import register_method

# The 60 templates PromptSRC's trainers/imagenet_templates.py lists (from CLIP's ImageNet prompt notebook).
IMAGENET_TEMPLATES_60 = (
    "a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.",
    "the embroidered {}.", "a photo of a hard to see {}.", "a bright photo of a {}.", "a photo of a clean {}.",
    "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.",
    "the plastic {}.", "a photo of the cool {}.", "a close-up photo of a {}.",
    "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
    "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.", "a photo of the clean {}.",
    "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.", "a photo of a weird {}.",
    "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.",

)


@dataclass(frozen=True)
class PromptSRCConfig(IVLPConfig):
    n_ctx_text: int = field(default=4, metadata={"help": "learnable text tokens per prompted layer [code: 4]"})
    n_ctx_vision: int = field(default=4, metadata={"help": "learnable vision tokens per prompted layer [code: 4]"})
    text_loss_weight: float = field(default=25.0, metadata={"help": "weight of the text L1 agreement [code]"})
    image_loss_weight: float = field(default=10.0, metadata={"help": "weight of the image L1 agreement [code]"})
    logits_loss_weight: float = field(default=1.0, metadata={"help": "weight of the logits KL [code: 1]"})
    gpa_mean: float = field(default=15.0, metadata={"help": "mean epoch of the Gaussian prompt aggregation [code]"})
    gpa_std: float = field(default=1.0, metadata={"help": "its standard deviation in epochs; 0 = no aggregation [code: 1]"})

    def __post_init__(self):
        super().__post_init__()
        check_at_least(self, 0, "text_loss_weight", "image_loss_weight", "logits_loss_weight", "gpa_std")


def gpa_weights(n_epochs: int, mean: float, std: float) -> list[float]:
    """The weight of epoch 1..n in the aggregate: the N(mean, std) density at e, normalised to sum 1."""
    g = [math.exp(-0.5 * ((e - mean) / std) ** 2) for e in range(1, n_epochs + 1)]
    total = sum(g)
    if total == 0:  # every epoch far from the mean: the density underflows; the nearest epoch takes it all
        nearest = min(range(n_epochs), key=lambda i: abs(i + 1 - mean))
        return [1.0 if i == nearest else 0.0 for i in range(n_epochs)]
    return [x / total for x in g]


@register_method("promptsrc", PromptSRCConfig)
class PromptSRC(IVLP):
    """PromptSRC: IVLP prompts + agreement with the frozen model + Gaussian prompt aggregation."""

    def __init__(self, backbone, classnames, template, config: PromptSRCConfig):
        super().__init__(backbone, classnames, template, config)
        self.register_buffer("frozen_text", self.template_ensemble(self.classnames), persistent=False)
        self.gpa: dict[str, Tensor] | None = None  # the running aggregate, kept in learnable_state while training

    @torch.no_grad()
    def template_ensemble(self, classnames: tuple[str, ...]) -> Tensor:
        """(C, E): the frozen text features averaged over the 60 templates, then normalised."""
        bb = self.backbone
        feats = torch.stack([bb.encode_text(bb.tokenize([t.format(c) for c in classnames])).float()
                             for t in IMAGENET_TEMPLATES_60]).mean(0)  # unnormalised features averaged, as the code
        return F.normalize(feats, dim=-1)

    def loss(self, images: Tensor, labels: Tensor, ctx: TextContext) -> tuple[Tensor, dict[str, Tensor]]:
        if not ctx.seen:
            raise ValueError("PromptSRC's loss needs the context of its training classes (class_context())")
        cfg = self.config
        image_f = F.normalize(self.image_features(images), dim=-1)
        logits = self.backbone.logit_scale * image_f @ ctx.features.t()
        ce = F.cross_entropy(logits, labels)
        with torch.no_grad():
            frozen_img = F.normalize(self.backbone.encode_image(images).float(), dim=-1)
            frozen_logits = self.backbone.logit_scale * frozen_img @ self.frozen_text.t()
        text_l1 = F.l1_loss(ctx.features.float(), self.frozen_text) * cfg.text_loss_weight
        image_l1 = F.l1_loss(image_f.float(), frozen_img) * cfg.image_loss_weight
        kl = F.kl_div(F.log_softmax(logits.float(), -1), F.log_softmax(frozen_logits, -1), reduction="sum",
                      log_target=True) / logits.numel() * cfg.logits_loss_weight
        loss = ce + text_l1 + image_l1 + kl
        return loss, {"ce": ce.detach(), "text_l1": text_l1.detach(), "image_l1": image_l1.detach(),
                      "logits_kl": kl.detach()}

    # ---- Gaussian prompt aggregation
    def end_epoch(self, epoch: int, n_epochs: int) -> None:
        if self.config.gpa_std == 0:
            return
        w = gpa_weights(n_epochs, self.config.gpa_mean, self.config.gpa_std)[epoch - 1]
        params = {n: p.detach() for n, p in self.learnable_parameters().items()}
        if self.gpa is None:
            self.gpa = {n: w * p.clone() for n, p in params.items()}
        else:
            self.gpa = {n: self.gpa[n] + w * p for n, p in params.items()}
        if epoch == n_epochs:  # the aggregate becomes the final prompts
            with torch.no_grad():
                for n, p in self.learnable_parameters().items():
                    p.copy_(self.gpa[n])
            self.gpa = None

    def learnable_state(self) -> dict[str, Tensor]:
        state = super().learnable_state()
        if self.gpa is not None:  # mid-training: the aggregate so far, so that a resumed run continues it
            state.update({f"gpa.{n}": v.clone().contiguous() for n, v in self.gpa.items()})
        return state

    def load_learnable_state(self, state: dict[str, Tensor]) -> None:
        gpa = {k[4:]: v for k, v in state.items() if k.startswith("gpa.")}
        super().load_learnable_state({k: v for k, v in state.items() if not k.startswith("gpa.")})
        dev = next(iter(self.learnable_parameters().values())).device
        self.gpa = {n: v.to(dev) for n, v in gpa.items()} or None
