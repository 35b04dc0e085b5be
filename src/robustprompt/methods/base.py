"""The contract every method implements; the engine drives it and knows nothing else.

A method owns learnable parameters on top of a frozen `PromptableCLIP` (`self.backbone`) and says:
- `class_context(classnames)`: everything on the class side that does not depend on the image
  (text features, per-class extras). The engine calls it once per training step and once per
  evaluation, never inside an attack loop.
- `forward(images, ctx)`: logits (B, C) for images in [0, 1].
- `loss(images, labels, ctx)`: the training objective (default: cross-entropy on the logits).
- optional `adversarial_terms(clean, attacked, ctx)`: a term the method adds to the engine's adversarial
  objective (engine/adversarial.py: half / full / mean / TRADES), e.g. NAP-Tuning's purification.
A method whose image side is frozen (`frozen_image_side = True`: the text-only methods) splits `forward`
into `image_features` + `logits_from_features`, and its training loss into `training_features` (the
image side as the loss sees it: by default `image_features`, AdvPT's adversarial embedding bank) +
`loss_from_features`, so that the engine may cache `training_features` across epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbone import PromptableCLIP
from ..errors import CheckpointError


@dataclass
class TextContext:
    """Class-side state for one set of class names."""

    features: Tensor | None  # (C, E), L2-normalised; None where the class side depends on the image (CoCoOp)
    classnames: tuple[str, ...]
    seen: bool  # the classes the method was trained on (ANPrompt's inference rule needs this)
    extra: dict[str, Any] | None = None


class Method(nn.Module):
    name: ClassVar[str] = ""
    config_cls: ClassVar[type] = object
    frozen_image_side: ClassVar[bool] = False
    # image towers the method runs on: ("vit",) for methods that edit the image tower's layers
    image_towers: ClassVar[tuple[str, ...]] = ("vit", "resnet")
    # why the engine's adversarial training (adv.enabled) does not apply to this method; "" = it does
    no_adversarial_training: ClassVar[str] = ""

    def __init__(self, backbone: PromptableCLIP, classnames: list[str], template: str, config):
        super().__init__()
        self.backbone = backbone
        self.classnames = tuple(classnames)
        self.template = template
        self.config = config

    # ---- optional: called once by the engine with the training data before training (not on reload)
    def prepare(self, data) -> None:
        """See the training data (a DatasetSplits: class names, descriptions, ...) before the first step."""

    def end_epoch(self, epoch: int, n_epochs: int) -> None:
        """Called by the engine after each training epoch (1-based), before its checkpoint is saved."""

    def adversarial_terms(self, clean: Tensor, attacked: Tensor, ctx: TextContext):
        """(term, {name: value}) added to the engine's adversarial objective, or None (the default)."""
        return None

    def run_info(self) -> dict:
        """Choices made at run time that the config does not fix, for results.json's train section."""
        return {}

    # ---- to implement
    def class_features(self, classnames: tuple[str, ...]) -> Tensor:
        """(C, E) unnormalised class features for these names."""
        raise NotImplementedError

    def image_features(self, images: Tensor) -> Tensor:
        """(B, E) unnormalised image features (the whole image side for most methods)."""
        return self.backbone.encode_image(images)

    def training_features(self, images: Tensor) -> Tensor:
        """(B, E) the image side of the training loss of a text-only method (default: `image_features`)."""
        return self.image_features(images)

    @property
    def classes_independent(self) -> bool:
        """Whether each class's features depend only on its own name (so classes may be encoded in chunks)."""
        return True

    # ---- shared machinery
    def class_names(self, classnames=None) -> tuple[str, ...]:
        """The given class names, or the training classes."""
        return tuple(classnames) if classnames is not None else self.classnames

    def class_context(self, classnames=None, chunk: int = 0) -> TextContext:
        """`chunk` > 0: with gradients on and more classes than `chunk`, encode them `chunk` at a time under
        activation checkpointing, so training memory holds one chunk's activations (one more text forward)."""
        names = self.class_names(classnames)
        if chunk and len(names) > chunk and torch.is_grad_enabled() and self.classes_independent:
            from torch.utils.checkpoint import checkpoint

            features = torch.cat([checkpoint(self.class_features, names[i : i + chunk], use_reentrant=False)
                                  for i in range(0, len(names), chunk)])
        else:
            features = self.class_features(names)
        return TextContext(F.normalize(features, dim=-1), names, names == self.classnames)

    def logits_from_features(self, image_features: Tensor, ctx: TextContext) -> Tensor:
        return self.backbone.logit_scale * F.normalize(image_features, dim=-1) @ ctx.features.t()

    def forward(self, images: Tensor, ctx: TextContext) -> Tensor:
        return self.logits_from_features(self.image_features(images), ctx)

    def loss(self, images: Tensor, labels: Tensor, ctx: TextContext) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self(images, ctx)
        loss = F.cross_entropy(logits, labels)
        return loss, {"ce": loss.detach()}

    def loss_from_features(self, image_features: Tensor, labels: Tensor, ctx: TextContext):
        """Loss of a text-only method on cached features: `loss_from_features(training_features(x))` must equal `loss(x)`."""
        logits = self.logits_from_features(image_features, ctx)
        loss = F.cross_entropy(logits, labels)
        return loss, {"ce": loss.detach()}

    # ---- learnable state: everything with requires_grad outside the frozen backbone
    def learnable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("backbone.")}

    def learnable_state(self) -> dict[str, Tensor]:
        return {n: p.detach().clone().contiguous() for n, p in self.learnable_parameters().items()}

    def load_learnable_state(self, state: dict[str, Tensor]) -> None:
        params = self.learnable_parameters()
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint does not match method {self.name!r}: "
                + (f"missing {missing[:3]}" if missing else "")
                + (" " if missing and unexpected else "")
                + (f"unexpected {unexpected[:3]}" if unexpected else ""))
        with torch.no_grad():
            for n, p in params.items():
                if p.shape != state[n].shape:
                    raise CheckpointError(f"checkpoint tensor {n} has shape {tuple(state[n].shape)}, "
                                          f"method expects {tuple(p.shape)}")
                p.copy_(state[n].to(p.dtype))

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.train(False)
        return self
