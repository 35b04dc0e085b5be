"""`load_backbone`: an open_clip architecture + weights -> a frozen PromptableCLIP.

Accepted forms:
- a project architecture (`robustprompt-tiny`, the embedded model, shipped with weights; test configs):
  `load_backbone("robustprompt-tiny")`, `pretrained="random"` for random weights;
- an open_clip name with a pretrained tag: `load_backbone("ViT-B-16", "openai")` (QuickGELU is set
  from the tag, so OpenAI weights always run with the activation they were trained with);
- an open_clip name with a local weights file: `load_backbone("ViT-B-16", "/path/weights.safetensors")`;
- `local-dir:/path` holding open_clip_config.json and weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import warnings
from pathlib import Path

import torch

from ..errors import ModelError
from .clip import BackboneIdentity, PromptableCLIP

CONFIG_DIR = Path(__file__).parent / "model_configs"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODEL = "robustprompt-tiny"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_registered = False


def register_project_configs() -> None:
    """Make the project's architecture JSONs known to open_clip (idempotent)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def project_models() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def list_models() -> list[str]:
    import open_clip

    register_project_configs()
    return open_clip.list_models()


def shipped_weights(model: str) -> Path | None:
    p = WEIGHTS_DIR / f"{model}.safetensors"
    return p if p.is_file() else None


def image_normalisation(clip) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """An open_clip model's image mean/std (OpenAI's values unless its config says otherwise)."""
    mean = getattr(clip.visual, "image_mean", None) or OPENAI_MEAN
    std = getattr(clip.visual, "image_std", None) or OPENAI_STD
    return tuple(mean), tuple(std)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tag_quick_gelu(model: str, tag: str) -> bool:
    from open_clip.pretrained import get_pretrained_cfg

    return bool(get_pretrained_cfg(model, tag).get("quick_gelu", False))


def load_backbone(model: str | None = None, pretrained: str | None = None, *, device: str | torch.device = "cpu",
                  quick_gelu: bool | None = None) -> PromptableCLIP:
    import open_clip

    register_project_configs()
    model = model or DEFAULT_MODEL
    is_local_dir = model.startswith("local-dir:")
    if not is_local_dir and model not in open_clip.list_models():
        raise ModelError(f"unknown model {model!r}; `robustprompt list models` shows the known architectures")

    weights_file: Path | None = None
    tag = pretrained
    if is_local_dir:
        d = Path(model[len("local-dir:"):]).expanduser()
        if not (d / "open_clip_config.json").is_file():
            raise ModelError(f"local-dir model needs {d / 'open_clip_config.json'}")
        tag = "local-dir"
    elif model in project_models():
        if pretrained in (None, "embedded"):
            weights_file = shipped_weights(model)
            if weights_file is None:
                raise ModelError(f"no shipped weights for {model!r}; pass --pretrained random or a weights file")
            tag = "embedded"
        elif pretrained == "random":
            tag = "random"
        else:
            weights_file = Path(pretrained).expanduser()
    elif pretrained in (None, "random"):
        tag = "random"
    elif Path(pretrained).expanduser().exists() or "/" in pretrained or pretrained.endswith((".safetensors", ".bin", ".pt", ".pth")):
        weights_file = Path(pretrained).expanduser()
    elif pretrained not in open_clip.list_pretrained_tags_by_model(model):
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise ModelError(f"unknown pretrained tag {pretrained!r} for {model}; known tags: {known}; or pass a weights file")

    if weights_file is not None and not weights_file.is_file():
        raise ModelError(f"weights file not found: {weights_file}")

    if quick_gelu is None:
        quick_gelu = bool(tag not in (None, "random", "embedded", "local-dir") and weights_file is None
                          and _tag_quick_gelu(model, tag)) or model.endswith("-quickgelu")

    try:
        # "random" weights are drawn from a fixed seed, so a random backbone is reproducible.
        with warnings.catch_warnings(), quiet_open_clip_logging(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            if is_local_dir:
                clip = open_clip.create_model(model, device="cpu")
            elif tag in ("random", "embedded") or weights_file is not None:
                clip = open_clip.create_model(model, pretrained=None, force_quick_gelu=quick_gelu, device="cpu")
            else:
                clip = open_clip.create_model(model, pretrained=tag, force_quick_gelu=quick_gelu, device="cpu")
    except (RuntimeError, OSError, ValueError) as e:
        raise ModelError(f"could not create {model} with pretrained={pretrained!r}: {_first_line(e)}") from None

    if weights_file is not None:
        load_weights_file(clip, weights_file)

    tokenizer = open_clip.get_tokenizer(model)
    mean, std = image_normalisation(clip)
    identity = BackboneIdentity(
        model=model,
        pretrained=tag if weights_file is None or tag == "embedded" else str(weights_file),
        weights_sha256=file_sha256(weights_file) if weights_file is not None else "",
        quick_gelu=bool(quick_gelu),
        open_clip_version=open_clip.__version__,
        embed_dim=int(clip.visual.output_dim),
        vision_width=int(clip.visual.conv1.out_channels),
        vision_layers=len(clip.visual.transformer.resblocks),
        text_width=int(clip.token_embedding.embedding_dim),
        text_layers=len(clip.transformer.resblocks),
        image_size=int(clip.visual.image_size[0]),
    )
    try:
        backbone = PromptableCLIP(clip.float(), identity, mean, std, tokenizer)
    except TypeError as e:
        raise ModelError(str(e)) from None
    logging.getLogger(__name__).info("loaded backbone %s", json.dumps(identity.to_dict()))
    return backbone.to(device)


def load_weights_file(clip, path: Path) -> None:
    from open_clip.factory import load_checkpoint

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = {k: v.float() for k, v in load_file(str(path)).items()}
            clip.load_state_dict(state, strict=True)
        else:
            load_checkpoint(clip, str(path), strict=True, weights_only=True)
    except Exception as e:  # a truncated file, another architecture, a pickled object
        raise ModelError(f"weights file {path} does not load into this architecture: {_first_line(e)}") from None


@contextlib.contextmanager
def quiet_open_clip_logging():
    # open_clip logs "No pretrained weights loaded" on the root logger for every random init.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0][:300] if s else e.__class__.__name__
