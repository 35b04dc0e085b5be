"""Adversarial training: PGD through the current prompts (and refiners), and the objectives on it."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attacks import eps_value, pgd
from ..attacks._core import random_start
from ..config import AdversarialConfig
from ..errors import ConfigError
from ..methods.base import TextContext


def detached(ctx: TextContext) -> TextContext:
    extra = {k: v.detach() if torch.is_tensor(v) else v for k, v in (ctx.extra or {}).items()} if ctx.extra else None
    features = ctx.features.detach() if ctx.features is not None else None
    return dataclasses.replace(ctx, features=features, extra=extra)


def adversarial_images(method, images: Tensor, labels: Tensor, ctx: TextContext, adv: AdversarialConfig) -> Tensor:
    """PGD (L-inf) on the method as it is now; the class side is fixed (ctx detached) for the attack.

    Random starts draw from the global RNG, which the engine reseeds every epoch, so a resumed run
    makes the same adversarial images. The `half` objective uses only the second half of the batch
    attacked, so only that half is attacked (the first half is returned clean); its random start is
    still drawn for the whole batch, so the draws and the RNG's state stay what attacking all of it gave."""
    ctx = detached(ctx)

    def classifier(x):
        return method(x, ctx)

    if adv.loss == "trades":  # TRADES' inner maximisation: KL to the clean prediction
        with torch.no_grad():
            p_clean = F.softmax(classifier(images).float(), dim=-1)

        def attack_loss(logits, _labels):
            return F.kl_div(F.log_softmax(logits, dim=-1), p_clean, reduction="none").sum(-1)
    else:
        attack_loss = "ce"
    k = images.shape[0] // 2 if adv.loss == "half" else 0
    eps = eps_value(adv.eps)
    start = random_start(images, eps, "Linf", None)[k:] if adv.random_start else None
    attacked = pgd(classifier, images[k:], labels[k:], eps, alpha=eps_value(adv.alpha), steps=adv.steps,
                   random_start=False, start=start, loss=attack_loss, box=adv.box)
    return torch.cat([images[:k], attacked]) if k else attacked


def adversarial_loss(method, images: Tensor, adv_images: Tensor, labels: Tensor, ctx: TextContext, mode: str,
                     trades_beta: float = 6.0) -> tuple[Tensor, dict[str, Tensor]]:
    """The adversarial-training objective of any method, given PGD images made through its current prompts.

    half: the method's loss on the first half of the batch clean, the second half adversarial;
    full: the method's loss on the adversarial images; mean: the mean of the method's loss on the
    clean and on the adversarial batch; trades: CE(clean) + beta * KL(p_adv || p_clean).
    The method's `adversarial_terms(clean, attacked, ctx)`, on the rows that were attacked and their clean
    versions, is added when it gives one (NAP-Tuning's purification).
    """
    if method.no_adversarial_training:
        raise ConfigError(method.no_adversarial_training)
    k = images.shape[0] // 2 if mode == "half" else 0
    if mode == "full":
        loss, stats = method.loss(adv_images, labels, ctx)
    elif mode == "mean":
        clean, clean_stats = method.loss(images, labels, ctx)
        adv, adv_stats = method.loss(adv_images, labels, ctx)
        loss, stats = 0.5 * (clean + adv), {**clean_stats, **{f"{name}_adv": v for name, v in adv_stats.items()}}
    elif mode == "half":
        loss, stats = method.loss(torch.cat([images[:k], adv_images[k:]]), labels, ctx)
    else:
        clean = method(images, ctx)
        adv = method(adv_images, ctx)
        ce = F.cross_entropy(clean, labels)
        kl = F.kl_div(F.log_softmax(adv, -1), F.softmax(clean, -1), reduction="batchmean")
        loss, stats = ce + trades_beta * kl, {"ce": ce.detach(), "kl": kl.detach()}
    extra = method.adversarial_terms(images[k:], adv_images[k:], ctx)
    if extra is not None:
        term, extra_stats = extra
        loss, stats = loss + term, {**stats, **extra_stats}
    return loss, stats
