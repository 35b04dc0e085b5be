"""Training state for --resume, as safetensors + JSON metadata (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CheckpointError
from .rundir import atomic_save_tensors, load_tensors

STATE_FILE = "state.safetensors"


def save_training_state(directory: Path, epoch: int, learnable: dict[str, torch.Tensor],
                        optimizer: torch.optim.Optimizer, extra: dict) -> None:
    """`epoch` is the number of completed epochs."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"param/{k}": v for k, v in learnable.items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"opt/{idx}/{key}"] = t
    meta = {"epoch": epoch, "param_groups": opt["param_groups"], **extra}
    atomic_save_tensors(directory / STATE_FILE, tensors, {"state": json.dumps(meta)})


def load_training_state(directory: Path) -> tuple[int, dict[str, torch.Tensor], dict, dict]:
    """-> (completed epochs, learnable tensors, optimizer state dict, extra metadata)."""
    tensors, meta = load_tensors(directory / STATE_FILE)
    try:
        info = json.loads(meta["state"])
        epoch = int(info.pop("epoch"))
        groups = info.pop("param_groups")
    except (KeyError, ValueError, TypeError):
        raise CheckpointError(f"{directory / STATE_FILE} has no valid training-state metadata") from None
    learnable = {k[len("param/"):]: v for k, v in tensors.items() if k.startswith("param/")}
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt/"):
            _, idx, key = k.split("/", 2)
            state.setdefault(int(idx), {})[key] = v
    return epoch, learnable, {"state": state, "param_groups": groups}, info
