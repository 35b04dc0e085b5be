"""The one evaluation loop: accuracy of a method on a list of images, class features computed once."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from ..data import ImageDataset
from ..data.transforms import eval_transform


def eval_loader(items, images, resolution: int, batch_size: int, num_workers: int = 0) -> DataLoader:
    return DataLoader(ImageDataset(items, eval_transform(resolution), images), batch_size=batch_size,
                      shuffle=False, num_workers=num_workers)


@torch.no_grad()
def evaluate_accuracy(method, items, images, classnames, *, batch_size: int = 256, device="cpu",
                      precision: str = "fp32", transform_batch=None) -> dict:
    """Top-1 accuracy; `transform_batch(images01) -> images01` applies image noise if given."""
    from .train import autocast, progress

    device = torch.device(device)
    method.eval()
    with autocast(precision, device):
        ctx = method.class_context(classnames)
    correct = n = 0
    for x, y in progress(eval_loader(items, images, method.backbone.image_size, batch_size), desc="eval"):
        x, y = x.to(device), y.to(device)
        if transform_batch is not None:
            x = transform_batch(x)
        with autocast(precision, device):
            logits = method(x, ctx)
        correct += (logits.argmax(-1) == y).sum().item()
        n += len(y)
    return {"accuracy": correct / max(n, 1), "n": n, "correct": correct}
