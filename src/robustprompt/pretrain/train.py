"""CLIP contrastive pretraining: AdamW + warm-up + cosine, checkpoints in safetensors + JSON, exact resume.

Stage 1 runs `steps` steps on the mixed stream; stage 2 (`stage2_steps`, a second warm-up + cosine)
adds groups of images that differ only in shape to every batch, since colour, size and position alone
separate most in-batch pairs and the model otherwise barely reads shape.

Layout of an output directory:
  checkpoint.safetensors   model weights (fp32) and AdamW state, written every `checkpoint_every` steps
  checkpoint.json          step, config, elapsed wall time, recent losses
  log.txt                  one line per `log_every` steps
  <model>.safetensors      final fp16 export of model.state_dict() (open_clip keys)
  <model>.json             its metadata: config, seed, command, steps, wall time, data sources, quality
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path, atomic_write_text
from ..backbone.loading import file_sha256
from ..errors import CheckpointError
from .config import PretrainConfig
from .evaluate import to_model_input
from ..synthetic.generator import PretrainStream
from .model import create_model, export_weights, get_tokenizer, model_config

CKPT = "checkpoint.safetensors"
CKPT_META = "checkpoint.json"


def lr_at(cfg: PretrainConfig, step: int) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.lr * cfg.min_lr_ratio at cfg.steps; stage 2 (if
    any) repeats that shape with stage2_lr over stage2_steps."""
    if step >= cfg.steps:
        return _warmup_cosine(step - cfg.steps, cfg.stage2_lr, cfg.stage2_warmup_steps, cfg.stage2_steps,
                              cfg.min_lr_ratio)
    return _warmup_cosine(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)


def _warmup_cosine(step: int, peak: float, warmup: int, steps: int, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    lo = peak * min_ratio
    return lo + 0.5 * (peak - lo) * (1 + math.cos(math.pi * min(1.0, t)))


def _no_decay(name: str, p: torch.Tensor) -> bool:
    # open_clip's rule: no weight decay on gains, biases, norms, the logit scale
    return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if _no_decay(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not _no_decay(n, p)], "weight_decay": cfg.weight_decay},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def encode_text_trimmed(model, text: torch.Tensor) -> torch.Tensor:
    """open_clip's `encode_text` (normalised) on tokens cut after the batch's longest caption.

    The padding after a caption's end token never reaches its end-token output (causal attention),
    so the result equals the full-length one up to float reordering, at a fraction of the cost.
    """
    length = int((text != 0).sum(1).max())
    text = text[:, :length]
    x = model.token_embedding(text) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)] @ model.text_projection
    return torch.nn.functional.normalize(x, dim=-1)


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (the maths of open_clip's ClipLoss on one process)."""
    logits = logit_scale * image_features @ text_features.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels))


class Tokens:
    """Tokenizer with a cache (captions repeat)."""

    def __init__(self, model_name: str, max_size: int = 200_000):
        self.tok = get_tokenizer(model_name)
        self.max_size = max_size
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing:
            if len(self.cache) + len(missing) > self.max_size:  # bounded memory; clear before this batch's rows
                self.cache = {c: self.cache[c] for c in dict.fromkeys(captions) if c in self.cache}
            for c, row in zip(missing, self.tok(missing)):
                self.cache[c] = row
        return torch.stack([self.cache[c] for c in captions])


# ---------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(out: Path, model, opt, cfg: PretrainConfig, step: int, elapsed: float, losses: list[float]) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if not st:
                continue
            n = names[id(p)]
            for k, v in st.items():
                tensors[f"optim.{n}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    meta = {"step": step, "config": cfg.to_dict(), "elapsed_s": elapsed, "recent_losses": losses[-50:]}
    with atomic_path(out / CKPT) as tmp:  # tensors first: a crash between the two leaves the older step's meta
        save_file(tensors, str(tmp))
    atomic_write_text(out / CKPT_META, json.dumps(meta, indent=2) + "\n")


def load_checkpoint(out: Path, model, opt, cfg: PretrainConfig) -> tuple[int, float, list[float]]:
    from safetensors.torch import load_file

    meta_path, path = out / CKPT_META, out / CKPT
    if not meta_path.is_file() or not path.is_file():
        raise CheckpointError(f"no checkpoint to resume in {out} (expected {CKPT} and {CKPT_META})")
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"checkpoint in {out} does not read: {str(e).splitlines()[0]}") from None
    if meta.get("config") != cfg.to_dict():
        saved = meta.get("config") or {}
        diff = sorted(k for k in set(saved) | set(cfg.to_dict()) if saved.get(k) != cfg.to_dict().get(k))
        raise CheckpointError(f"checkpoint in {out} was made with another config (differs in: {', '.join(diff)})")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint in {out} is for another architecture: {str(e).splitlines()[0]}") from None
    for n, p in model.named_parameters():
        prefix = f"optim.{n}."
        st = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if st:  # AdamW keeps "step" on the CPU unless capturable
            opt.state[p] = {k: v if k == "step" else v.to(p.device) for k, v in st.items()}
    return int(meta["step"]), float(meta.get("elapsed_s", 0.0)), list(meta.get("recent_losses", []))


# ---------------------------------------------------------------------------------------------- training


def data_sources(cfg: PretrainConfig, fashion_mnist_root=None, world_root=None) -> dict:
    from ..synthetic.sources import fashion_mnist_dir, font_paths

    src: dict = {"generator": "robustprompt.synthetic.generator (shapes x colours x patterns x sizes x positions, "
                              "two-object scenes, letters and digits)"}
    if cfg.fashion > 0:
        d = fashion_mnist_dir(fashion_mnist_root)
        files = {}
        for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
            p = d / f"{stem}.gz" if (d / f"{stem}.gz").is_file() else d / stem
            files[p.name] = file_sha256(p)
        src["fashion_mnist"] = {"dir": str(d), "split": "train (60000 images; t10k never used)", "sha256": files,
                                "package": "Debian dataset-fashion-mnist"}
    src["fonts"] = [str(p) for p in font_paths()]
    if cfg.world > 0:
        from ..world.sources import SOURCES

        src["emoji_world"] = {s.style: {"package": s.spec, "sha256": s.sha256, "licence": s.licence}
                              for s in SOURCES if s.role == "pretrain"}
    return src


def mixed_batch(stream, world, cfg: PretrainConfig, step: int):
    """This step's images and captions: round(world * batch) from the emoji world, the rest from `stream`."""
    n_world = int(round(cfg.world * cfg.batch_size)) if world is not None else 0
    if n_world == 0:
        return stream.batch(step, cfg.batch_size)
    images, caps = world.batch(step, n_world)
    if n_world < cfg.batch_size:
        more, more_caps = stream.batch(step, cfg.batch_size - n_world)
        images, caps = np.concatenate([images, more]), caps + more_caps
    return images, caps


def pretrain(cfg: PretrainConfig, out: str | Path, *, resume: bool = False, fashion_mnist_root=None, world_root=None,
             progress: bool = True, export: bool = True, evaluate: bool = True, command: str | None = None,
             max_steps_this_run: int | None = None, threads: int | None = None, device: str = "cpu") -> dict:
    """Run (or resume) pretraining into `out`; returns the metadata dict (also written next to the export)."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads:  # not part of the recipe: results agree across thread counts up to float reordering
        torch.set_num_threads(threads)
    model = create_model(cfg.model, seed=cfg.seed).to(device)
    model.train()
    opt = make_optimizer(model, cfg)
    start, elapsed, losses = 0, 0.0, []
    if resume:
        start, elapsed, losses = load_checkpoint(out, model, opt, cfg)
    elif (out / CKPT).exists():
        raise CheckpointError(f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out")
    stream = PretrainStream(cfg.seed, cfg.mix(1), fashion_mnist_root)
    stream2 = PretrainStream(cfg.seed, cfg.mix(2), fashion_mnist_root)
    world = None
    if cfg.world > 0:
        from .world_stream import WorldStream

        world = WorldStream(cfg.seed, world_root)
    tokens = Tokens(cfg.model)
    log = open(out / "log.txt", "a")
    total = cfg.total_steps
    end = total if max_steps_this_run is None else min(total, start + max_steps_this_run)
    t0 = time.time() - elapsed
    bar = tqdm(range(start, end), initial=start, total=total, disable=not progress, desc="pretrain",
               dynamic_ncols=True, mininterval=2.0)
    step = start
    for step in bar:
        lr = lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        images, caps = mixed_batch(stream if step < cfg.steps else stream2, world, cfg, step)
        img_f = torch.nn.functional.normalize(model.encode_image(to_model_input(images, model).to(device)), dim=-1)
        txt_f = encode_text_trimmed(model, tokens(caps).to(device))
        scale = model.logit_scale.exp()
        loss = clip_loss(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if (step + 1) % cfg.log_every == 0 or step + 1 == end:
            avg = float(np.mean(losses[-cfg.log_every:]))
            bar.set_postfix(loss=f"{avg:.3f}", lr=f"{lr:.2e}", scale=f"{scale.item():.1f}")
            log.write(f"step {step + 1}/{total} loss {avg:.4f} lr {lr:.3e} logit_scale {scale.item():.2f} "
                      f"elapsed {time.time() - t0:.0f}s\n")
            log.flush()
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
            save_checkpoint(out, model, opt, cfg, step + 1, time.time() - t0, losses)
    bar.close()
    done = end if end > start else start
    wall = time.time() - t0
    meta = {
        "architecture": cfg.model,
        "architecture_config": model_config(cfg.model),
        "params": sum(p.numel() for p in model.parameters()),
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "command": command or " ".join(sys.argv),
        "steps": done,
        "images_seen": done * cfg.batch_size,
        "wall_time_s": round(wall, 1),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "host": {"machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
                 "cpu_count": os.cpu_count()},
        "final_loss": float(np.mean(losses[-cfg.log_every:])) if losses else None,
        "data_sources": data_sources(cfg, fashion_mnist_root, world_root),
        "normalisation": {"mean": list(model.visual.image_mean or ()), "std": list(model.visual.image_std or ())},
    }
    if done < total:
        return meta
    if evaluate:
        from .evaluate import quality_report

        model.eval()
        meta["quality"] = quality_report(model, tokens.tok, fashion_mnist_root)
        if cfg.world > 0:
            from .evaluate import world_quality

            meta["quality"].update(world_quality(model, tokens.tok, world_root))
        log.write("quality " + json.dumps(meta["quality"]) + "\n")
    log.close()
    if export:
        import open_clip

        meta["open_clip"] = open_clip.__version__
        export_weights(model, out / f"{cfg.model}.safetensors", meta)
    return meta
