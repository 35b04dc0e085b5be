"""Frozen image features computed once per run for text-only methods (`train.cache_image_features`).

A text-only method (CoOp, KgCoOp, AdvPT, language-only IVLP) learns nothing on the image side: its
training loss is `loss_from_features(training_features(images), labels, ctx)` and
`training_features` does not depend on the learnable parameters. When every epoch sees the same
images (no random augmentation, no adversarial images made through the prompts), the features of
each training image are the same every epoch, so the engine computes them once and then runs only
the text side. Batches are drawn with the same sampler and seeds from the cached rows as from the
images, so cached and uncached training see the same batches; the features agree up to the float
rounding of the image tower on batches of different sizes (tests/test_cache.py).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from ..config import RunConfig
from ..errors import ConfigError


def cache_blockers(cfg: RunConfig, method) -> list[str]:
    """Why the training features of `method` under `cfg` may change between epochs (empty: cacheable)."""
    reasons = []
    if not getattr(method, "frozen_image_side", False):
        reasons.append(f"method {cfg.method!r} learns on the image side (it is not text-only)")
    if cfg.data.train_augment:
        reasons.append("data.train_augment is true (random crops and flips differ every epoch)")
    if cfg.adv.enabled:
        reasons.append("adv.enabled is true (adversarial images are made through the current prompts)")
    return reasons


def use_feature_cache(cfg: RunConfig, method) -> bool:
    """Whether to cache; `true` with something that prevents caching is a ConfigError naming it."""
    mode = cfg.train.cache_image_features  # "auto", True or False
    if mode is False:
        return False
    reasons = cache_blockers(cfg, method)
    if reasons and mode is True:
        raise ConfigError("train.cache_image_features is true but the image features change between epochs: "
                          + "; ".join(reasons))
    return not reasons


@torch.no_grad()
def training_feature_dataset(method, dataset, *, batch_size: int, precision: str, dist,
                             num_workers: int = 0) -> TensorDataset:
    """(features, label) rows for every item of `dataset` (an ImageDataset), in its order.

    Each process encodes a contiguous 1/N of the images and the rows are gathered, so every process
    holds all of them (the sampler deals different rows to a process each epoch). `method.training_features`
    runs under the run's precision, as it would inside the loss; methods that need gradients inside it
    (AdvPT's feature attack) enable them themselves.
    """
    from .precision import autocast

    n = len(dataset)
    bounds = [n * r // dist.world_size for r in range(dist.world_size + 1)]
    counts = [bounds[r + 1] - bounds[r] for r in range(dist.world_size)]
    part = Subset(dataset, range(bounds[dist.rank], bounds[dist.rank + 1]))
    feats = []
    was_training = method.training
    method.train()  # as in the loop (the backbone stays in eval mode regardless)
    for x, y in DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        with autocast(precision, dist.device):
            feats.append(method.training_features(x.to(dist.device)).detach())
    method.train(was_training)
    local = torch.cat(feats) if feats else torch.empty(0)
    if dist.enabled:
        if not feats:  # an empty share still takes part in the gather, with the right row shape
            with autocast(precision, dist.device):
                local = method.training_features(dataset[0][0][None].to(dist.device))[:0]
        local = dist.all_gather_rows(local, counts)
    all_labels = torch.tensor([d.label for d in dataset.items], dtype=torch.long)
    return TensorDataset(local.cpu(), all_labels)
