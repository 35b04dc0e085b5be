"""What the fidelity scripts share: loading an official module by path, and the checkout's commit."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def checkout_commit(checkout: str, given: str | None) -> str:
    """The checkout's HEAD, else the commit the caller names (an exported tree has no .git)."""
    head = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return head or given or "unknown"


def set_learnable(model, trains, draw) -> dict:
    """Make the parameters whose name `trains(name)` accepts the only learnable ones, as the official trainer's
    build_model does, and set each to `draw(name, shape)`; returns them by name."""
    import torch

    learnable = {}
    for name, p in model.named_parameters():
        p.requires_grad_(trains(name))
        if trains(name):
            learnable[name] = p
    with torch.no_grad():
        for name, p in learnable.items():
            p.copy_(draw(name, p.shape))
    return learnable


class Node(dict):
    """A yacs-like config node: attribute access on nested dicts, enough for the official trainers' cfg reads."""

    def __getattr__(self, key):
        try:
            value = self[key]
        except KeyError as e:
            raise AttributeError(key) from e
        return Node(value) if isinstance(value, dict) else value


def stub_dassl(package: str = "dassl") -> None:
    """Install an empty `dassl` package (AdvPT's copy is called `dass`): the official trainer files import it at
    module level for their Trainer classes, which the fixtures never use (only the model classes above them)."""
    import sys
    import types

    class Registry:
        def register(self, *args, **kwargs):
            return (lambda obj: obj) if not args else args[0]

    names = {"": {}, ".engine": {"TRAINER_REGISTRY": Registry(), "TrainerX": object},
             ".metrics": {"compute_accuracy": None},
             ".utils": {"load_pretrained_weights": None, "load_checkpoint": None},
             ".optim": {"build_optimizer": None, "build_lr_scheduler": None}}
    for suffix, attrs in names.items():
        name = package + suffix
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod


class no_half:
    """Within this block `Tensor.half()` returns the tensor unchanged. The official blocks cast prompts with
    `.half()` and build_model casts the weights (OpenAI's weights are fp16); with fp16-exact weights and
    prompts the casts change nothing forward, but they would round gradients to fp16. The fixtures compare
    in fp32 with the casts neutralised."""

    def __enter__(self):
        import torch

        self._half = torch.Tensor.half
        torch.Tensor.half = lambda t, *a, **k: t
        return self

    def __exit__(self, *exc):
        import torch

        torch.Tensor.half = self._half
        return False
