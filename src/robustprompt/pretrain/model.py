"""The project's open_clip architectures and the shipped weights of the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..atomic import atomic_path, atomic_write_text

# The project's architectures, shipped weights and open_clip registration live in the backbone.
from ..backbone.loading import DEFAULT_MODEL as EMBEDDED_MODEL
from ..backbone.loading import WEIGHTS_DIR, load_weights_file, quiet_open_clip_logging
from ..backbone.loading import register_project_configs as register_configs
from ..errors import ModelError


def create_model(name: str = EMBEDDED_MODEL, seed: int | None = None) -> torch.nn.Module:
    """A randomly initialised open_clip CLIP of architecture `name` (fp32, CPU, train mode)."""
    import open_clip

    register_configs()
    if name not in open_clip.list_models():
        raise ModelError(f"unknown architecture {name!r}")
    if seed is not None:
        torch.manual_seed(seed)
    with quiet_open_clip_logging():
        return open_clip.create_model(name)


def get_tokenizer(name: str = EMBEDDED_MODEL):
    import open_clip

    register_configs()
    return open_clip.get_tokenizer(name)


def model_config(name: str = EMBEDDED_MODEL) -> dict:
    import open_clip

    register_configs()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ModelError(f"unknown architecture {name!r}")
    return cfg


def export_weights(model: torch.nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Write `model.state_dict()` as fp16 safetensors (keys exactly open_clip's), and metadata JSON beside it."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "architecture": (metadata or {}).get("architecture", "")})
    if metadata is not None:
        atomic_write_text(path.with_suffix(".json"), json.dumps(metadata, indent=2) + "\n")
    return path


def load_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load an (fp16 or fp32) safetensors state dict strictly into `model`, as fp32."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    load_weights_file(model, path)
    return model


def embedded_weights_path(name: str = EMBEDDED_MODEL) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def load_embedded(name: str = EMBEDDED_MODEL) -> torch.nn.Module:
    """The shipped embedded model, fp32, eval mode."""
    return load_weights(create_model(name), embedded_weights_path(name)).eval()
