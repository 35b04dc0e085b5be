"""AdvPT (Zhang et al., ECCV 2024, "Adversarial Prompt Tuning for Vision-Language Models").

[paper] Learnable text prompts aligned with adversarial image embeddings; the image encoder and
the model architecture stay untouched. [code] (jiamingzhang94/Adversarial-Prompt-Tuning): a CoOp
prompt with 32 random context vectors, trained with cross-entropy on an *adversarial embedding
bank*: each training image (un-augmented) is attacked once, before training, by PGD-10 at eps 8/255
(step 1.25 * eps / steps, random start) on the frozen image encoder alone, maximising
KL(softmax(f(x)) || softmax(f(x_adv))) over the embedding dimensions; the bank stores f(x_adv).

Here the engine keeps its one loop. `training_features(images)` (the image side of the training
loss, `Method`'s hook for text-only methods) returns the bank entries of the batch: an image's
entry is computed by `feature_attack` the first time its exact content is seen and cached under a
hash of that content. The attack does not depend on the prompts, and its random start is seeded
from the image content, so an entry is a function of the image alone: the cache changes the cost,
never the result. With `data.train_augment: false` (the preset; the authors' bank is built from
un-augmented images) every epoch after the first is free, as with the paper's precomputed bank.
At inference AdvPT is CoOp: clean images through the frozen encoder, end-to-end attacks through
the prompted model (`robustprompt eval RUN --attack ...`). `feature_attack` also gives the paper's
own evaluation (a feature attack on the image encoder alone), which must be labelled as such.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attacks._core import check_inputs, loss_and_grad, parse_eps, project, rand_uniform
from ..dataclass_io import check, check_at_least
from ..errors import ConfigError
from .base import TextContext
from .coop import CoOp, CoOpConfig
from .registry import register_method

Objective = Literal["kl", "cosine", "l2"]


def _kl(adv: Tensor, clean: Tensor) -> Tensor:  # the authors' code: KLDivLoss(log_softmax(adv), softmax(clean))
    return F.kl_div(F.log_softmax(adv, dim=-1), F.softmax(clean, dim=-1), reduction="none").sum(-1)


FEATURE_OBJECTIVES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "kl": _kl,
    "cosine": lambda adv, clean: -F.cosine_similarity(adv, clean, dim=-1),
    "l2": lambda adv, clean: ((adv - clean) ** 2).sum(-1),
}


def feature_attack(encoder: Callable[[Tensor], Tensor], images: Tensor, eps, *, steps: int = 10,
                   alpha: Optional[float] = None, objective: str = "kl", random_start: bool = True,
                   generators: Optional[Sequence[torch.Generator]] = None, start: str = "symmetric") -> Tensor:
    """L-inf PGD on an image encoder alone: push each image's embedding away from its clean one.

    encoder: (B, 3, H, W) in [0, 1] -> (B, E) embeddings (e.g. `backbone.encode_image`).
    Maximises `FEATURE_OBJECTIVES[objective](f(x_adv), f(x))` per image with steps of `alpha`
    (default 1.25 * eps / steps, the AdvPT code's rule) from a uniform random start: x + U(-eps, eps)
    (`start="symmetric"`) or x + U(0, eps) (`start="positive"`, as the AdvPT code draws it), clipped to [0, 1];
    `start="positive-unclipped"` is the AdvPT code exactly: its start x + U(0, eps) is not clipped to
    [0, 1], so the first gradient may be taken just outside the image range (every later point is clipped).
    `generators` (one per image) make each image's start independent of its batch. All three
    objectives have a zero gradient at x_adv = x, so without a random start PGD barely moves.
    Runs in fp32; returns the adversarial images, detached, within eps of `images` and in [0, 1].
    """
    if objective not in FEATURE_OBJECTIVES:
        raise ConfigError(f"unknown feature objective {objective!r}; one of {', '.join(FEATURE_OBJECTIVES)}")
    x0, _ = check_inputs(images)
    eps = parse_eps(eps)[1]
    steps = int(steps)
    alpha = 1.25 * eps / max(steps, 1) if alpha is None else float(alpha)
    if eps == 0 or steps == 0 or x0.shape[0] == 0:
        return x0.clone()
    if generators is not None and len(generators) != x0.shape[0]:
        raise ValueError(f"{len(generators)} generators for {x0.shape[0]} images")
    with torch.no_grad(), torch.autocast(x0.device.type, enabled=False):
        clean = encoder(x0).float()
    if random_start:
        if generators is None:
            u = rand_uniform(x0.shape, None, x0.device)
        else:
            u = torch.stack([rand_uniform(x0.shape[1:], g, x0.device) for g in generators])
        if start not in ("symmetric", "positive", "positive-unclipped"):
            raise ConfigError(f"unknown start {start!r}; symmetric, positive or positive-unclipped")
        x = x0 + eps * (2 * u - 1 if start == "symmetric" else u)
        if start != "positive-unclipped":
            x = project(x, x0, eps, "Linf")
    else:
        x = x0.clone()
    loss_fn = FEATURE_OBJECTIVES[objective]
    for _ in range(steps):
        _, _, g = loss_and_grad(encoder, x, lambda f: loss_fn(f, clean))
        x = project(x + alpha * g.sign(), x0, eps, "Linf")
    return x.detach()


def image_keys(images: Tensor) -> list[bytes]:
    """One digest per image of its exact content (fp32 values and shape)."""
    arr = images.detach().to("cpu", torch.float32).contiguous()
    return [hashlib.sha256(str(tuple(a.shape)).encode() + a.numpy().tobytes()).digest() for a in arr]


def _seed(bank_seed: int, key: bytes) -> int:
    h = hashlib.sha256(str(bank_seed).encode() + b"/" + key).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class AdvPTConfig(CoOpConfig):
    n_ctx: int = field(default=32, metadata={"help": "number of learnable context vectors [code: 32]"})
    bank_eps: str = field(default="8/255", metadata={"help": "L-inf radius of the feature attack [code: 8/255]"})
    bank_steps: int = field(default=10, metadata={"help": "PGD steps of the feature attack [code: 10]"})
    bank_alpha: str = field(default="", metadata={
        "help": "PGD step size; '' = 1.25 * bank_eps / bank_steps [code]"})
    bank_objective: Objective = field(default="kl", metadata={
        "help": "what the feature attack maximises between f(x_adv) and f(x): kl = KL(softmax(f(x)) || "
                "softmax(f(x_adv))) over embedding dims [code]; cosine = -cos; l2 = squared distance"})
    bank_random_start: bool = field(default=True, metadata={"help": "uniform random start in the eps ball [code]"})
    bank_start: Literal["symmetric", "positive", "positive-unclipped"] = field(default="symmetric", metadata={
        "help": "the random start: positive-unclipped = x + U(0, eps) not clipped to [0, 1] before the first "
                "step, as the authors' code (random_init) [code, the preset]; positive = the same clipped "
                "[ours, runs made before the fidelity fixture]; symmetric = x + U(-eps, eps) [ours, the first runs]"})
    bank_seed: int = field(default=0, metadata={
        "help": "seed of the random starts, combined with each image's content hash [ours]"})
    bank_cache_size: int = field(default=100_000, metadata={
        "help": "most bank entries kept in memory (CPU, one embedding each); 0 = recompute every step [ours]"})

    def __post_init__(self):
        super().__post_init__()
        for name in ("bank_eps",) + (("bank_alpha",) if self.bank_alpha else ()):
            try:
                value = parse_eps(getattr(self, name))[1]
            except ConfigError:
                raise ValueError(f"{name}: cannot read {getattr(self, name)!r} (write e.g. 8/255)") from None
            check(value <= 1, f"{name} must be in [0, 1], got {getattr(self, name)}")
        check_at_least(self, 1, "bank_steps")
        check_at_least(self, 0, "bank_cache_size")


@register_method("advpt", AdvPTConfig)
class AdvPT(CoOp):
    """AdvPT: a CoOp prompt (32 ctx) trained on adversarial embeddings of the frozen image encoder."""

    frozen_image_side = True
    no_adversarial_training = ("advpt trains on its own feature-attack bank (method_cfg.bank_*); turn adv.enabled off, "
                               "or train coop with adv.enabled for end-to-end adversarial training of a CoOp prompt")

    def __init__(self, backbone, classnames, template, config: AdvPTConfig):
        super().__init__(backbone, classnames, template, config)
        self._bank: dict[bytes, Tensor] = {}  # image content digest -> adversarial embedding (CPU, fp32)
        self.bank_hits = 0
        self.bank_misses = 0

    @property
    def bank_size(self) -> int:
        return len(self._bank)

    def clear_bank(self) -> None:
        self._bank.clear()
        self.bank_hits = self.bank_misses = 0

    def adversarial_images(self, images: Tensor, keys: Sequence[bytes] | None = None) -> Tensor:
        """The bank's feature attack on these images (seeded per image from its content)."""
        cfg = self.config
        keys = image_keys(images) if keys is None else keys
        gens = [torch.Generator().manual_seed(_seed(cfg.bank_seed, k)) for k in keys]
        alpha = parse_eps(cfg.bank_alpha)[1] if cfg.bank_alpha else None
        return feature_attack(self.backbone.encode_image, images, cfg.bank_eps, steps=cfg.bank_steps, alpha=alpha,
                              objective=cfg.bank_objective, random_start=cfg.bank_random_start, generators=gens,
                              start=cfg.bank_start)

    def training_features(self, images: Tensor) -> Tensor:
        """(B, E) adversarial embeddings f(x_adv) of the frozen encoder: the bank entries of the batch."""
        keys = image_keys(images)
        missing = [i for i, k in enumerate(keys) if k not in self._bank]
        self.bank_misses += len(missing)
        self.bank_hits += len(keys) - len(missing)
        fresh: dict[int, Tensor] = {}
        if missing:
            adv = self.adversarial_images(images[missing], [keys[i] for i in missing])
            with torch.no_grad(), torch.autocast(adv.device.type, enabled=False):
                feats = self.backbone.encode_image(adv).float()
            for j, i in enumerate(missing):
                fresh[i] = feats[j]
                if len(self._bank) < self.config.bank_cache_size:
                    self._bank[keys[i]] = feats[j].detach().to("cpu", copy=True)
        device = images.device
        return torch.stack([fresh[i] if i in fresh else self._bank[k].to(device) for i, k in enumerate(keys)])

    def loss(self, images: Tensor, labels: Tensor, ctx: TextContext):
        return self.loss_from_features(self.training_features(images), labels, ctx)

