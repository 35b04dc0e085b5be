"""The one training loop for every method, and the run it records."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..backbone import load_backbone
from ..config import RunConfig, from_dict, to_dict
from ..data import ImageDataset, prepare_dataset
from ..data.base import DatasetSplits
from ..data.transforms import eval_transform, train_transform
from ..errors import ConfigError, RobustPromptError
from ..methods.registry import create_method, method_config
from . import distributed
from .adversarial import adversarial_images, adversarial_loss
from .checkpoint import load_training_state, save_training_state
from .progress import progress
from .evaluate import EvalSpec, evaluate
from .feature_cache import training_feature_dataset, use_feature_cache
from .precision import autocast
from .rundir import CHECKPOINT, RunDir
from .schedule import build_optimizer, lr_at_epoch, set_lr
from .seeding import derive_seed, seed_everything


def versions() -> dict:
    import open_clip

    return {"robustprompt": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": sys.version.split()[0]}


class Terminated(KeyboardInterrupt):
    """SIGTERM while training: raised in the main thread so that cleanup runs (temporary files removed,
    lock released, a run without a checkpoint removed); the last checkpoint stays for --resume."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Turn SIGTERM into `Terminated` while the block runs (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        raise Terminated("terminated by SIGTERM")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class Setup:
    cfg: RunConfig
    backbone: object
    data: DatasetSplits
    method: object
    device: torch.device


def build(cfg: RunConfig, device: str | torch.device = "cpu") -> Setup:
    """Load backbone and data and create the method: every bad input fails here, before any file is written."""
    device = torch.device(device)
    backbone = load_backbone(cfg.model.name, cfg.model.pretrained, quick_gelu=cfg.model.quick_gelu, device=device)
    backbone.share_text_prefix = cfg.train.share_text_prefix
    data = prepare_dataset(cfg.data.dataset, cfg.data.root, shots=cfg.data.shots, seed=cfg.seed,
                           split=cfg.data.split)
    if not data.train:
        raise RobustPromptError(f"dataset {cfg.data.dataset!r} has no training images for split {cfg.data.split!r}")
    seed_everything(derive_seed(cfg.seed, "init"))
    method = create_method(cfg.method, backbone, data.classnames, data.template,
                           method_config(cfg.method, cfg.method_cfg))
    if cfg.adv.enabled and method.no_adversarial_training:
        raise ConfigError(method.no_adversarial_training)
    try:
        method.prepare(data)
    except ValueError as e:
        raise ConfigError(f"method {cfg.method!r}: {e}") from None
    return Setup(cfg, backbone, data, method.to(device), device)


def train(cfg: RunConfig, out: str | Path, *, resume: bool = False, device: str | torch.device = "cpu",
          setup: Setup | None = None, stop_after_epochs: int | None = None) -> dict:
    """Train `cfg` into run directory `out`; with resume=True continue from its last checkpoint.

    `stop_after_epochs` ends the process's work early (used to test interruption and resume).
    Under torchrun every process calls this; rank 0 alone writes `out` (engine/distributed.py).
    """
    dist = distributed.init(device)
    try:
        run = RunDir(out) if dist.is_main else distributed.SilentRun(out)
        dist.on_main(lambda: _check_run_dir(run, cfg, resume))
        setup = setup or build(cfg, dist.device)
        use_feature_cache(cfg, setup.method)  # cache_image_features=true that cannot hold fails before any write
        dist.local_batch_size(cfg.train.batch_size)  # so does a global batch that does not split evenly
        created = not run.path.exists()
        dist.on_main(lambda: _make_run_dir(run))
        try:
            with sigterm_as_interrupt(), run.lock():
                return _train_locked(run, setup, resume, stop_after_epochs, dist)
        except BaseException as e:
            # A run this call created is removed when it failed on bad input (a corrupt image met after
            # the first checkpoint, in the final evaluation...): resuming cannot mend it. An interrupted
            # run keeps its checkpoint for --resume; with none yet there is nothing worth keeping.
            bad_input = isinstance(e, RobustPromptError)
            if dist.is_main and created and (bad_input or not (run / CHECKPOINT).is_dir()):
                shutil.rmtree(run.path, ignore_errors=True)
            raise
    finally:
        distributed.shutdown(dist)


def _check_run_dir(run: RunDir, cfg: RunConfig, resume: bool) -> None:
    if resume:
        if not (run / CHECKPOINT).is_dir() and not run.complete:
            raise RobustPromptError(f"nothing to resume in {run.path} (no checkpoint)")
        stored = from_dict(RunConfig, run.read_config())
        if to_dict(stored) != to_dict(cfg):
            diff = _first_difference(to_dict(stored), to_dict(cfg))
            raise ConfigError(f"--resume with a config that differs from the run's at {diff}")
    elif run.path.exists() and not run.path.is_dir():
        raise RobustPromptError(f"cannot create run directory {run.path}: a file of that name exists")
    elif run.path.exists() and any(run.path.iterdir()):
        raise RobustPromptError(f"run directory {run.path} already exists and is not empty; "
                                "use --resume to continue it or choose another --out")


def _make_run_dir(run: RunDir) -> None:
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RobustPromptError(f"cannot create run directory {run.path}: {e.strerror}") from None
    if not _writable(run.path):
        raise RobustPromptError(f"run directory {run.path} is not writable")


SYNC_EVERY = 20  # training steps between reads of the running loss (each read waits for the device)


class TermSums:
    """Per-epoch sums of the loss and of the method's named terms, kept on the device: the training
    loop reads them (one device sync) only every SYNC_EVERY steps and at the end of the epoch."""

    def __init__(self, device):
        self.loss = torch.zeros((), device=device)
        self.terms: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, loss, stats: dict, n: int) -> None:
        self.loss += loss.detach().float() * n
        for k, v in stats.items():
            v = torch.as_tensor(v, device=self.loss.device).detach().float() * n
            self.terms[k] = self.terms[k] + v if k in self.terms else v
        self.count += n

    def checked_mean(self, epoch: int) -> float:
        """The running mean loss; a non-finite loss stops training with a one-line error."""
        mean = self.loss.item() / max(self.count, 1)
        if not math.isfinite(mean):
            raise RobustPromptError(f"loss became {mean} in epoch {epoch + 1}; lower train.lr")
        return mean

    def total(self) -> float:
        return self.loss.item()

    def term_means(self) -> dict[str, float]:
        if not self.terms:
            return {}
        values = torch.stack(list(self.terms.values())).cpu().tolist()  # one sync for every term
        return {k: v / max(self.count, 1) for k, v in zip(self.terms, values)}


def step_loss(method, cfg: RunConfig, cached: bool, x, labels) -> tuple:
    """(loss, stats) of one training step on images `x`, or on their cached training features."""
    device = labels.device
    with autocast(cfg.train.precision, device):
        ctx = method.class_context(chunk=cfg.train.class_chunk)
    adv_images = adversarial_images(method, x, labels, ctx, cfg.adv) if cfg.adv.enabled else None  # never cached
    with autocast(cfg.train.precision, device):
        if cached:
            return method.loss_from_features(x, labels, ctx)
        if adv_images is not None:
            return adversarial_loss(method, x, adv_images, labels, ctx, cfg.adv.loss, cfg.adv.trades_beta)
        return method.loss(x, labels, ctx)


def _train_locked(run: RunDir, s: Setup, resume: bool, stop_after_epochs: int | None,
                  dist: distributed.Dist) -> dict:
    cfg, method, device = s.cfg, s.method, s.device
    params = list(method.learnable_parameters().values())
    optimizer = build_optimizer(cfg.train, params) if params else None
    start_epoch = 0
    if resume and (run / CHECKPOINT).is_dir():
        start_epoch, learnable, opt_state, _ = load_training_state(run / CHECKPOINT)
        method.load_learnable_state(learnable)
        optimizer.load_state_dict(opt_state)
        run.log(f"resumed after epoch {start_epoch}")
    else:
        run.write_config(to_dict(cfg))
        run.log(f"train {cfg.method} on {cfg.data.dataset} ({cfg.data.split}, {cfg.data.shots} shots, "
                f"seed {cfg.seed}), {sum(p.numel() for p in params)} learnable values")

    transform = (train_transform(s.backbone.image_size, (cfg.data.train_crop_scale, 1.0)) if cfg.data.train_augment
                 else eval_transform(s.backbone.image_size))
    dataset = ImageDataset(s.data.train, transform, s.data.images)
    t0 = time.time()
    last_loss = float("nan")
    end_epoch = cfg.train.epochs if stop_after_epochs is None else min(cfg.train.epochs, stop_after_epochs)
    if optimizer is None:  # nothing learns (zero-shot): record the evaluation only
        start_epoch = end_epoch = cfg.train.epochs
    cached = start_epoch < end_epoch and use_feature_cache(cfg, method)
    if cached:  # text-only method, same images every epoch: the frozen image side once (feature_cache.py)
        dataset = training_feature_dataset(method, dataset, batch_size=cfg.train.eval_batch_size,
                                           precision=cfg.train.precision, dist=dist,
                                           num_workers=cfg.data.num_workers)
        run.log(f"cached the training features of {len(dataset)} images ({time.time() - t0:.1f}s)")
    runner = dist.wrap(method) if start_epoch < end_epoch else None  # DDP over the learnable parameters
    loss_fn = functools.partial(step_loss, method, cfg, cached)
    for epoch in range(start_epoch, end_epoch):
        set_lr(optimizer, lr_at_epoch(cfg.train, epoch))
        seed_everything(dist.rank_seed(derive_seed(cfg.seed, "epoch", epoch)))
        loader = dist.loader(dataset, cfg.train.batch_size, derive_seed(cfg.seed, "order", epoch),
                             num_workers=0 if cached else cfg.data.num_workers)
        method.train()
        sums = TermSums(device)  # the loss and its named terms, summed on the device: one sync per interval
        bar = progress(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", passes_after=end_epoch - epoch - 1,
                       whole="training")
        for step, (inputs, labels) in enumerate(bar):
            inputs, labels = inputs.to(device), labels.to(device)
            loss, stats = runner(loss_fn, inputs, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            optimizer.step()
            sums.add(loss, stats, len(labels))
            if (step + 1) % SYNC_EVERY == 0:
                bar.set_postfix(loss=f"{sums.checked_mean(epoch):.4f}")
        sums.checked_mean(epoch)
        method.end_epoch(epoch + 1, cfg.train.epochs)
        total, count = dist.sum(sums.total(), sums.count)  # the epoch's mean loss over every process's images
        last_loss = total / max(count, 1)
        if dist.is_main:
            save_training_state(run / CHECKPOINT, epoch + 1, method.learnable_state(), optimizer,
                                {"method": cfg.method})
        terms = " ".join(f"{k} {v:.4f}" for k, v in sums.term_means().items())
        run.log(f"epoch {epoch + 1}/{cfg.train.epochs} lr {optimizer.param_groups[0]['lr']:.3g} "
                f"loss {last_loss:.4f}" + (f" ({terms})" if terms else ""))
    if end_epoch < cfg.train.epochs:
        return {}

    save_prompt(run, s)
    record = evaluate(method, s.data, EvalSpec(split=cfg.data.split, n_max=cfg.data.test_n_max), seed=cfg.seed,
                      batch_size=cfg.train.eval_batch_size, device=device, precision=cfg.train.precision,
                      dist=dist)
    record["dataset"] = cfg.data.dataset
    results = run.add_records(run_header(s, train={"epochs": cfg.train.epochs, "final_loss": last_loss,
                                                   "wall_s_last_session": round(time.time() - t0, 2),
                                                   **method.run_info()}), [record])
    run.log(f"test {cfg.data.split}: accuracy {record['value']:.4f} on {record['n']} images")
    return results


def save_prompt(run: RunDir, s: Setup) -> None:
    run.save_prompt(s.method.learnable_state(), {
        "method": s.cfg.method,
        "classnames": list(s.data.classnames),
        "template": s.data.template,
        "backbone": s.backbone.identity.to_dict(),
        "robustprompt": __version__,
    })


def run_header(s: Setup, **extra) -> dict:
    return {
        "run": {"method": s.cfg.method, "label": s.cfg.label or s.cfg.method, "dataset": s.cfg.data.dataset, "train_split": s.cfg.data.split,
                "shots": s.cfg.data.shots, "seed": s.cfg.seed, "classnames": list(s.data.classnames)},
        "backbone": s.backbone.identity.to_dict(),
        "versions": versions(),
        **extra,
    }


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def _first_difference(a, b, prefix="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
    return prefix or "<root>"
