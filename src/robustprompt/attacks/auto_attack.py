"""AutoAttack ``standard`` (Croce & Hein, ICML 2020): APGD-CE, APGD-T, FAB-T, Square in sequence.

Each attack runs only on the images that every earlier attack failed to break, so the final
robust accuracy is the per-image worst case over the four. The targeted attacks use
``min(9, n_classes - 1)`` target classes. Every adversarial point is checked before it counts:
inside the eps ball (up to 1e-6), inside [0, 1], and misclassified by a fresh forward pass.

Two implementations can run it:

* ``backend="robustprompt"`` (default): this package's own APGD / FAB / Square, written to the
  papers (see each module). Random draws come from one ``torch.Generator`` per attack, seeded
  from ``seed`` and the attack's name, and are made for the whole batch, so running a single
  component (``attacks=("apgd-t",)``) reproduces, image by image, what it does inside the
  sequence: the ensemble's robust accuracy is never above a component's.
* ``backend="pyautoattack"``: the ``pyautoattack`` package (a PyPI packaging of the authors'
  reference code), when installed. Its targeted DLR loss needs at least 4 classes.

``IMPLEMENTATION`` names the default implementation; every result carries the one that ran
(``result.report["implementation"]``) for results.json.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Protocol, Sequence

import torch
from torch import Tensor

from robustprompt import __version__
from robustprompt.errors import ConfigError

from ._core import (
    EpsLike,
    Model,
    canonical_norm,
    check_inputs,
    logits_of,
    lp_norm,
    n_target_classes as _n_targets,
    parse_eps,
)
from .auto_pgd import RUNS_PER_BATCH, apgd, apgd_targeted
from .fab import fab_targeted
from .gradient import Attack
from .square_attack import square

IMPLEMENTATION = {"name": "robustprompt.attacks", "version": __version__}
STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
KNOWN_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")
BACKENDS = ("robustprompt", "pyautoattack")


def backend_implementation(backend: str) -> Dict[str, str]:
    """``{"name", "version"}`` of the implementation a backend runs."""
    if backend == "robustprompt":
        return dict(IMPLEMENTATION)
    if backend == "pyautoattack":
        try:
            import pyautoattack
        except ImportError:
            raise ConfigError(
                "backend 'pyautoattack' is not installed: pip install pyautoattack"
            ) from None
        return {"name": "pyautoattack", "version": str(getattr(pyautoattack, "__version__", "?"))}
    raise ConfigError(f"unknown AutoAttack backend {backend!r}: use one of {BACKENDS}")


@dataclass
class AutoAttackResult:
    """What :func:`autoattack` returns.

    adv: adversarial images (clean image where no attack succeeded), fp32 (B, C, H, W).
    robust: bool (B,), True where the image is still correctly classified after every attack.
    report: JSON-ready dict: clean_acc, robust_acc_after (robust accuracy after each attack,
        cumulative), broken_by (images each attack broke), autoattack_acc, eps ("4/255") and
        eps_value, norm, n_images, n_classes, n_target_classes, settings, time_s,
        max_perturbation, implementation.
    """

    adv: Tensor
    robust: Tensor
    report: Dict = field(default_factory=dict)

    @property
    def robust_accuracy(self) -> float:
        return float(self.report["autoattack_acc"])


class StageCheckpoint(Protocol):
    """Where :func:`autoattack` keeps its state after each finished attack: ``save(tensors, meta)``
    (tensors: a dict of tensors; meta: a JSON-ready dict) and ``load()`` -> ``(tensors, meta)`` or None.
    How it is stored is the caller's (the engine writes one safetensors file per batch)."""

    def load(self) -> Optional[tuple]: ...

    def save(self, tensors: Dict[str, Tensor], meta: Dict) -> None: ...


_STAGE_REPORT = ("broken_by", "robust_acc_after", "time_s")  # the report's per-attack parts a kept state holds


def _inputs_key(x: Tensor, y: Tensor, names, eps_f: float, norm: str, settings: Dict, backend: str) -> str:
    """What a kept stage state must match to be resumed from: the images, labels and attack settings."""
    h = hashlib.sha256()
    h.update(x.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().long().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([list(names), eps_f, norm, settings, backend], sort_keys=True).encode())
    return h.hexdigest()


def _attack_seed(seed: int, name: str, chunk: int) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode()) + 7919 * chunk) % (2 ** 63 - 1)


def _run_own(name, model, x, y, eps, norm, mask, gen, n_iter, n_restarts, n_targets, n_queries,
             runs_per_batch):
    if name == "apgd-ce":
        return apgd(model, x, y, eps, norm=norm, n_iter=n_iter, loss="ce",
                    n_restarts=n_restarts, generator=gen, mask=mask, runs_per_batch=runs_per_batch)
    if name == "apgd-dlr":
        return apgd(model, x, y, eps, norm=norm, n_iter=n_iter, loss="dlr",
                    n_restarts=n_restarts, generator=gen, mask=mask, runs_per_batch=runs_per_batch)
    if name == "apgd-t":
        return apgd_targeted(model, x, y, eps, norm=norm, n_iter=n_iter, n_restarts=1,
                             n_target_classes=n_targets, generator=gen, mask=mask,
                             runs_per_batch=runs_per_batch)
    if name == "fab-t":
        return fab_targeted(model, x, y, eps, norm=norm, n_iter=n_iter, n_restarts=1,
                            n_target_classes=n_targets, generator=gen, mask=mask,
                            runs_per_batch=runs_per_batch)
    if name == "square":
        return square(model, x, y, eps, norm=norm, n_queries=n_queries, p_init=0.8,
                      n_restarts=1, loss="margin", rescale_schedule=False, generator=gen,
                      mask=mask)
    raise ConfigError(f"unknown attack {name!r}: use some of {KNOWN_ATTACKS}")


class _GradGuard:
    """Restore the parameters' ``.grad`` after code that calls ``backward()`` (pyautoattack)."""

    def __init__(self, model):
        self.params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []

    def __enter__(self):
        self.saved = [p.grad for p in self.params]
        return self

    def __exit__(self, *exc):
        for p, g in zip(self.params, self.saved):
            p.grad = g
        return False


def _run_pyautoattack(name, model, x, y, eps, norm, mask, seed, n_iter, n_restarts, n_targets,
                      n_queries):
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    from pyautoattack.fab_pt import FABAttack_PT
    from pyautoattack.square import SquareAttack

    def fwd(z):
        return logits_of(model, z)

    dev = x.device
    idx = mask.nonzero().squeeze(1)
    adv = x.clone()
    if idx.numel() == 0:
        return adv
    if name == "apgd-ce":
        atk = APGDAttack(fwd, n_restarts=n_restarts, n_iter=n_iter, eps=eps, norm=norm,
                         seed=seed, loss="ce", device=dev)
    elif name == "apgd-dlr":
        atk = APGDAttack(fwd, n_restarts=n_restarts, n_iter=n_iter, eps=eps, norm=norm,
                         seed=seed, loss="dlr", device=dev)
    elif name == "apgd-t":
        atk = APGDAttack_targeted(fwd, n_restarts=1, n_iter=n_iter, eps=eps, norm=norm,
                                  seed=seed, n_target_classes=n_targets, device=dev)
    elif name == "fab-t":
        atk = FABAttack_PT(fwd, n_restarts=1, n_iter=n_iter, eps=eps, seed=seed, norm=norm,
                           targeted=True, n_target_classes=n_targets, device=dev)
    elif name == "square":
        atk = SquareAttack(fwd, p_init=0.8, n_queries=n_queries, eps=eps, norm=norm,
                           n_restarts=1, seed=seed, device=dev, resc_schedule=False)
    else:
        raise ConfigError(f"unknown attack {name!r}: use some of {KNOWN_ATTACKS}")
    cpu_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        with _GradGuard(model):
            out = atk.perturb(x[idx].clone(), y[idx].clone())
    finally:  # the reference code reseeds the global RNGs; leave them as we found them
        torch.random.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
    adv[idx] = out.detach().float().to(dev)
    return adv


def autoattack(
    model: Model,
    images: Tensor,
    labels: Tensor,
    eps: EpsLike,
    *,
    norm: str = "Linf",
    attacks: Optional[Sequence[str]] = None,
    n_iter: int = 100,
    n_restarts: int = 1,
    n_target_classes: int = 9,
    n_queries: int = 5000,
    seed: int = 0,
    batch_size: Optional[int] = None,
    runs_per_batch: int = RUNS_PER_BATCH,
    backend: str = "robustprompt",
    verbose: bool = False,
    on_stage: Optional[Callable[[str], None]] = None,
    checkpoint: Optional[StageCheckpoint] = None,
) -> AutoAttackResult:
    """AutoAttack ``standard``: APGD-CE, APGD-T, FAB-T and Square, per-image worst case.

    Threat model ``||x_adv - x||_p <= eps`` (p = inf or 2), ``x_adv`` in [0, 1]; images float
    (B, C, H, W) in [0, 1]; the model returns logits (normalisation inside), called in fp32
    with gradients w.r.t. the input only; its train/eval mode is left as the caller set it
    (put it in eval mode for an evaluation).

    Defaults are the paper's standard version: n_iter 100 (APGD-CE, APGD-T and FAB-T), 1
    restart, ``min(n_target_classes=9, n_classes - 1)`` targets, Square with 5000 queries and
    p_init 0.8 (absolute schedule). ``n_restarts`` is APGD-CE's (APGD-T and FAB-T make one run
    per target, as in the standard version). Lower ``n_iter`` / ``n_queries`` /
    ``n_target_classes`` give a cheaper (weaker) evaluation; the report records the settings.
    ``attacks`` runs a subset (or adds "apgd-dlr"); a subset run with the same ``seed``
    reproduces that attack's part of the full sequence image by image. ``batch_size`` splits
    the images into chunks attacked one after the other; ``runs_per_batch`` is how many runs of
    one attack (APGD-T's and FAB-T's targets, APGD-CE's restarts) go side by side in one batch
    (default 9, every target at once while the rows fit in ``batch_size`` images or 64 rows:
    larger batches, fewer model calls; the robust set does not depend on it). ``backend`` picks the implementation
    ("robustprompt" or "pyautoattack", see the module docstring). ``seed`` seeds one
    ``torch.Generator`` per attack; the global RNG is not touched. ``on_stage``, if given, is
    called with a short text before each attack (e.g. ``"fab-t (3/4), 212/250 robust"``): a
    progress display's postfix, since one batch can take many minutes. ``checkpoint``, if given
    (see :class:`StageCheckpoint`), receives the state after each finished attack, and a state it
    holds for the same images, labels and settings is resumed from: the finished attacks are not run
    again and the result is the same as an uninterrupted run's, since each attack draws from its own
    generator (seeded by ``seed``, its name and the chunk) and sees only the images still robust.

    Example::

        >>> model.eval()
        >>> res = autoattack(model, images, labels, eps="4/255")
        >>> res.report["robust_acc_after"]   # {"apgd-ce": ..., "apgd-t": ..., ...}
        >>> res.robust_accuracy
    """
    norm = canonical_norm(norm)
    eps_str, eps_f = parse_eps(eps)
    names = tuple(attacks) if attacks is not None else STANDARD_ATTACKS
    for n in names:
        if n not in KNOWN_ATTACKS:
            raise ConfigError(f"unknown attack {n!r}: use some of {KNOWN_ATTACKS}")
    implementation = backend_implementation(backend)
    x0, y = check_inputs(images, labels)
    n = x0.shape[0]
    if n == 0:
        raise ValueError("autoattack needs at least one image")

    with torch.no_grad():
        clean_pred = torch.cat([
            logits_of(model, x0[i:i + (batch_size or n)]).argmax(1)
            for i in range(0, n, batch_size or n)
        ])
        n_classes = int(logits_of(model, x0[:1]).shape[1])
    k = _n_targets(n_classes, n_target_classes)
    if backend == "pyautoattack" and n_classes < 4 and any(a in ("apgd-t", "apgd-dlr") for a in names):
        raise ConfigError(
            f"pyautoattack's DLR losses need at least 4 classes, the model has {n_classes}; "
            "use backend='robustprompt'"
        )
    robust = clean_pred == y
    adv = x0.clone()
    report: Dict = {
        "implementation": implementation,
        "version": "standard" if names == STANDARD_ATTACKS else "custom",
        "attacks": list(names),
        "norm": norm,
        "eps": eps_str,
        "eps_value": eps_f,
        "n_images": n,
        "n_classes": n_classes,
        "n_target_classes": k,
        "settings": {"n_iter": int(n_iter), "n_restarts": int(n_restarts),
                     "n_queries": int(n_queries), "seed": int(seed), "p_init": 0.8,
                     "runs_per_batch": int(runs_per_batch)},
        "clean_acc": float(robust.float().mean()),
        "robust_acc_after": {},
        "broken_by": {},
        "time_s": {},
    }
    bs = batch_size or n
    done: list = []
    key = None
    if checkpoint is not None:
        key = _inputs_key(x0, y, names, eps_f, norm, report["settings"], backend)
        kept = checkpoint.load()
        if kept is not None and kept[1].get("key") == key:
            tensors, meta = kept
            done = list(meta["done"])
            robust = tensors["robust"].to(device=robust.device, dtype=torch.bool)
            changed = tensors["changed"].long().to(adv.device)
            adv[changed] = tensors["adv"].to(adv)
            for part in _STAGE_REPORT:
                report[part].update(meta[part])
    n_kept = len(done)
    for stage, name in enumerate(names, 1):
        if stage <= n_kept:
            continue  # finished before an interruption
        t0 = time.time()
        before = int(robust.sum())
        if on_stage is not None:
            resumed = f", resumed after {names[stage - 2]}" if n_kept and stage == n_kept + 1 else ""
            on_stage(f"{name} ({stage}/{len(names)}), {before}/{n} robust{resumed}")
        for ci, start in enumerate(range(0, n, bs)):
            sl = slice(start, min(start + bs, n))
            mask = robust[sl].clone()
            if eps_f == 0 or not mask.any():
                continue
            xs, ys = x0[sl], y[sl]
            aseed = _attack_seed(seed, name, ci)
            if backend == "robustprompt":
                gen = torch.Generator().manual_seed(aseed)
                out = _run_own(name, model, xs, ys, eps_f, norm, mask, gen, int(n_iter),
                               int(n_restarts), k, int(n_queries), runs_per_batch)
            else:
                out = _run_pyautoattack(name, model, xs, ys, eps_f, norm, mask, aseed % (2 ** 31),
                                        int(n_iter), int(n_restarts), k, int(n_queries))
            idx = mask.nonzero().squeeze(1)
            cand = out[idx]
            dist = lp_norm(cand - xs[idx], norm)
            inside = (dist <= eps_f + 1e-6) & (cand.amin(dim=(1, 2, 3)) >= 0) & (
                cand.amax(dim=(1, 2, 3)) <= 1)
            if not bool(inside.all()):
                worst = float(dist.max())
                raise RuntimeError(
                    f"{name} ({implementation['name']}) returned a point outside the threat "
                    f"model: {norm} distance {worst:.6g} > eps {eps_f:.6g} or outside [0, 1]"
                )
            with torch.no_grad():
                mis = logits_of(model, cand).argmax(1) != ys[idx]
            gidx = idx[mis] + start
            adv[gidx] = cand[mis]
            robust[gidx] = False
        report["broken_by"][name] = before - int(robust.sum())
        report["robust_acc_after"][name] = float(robust.float().mean())
        report["time_s"][name] = round(time.time() - t0, 3)
        if checkpoint is not None and stage < len(names):
            done.append(name)
            changed = (adv != x0).flatten(1).any(1).nonzero().squeeze(1)
            checkpoint.save({"robust": robust.cpu(), "changed": changed.cpu(), "adv": adv[changed].cpu()},
                            {"key": key, "done": done, **{part: report[part] for part in _STAGE_REPORT}})
        if verbose:
            print(f"[autoattack] {name}: robust accuracy {report['robust_acc_after'][name]:.2%}"
                  f" ({report['time_s'][name]:.1f} s)")
    report["autoattack_acc"] = float(robust.float().mean())
    report["max_perturbation"] = float(lp_norm(adv - x0, norm).max())
    return AutoAttackResult(adv=adv.detach(), robust=robust, report=report)


class AutoAttack(Attack):
    """AutoAttack object (see :func:`autoattack`). Defaults: norm "Linf", version standard
    (APGD-CE, APGD-T, FAB-T, Square), n_iter 100, n_restarts 1, n_target_classes 9,
    n_queries 5000, seed 0, backend "robustprompt".

    ``atk(images, labels)`` returns the adversarial images; ``atk.run(images, labels)`` the
    :class:`AutoAttackResult` with its report; the last report stays in ``atk.last_report``.

    Example::

        >>> atk = AutoAttack(model, eps="1/255", n_queries=1000)
        >>> res = atk.run(images, labels); res.report["robust_acc_after"]
    """

    name = "autoattack"

    def __init__(self, model: Model, eps: EpsLike, norm: str = "Linf",
                 attacks: Optional[Sequence[str]] = None, n_iter: int = 100,
                 n_restarts: int = 1, n_target_classes: int = 9, n_queries: int = 5000,
                 seed: int = 0, batch_size: Optional[int] = None,
                 runs_per_batch: int = RUNS_PER_BATCH, backend: str = "robustprompt",
                 verbose: bool = False):
        super().__init__(model)
        self.eps = parse_eps(eps)[1]
        self.norm = canonical_norm(norm)
        self.kwargs = dict(norm=self.norm, attacks=attacks, n_iter=n_iter, n_restarts=n_restarts,
                           n_target_classes=n_target_classes, n_queries=n_queries, seed=seed,
                           batch_size=batch_size, runs_per_batch=runs_per_batch, backend=backend,
                           verbose=verbose)
        self.implementation = backend_implementation(backend)
        self.last_report: Optional[Dict] = None

    def run(self, images: Tensor, labels: Tensor) -> AutoAttackResult:
        res = autoattack(self.model, images, labels, self.eps, **self.kwargs)
        self.last_report = res.report
        return res

    def forward(self, images, labels, generator=None):
        return self.run(images, labels).adv

    def _settings(self):
        return dict(eps=self.eps, **{k: v for k, v in self.kwargs.items() if k != "verbose"})
