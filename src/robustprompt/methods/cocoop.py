"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a small meta-net.

As the authors' code (KaiyangZhou/CoOp, trainers/cocoop.py): the frozen image feature f (L2-normalised)
goes through meta_net = Linear(E, E // 16) -> ReLU -> Linear(E // 16, D); every context vector of the
prompt gets the same shift pi(f); each image then has its own text features for every class, and its
logits are logit_scale * f . normalise(text(ctx + pi(f), class)). Loss: cross-entropy.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..components.context import TextContextPrompt
from ..dataclass_io import check_at_least, check_positive
from .base import Method, TextContext
from .registry import register_method


@dataclass(frozen=True)
class CoCoOpConfig:
    n_ctx: int = field(default=4, metadata={"help": "learnable context vectors [code: 4]"})
    ctx_init: str = field(default="a photo of a", metadata={"help": "initial words [code: 'a photo of a']"})
    init_std: float = field(default=0.02, metadata={"help": "std of random context (without ctx_init) [code]"})
    meta_reduction: int = field(default=16, metadata={"help": "meta-net hidden width = embed_dim // this [code]"})
    text_batch: int = field(default=4096, metadata={
        "help": "most prompts (images x classes) encoded in one text forward; a memory cap only"})

    def __post_init__(self):
        check_at_least(self, 1, "n_ctx")
        check_positive(self, "init_std")
        check_at_least(self, 1, "meta_reduction", "text_batch")


@register_method("cocoop", CoCoOpConfig)
class CoCoOp(Method):
    """CoCoOp: CoOp context + an image-conditioned shift from a two-layer meta-net."""

    def __init__(self, backbone, classnames, template, config: CoCoOpConfig):
        super().__init__(backbone, classnames, template, config)
        self.prompt = TextContextPrompt(backbone, config.n_ctx, config.ctx_init, False, len(classnames),
                                        config.init_std)
        E, D = backbone.embed_dim, backbone.text_width
        hidden = max(1, E // config.meta_reduction)
        self.meta_net = nn.Sequential(OrderedDict([("linear1", nn.Linear(E, hidden)), ("relu", nn.ReLU()),
                                                   ("linear2", nn.Linear(hidden, D))]))

    def class_context(self, classnames=None, chunk: int = 0) -> TextContext:
        """The class names only: every image has its own class features, built in `forward`, so no text
        forward runs here (the engine calls this once per training step)."""
        names = self.class_names(classnames)
        return TextContext(None, names, names == self.classnames)

    def forward(self, images: Tensor, ctx: TextContext) -> Tensor:
        f = F.normalize(self.backbone.encode_image(images), dim=-1)
        shift = self.meta_net(f)  # (B, D)
        C = len(ctx.classnames)
        step = max(1, self.config.text_batch // C)
        logits = []
        for i in range(0, f.shape[0], step):
            t = self.prompt.encode(ctx.classnames, shift=shift[i:i + step]).features
            t = F.normalize(t, dim=-1).view(-1, C, f.shape[1])
            logits.append(torch.einsum("be,bce->bc", f[i:i + step], t.to(f.dtype)))
        return self.backbone.logit_scale * torch.cat(logits)
