"""`load_backbone`: an open_clip architecture + weights -> a frozen PromptableCLIP.

Accepted forms:
- a project architecture (`robustprompt-tiny`, the embedded model, shipped with weights; test configs):
  `load_backbone("robustprompt-tiny")`, `pretrained="random"` for random weights;
- an open_clip name with a pretrained tag: `load_backbone("ViT-B-16", "openai")` (QuickGELU is set
  from the tag, so OpenAI weights always run with the activation they were trained with);
- an open_clip name with a local weights file: `load_backbone("ViT-B-16", "/path/weights.safetensors")`;
- `local-dir:/path` holding open_clip_config.json and weights;
- `hf-hub:org/name`, an open_clip model on the Hugging Face hub (found in the download cache offline).
The activation follows the weights where they say which they were trained with (checkpoints.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import warnings
from pathlib import Path

import torch

from ..errors import ModelError
from .checkpoints import read_weights
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


def image_tower_of(model: str) -> str | None:
    """"vit" or "resnet" for an architecture robustprompt can load, None for one it cannot (a timm or
    Hugging Face tower, CoCa, non-CLS or non-EOT pooling), read from open_clip's config without building it."""
    import open_clip

    register_project_configs()
    cfg = open_clip.get_model_config(model) or {}
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if (not cfg or "multimodal_cfg" in cfg or cfg.get("custom_text") or v.get("timm_model_name")
            or t.get("hf_model_name") or t.get("pool_type", "argmax") != "argmax"):
        return None
    if isinstance(v.get("layers"), (list, tuple)):
        return "resnet"
    if v.get("attentional_pool") or v.get("pool_type", "tok") != "tok" or v.get("final_ln_after_pool"):
        return None
    return "vit"


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
                  quick_gelu: bool | None = None, cache_dir: str | None = None) -> PromptableCLIP:
    """`quick_gelu` None: read from the weights where they say (checkpoints.py), else from the tag or the
    model name. `cache_dir`: where open_clip keeps (and, offline, finds) downloaded weights; its default
    when None."""
    import open_clip

    register_project_configs()
    model = model or DEFAULT_MODEL
    is_local_dir = model.startswith("local-dir:")
    is_hub = model.startswith("hf-hub:")
    if not (is_local_dir or is_hub) and model not in open_clip.list_models():
        raise ModelError(f"unknown model {model!r}; `robustprompt list models` shows the known architectures")

    weights_file: Path | None = None
    tag = pretrained
    tags = [] if is_local_dir or is_hub else open_clip.list_pretrained_tags_by_model(model)
    if is_local_dir:
        d = Path(model[len("local-dir:"):]).expanduser()
        if not (d / "open_clip_config.json").is_file():
            raise ModelError(f"local-dir model needs {d / 'open_clip_config.json'}")
        tag = "local-dir"
    elif is_hub:
        if pretrained not in (None, "hf-hub"):
            raise ModelError(f"{model} brings its own weights; drop --pretrained {pretrained!r}")
        tag = "hf-hub"
    elif pretrained in tags:
        pass
    elif pretrained == "random":
        tag = "random"
    elif pretrained in (None, "embedded") and model in project_models():
        weights_file = shipped_weights(model)
        if weights_file is None:
            raise ModelError(f"no shipped weights for {model!r}; pass --pretrained random or a weights file")
        tag = "embedded"
    elif pretrained is None:
        tag = "random"
    elif Path(pretrained).expanduser().exists() or "/" in pretrained or pretrained.endswith((".safetensors", ".bin", ".pt", ".pth")):
        weights_file = Path(pretrained).expanduser()
    else:
        known = ", ".join(tags) or "none"
        raise ModelError(f"unknown pretrained tag {pretrained!r} for {model}; known tags: {known}; or pass a weights file")

    if weights_file is not None and not weights_file.is_file():
        raise ModelError(f"weights file not found: {weights_file}")

    weights = None
    sha256 = file_sha256(weights_file) if weights_file is not None else ""
    if weights_file is not None and tag != "embedded":
        weights = read_weights(weights_file, sha256)
    if quick_gelu is None:
        named = model.endswith("-quickgelu")
        if weights is not None and weights.quick_gelu is not None:
            quick_gelu = weights.quick_gelu
            if quick_gelu != named:
                want = "QuickGELU" if quick_gelu else "GELU"
                print(f"robustprompt: warning: {weights_file} runs with {want}, not the "
                      f"{'QuickGELU' if named else 'GELU'} that the name {model} implies: {weights.evidence} "
                      f"(set model.quick_gelu to override)", file=sys.stderr)
        elif tag in tags:
            quick_gelu = _tag_quick_gelu(model, tag) or named
        else:
            quick_gelu = named
    elif weights is not None and weights.quick_gelu is not None and weights.quick_gelu != quick_gelu:
        print(f"robustprompt: warning: model.quick_gelu={quick_gelu} overrides {weights_file}, "
              f"which says otherwise: {weights.evidence}", file=sys.stderr)

    try:
        # "random" weights are drawn from a fixed seed, so a random backbone is reproducible.
        with warnings.catch_warnings(), quiet_open_clip_logging(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            if is_local_dir or is_hub:
                clip = open_clip.create_model(model, device="cpu", cache_dir=cache_dir)
                quick_gelu = _uses_quick_gelu(clip)
            elif tag in tags:
                clip = open_clip.create_model(model, pretrained=tag, force_quick_gelu=quick_gelu, device="cpu",
                                              cache_dir=cache_dir)
            else:
                clip = open_clip.create_model(model, pretrained=None, force_quick_gelu=quick_gelu, device="cpu")
    except (RuntimeError, OSError, ValueError) as e:
        where = f" (not in the download cache{f' {cache_dir}' if cache_dir else ''}, and no network?)" \
            if isinstance(e, (OSError, FileNotFoundError)) else ""
        raise ModelError(f"could not create {model} with pretrained={pretrained!r}{where}: {_first_line(e)}") from None

    if weights_file is not None:
        load_weights_file(clip, weights_file, weights)

    tokenizer = open_clip.get_tokenizer(model, cache_dir=cache_dir)
    mean, std = image_normalisation(clip)
    try:
        backbone = PromptableCLIP(clip.float(), None, mean, std, tokenizer)
    except TypeError as e:
        raise ModelError(str(e)) from None
    backbone.identity = identity = BackboneIdentity(
        model=model,
        pretrained=tag if weights_file is None or tag == "embedded" else str(weights_file),
        weights_sha256=sha256,
        quick_gelu=bool(quick_gelu),
        open_clip_version=open_clip.__version__,
        embed_dim=int(backbone.embed_dim),
        vision_width=backbone.vision_width,
        vision_layers=backbone.vision_layers,
        text_width=backbone.text_width,
        text_layers=backbone.text_layers,
        image_size=backbone.image_size,
        image_tower=backbone.image_tower,
    )
    logging.getLogger(__name__).info("loaded backbone %s", json.dumps(identity.to_dict()))
    return backbone.to(device)


def _uses_quick_gelu(clip) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in clip.modules())


def load_weights_file(clip, path: Path, weights=None) -> None:
    """Load a weights file (or what `checkpoints.read_weights` read from it) strictly into an open_clip model,
    with open_clip's own adjustments of a state dict (those of its `load_checkpoint`, which reads files unsafely)."""
    from open_clip.factory import resize_pos_embed, resize_text_pos_embed

    weights = weights if weights is not None else read_weights(Path(path), "")
    persistent = set(clip.state_dict())
    # a TorchScript archive also holds non-persistent buffers (the text tower's attn_mask)
    transient = {n for n, _ in clip.named_buffers()} - persistent
    state = {k: v for k, v in weights.state.items() if k not in transient}
    ls = state.get("logit_scale")
    if ls is not None and ls.ndim != clip.logit_scale.ndim:
        state["logit_scale"] = ls.reshape(clip.logit_scale.shape)
    try:
        resize_pos_embed(state, clip)  # a checkpoint made for another image size or context length
        resize_text_pos_embed(state, clip)
        clip.load_state_dict(state, strict=True)
    except (RuntimeError, AssertionError, ValueError) as e:  # another architecture (the resizes assert on it)
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
