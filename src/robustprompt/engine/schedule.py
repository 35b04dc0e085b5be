"""The field's schedule: constant warm-up epochs, then cosine over the epochs (Dassl's recipe)."""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig


def lr_at_epoch(cfg: TrainConfig, epoch: int) -> float:
    warmup = cfg.effective_warmup_epochs
    if epoch < warmup:
        return cfg.warmup_lr
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * (epoch - warmup) / cfg.epochs))


def build_optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if not params:
        raise ValueError("the method has no learnable parameters to optimise")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
