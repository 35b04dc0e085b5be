"""APGD (Croce & Hein, ICML 2020): step-size-free PGD with momentum and checkpoints.

APGD-CE maximises the cross-entropy; APGD-T maximises the targeted DLR loss towards each of the
top ``n_target_classes`` classes in turn (AutoAttack's second attack).

Algorithm 1 of the paper, for each image independently:

* start ``x(0)`` on the eps sphere (random), step size ``eta(0) = 2 eps``;
* ``x(1) = P(x(0) + eta s(grad f(x(0))))``, then for k >= 1
  ``z(k+1) = P(x(k) + eta(k) s(grad f(x(k))))`` and
  ``x(k+1) = P(x(k) + a (z(k+1) - x(k)) + (1 - a)(x(k) - x(k-1)))`` with momentum a = 0.75,
  ``s`` the sign (L-inf) or L2 normalisation, ``P`` the projection on the ball and [0, 1];
* checkpoints ``w_j = ceil(p_j N)``, ``p_0 = 0``, ``p_1 = 0.22``,
  ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``; at each the step size is halved and
  the iterate reset to the best point so far when (1) the loss rose in fewer than
  ``rho = 0.75`` of the steps since the last checkpoint, or (2) the step size was not reduced
  at the last checkpoint and the best loss has not improved since.

An image is done as soon as an iterate is misclassified (that iterate is returned); otherwise
the highest-loss point is returned.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from robustprompt.errors import ConfigError

from ._core import (
    EpsLike,
    Model,
    canonical_norm,
    ce_loss,
    check_inputs,
    dlr_loss,
    dlr_targeted_loss,
    eps_value,
    logits_of,
    loss_and_grad,
    n_target_classes as _n_targets,
    normalize_l2,
    project,
    random_start,
    target_by_rank,
)
from .gradient import Attack


def apgd_checkpoints(n_iter: int) -> List[int]:
    """Iterations at which APGD may halve its step size (paper: p_1 = 0.22, decrements 0.03,
    minimum 0.06). For n_iter = 100: [22, 41, 57, 70, 80, 87, 93, 99]."""
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt > 1.0:
            break
        p.append(nxt)
    ws = sorted({math.ceil(pj * n_iter - 1e-6) for pj in p[1:]})
    return [w for w in ws if 1 <= w <= n_iter]


# Runs (targets, restarts) of one attack that go side by side in a batch by default: all nine
# targets of AutoAttack's standard version. The rows of such a batch never exceed the caller's
# batch of images or STACK_ROWS, whichever is larger (the caller sized its batch to its memory).
RUNS_PER_BATCH = 9
STACK_ROWS = 64


def runs_side_by_side(runs_per_batch: int, n_images: int, n_active: int) -> int:
    """How many runs go side by side for `n_active` images left of a batch of `n_images`."""
    return max(1, min(runs_per_batch, max(n_images, STACK_ROWS) // max(n_active, 1)))


def _runs_per_batch(value) -> int:
    if int(value) < 1:
        raise ConfigError(f"runs_per_batch must be >= 1, got {value}")
    return int(value)


def _step_dir(g: Tensor, norm: str) -> Tensor:
    return g.sign() if norm == "Linf" else normalize_l2(g)


def _apgd_single(
    model: Model,
    x0: Tensor,
    y: Tensor,
    x_start: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    eps: float,
    norm: str,
    n_iter: int,
    rho: float,
    momentum: float,
    group: Tensor,
) -> Tuple[Tensor, Tensor, Tensor]:
    """APGD on a batch of rows, each its own run. loss_fn(logits, idx) gets the row indices.

    `group` (long, one entry per row) names the image a row attacks: every row of an image
    stops as soon as one of them misclassifies it (runs side by side; see `_run_stacked`).

    Returns (points, fooled, best loss): points are the misclassified iterate where fooled,
    else the highest-loss iterate.
    """
    b = x0.shape[0]
    dev = x0.device
    all_idx = torch.arange(b, device=dev)
    checkpoints = apgd_checkpoints(n_iter)

    x = x_start.clone()
    logits, f_cur, g = loss_and_grad(model, x, lambda z: loss_fn(z, all_idx))
    fooled = logits.argmax(1) != y
    group_done = torch.zeros(int(group.max()) + 1, dtype=torch.bool, device=dev)
    group_done[group[fooled]] = True
    x_adv = x.clone()
    x_prev = x.clone()
    x_max, f_max, g_max = x.clone(), f_cur.clone(), g.clone()
    eta = torch.full((b,), 2.0 * eps, device=dev)
    count = torch.zeros(b, device=dev)
    reduced_last = torch.zeros(b, dtype=torch.bool, device=dev)
    f_max_last = f_max.clone()
    last_w = 0

    for k in range(n_iter):
        act = (~group_done[group]).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        xa, x0a = x[act], x0[act]
        e = eta[act].view(-1, 1, 1, 1)
        z = project(xa + e * _step_dir(g[act], norm), x0a, eps, norm)
        if k == 0:
            x_new = z
        else:
            x_new = project(xa + momentum * (z - xa) + (1 - momentum) * (xa - x_prev[act]),
                            x0a, eps, norm)
        x_prev[act] = xa
        x[act] = x_new
        logits, f_new, g_new = loss_and_grad(model, x_new, lambda zz: loss_fn(zz, act))
        mis = logits.argmax(1) != y[act]
        if mis.any():
            x_adv[act[mis]] = x_new[mis]
            fooled[act[mis]] = True
            group_done[group[act[mis]]] = True
        count[act] += (f_new > f_cur[act]).float()
        f_cur[act] = f_new
        g[act] = g_new
        better = f_new > f_max[act]
        if better.any():
            ib = act[better]
            x_max[ib], f_max[ib], g_max[ib] = x_new[better], f_new[better], g_new[better]
        if (k + 1) in checkpoints:
            h = (k + 1) - last_w
            cond1 = count < rho * h
            cond2 = (~reduced_last) & (f_max <= f_max_last)
            red = cond1 | cond2
            if red.any():
                eta[red] = eta[red] / 2.0
                x[red], g[red], f_cur[red] = x_max[red], g_max[red], f_max[red]
            reduced_last = red
            f_max_last = f_max.clone()
            count.zero_()
            last_w = k + 1

    out = torch.where(fooled.view(-1, 1, 1, 1), x_adv, x_max)
    return out, fooled, f_max


def _prepare(images, labels, eps, norm, n_iter, n_restarts, mask):
    norm = canonical_norm(norm)
    eps = eps_value(eps)
    if int(n_iter) < 1:
        raise ConfigError(f"n_iter must be >= 1, got {n_iter}")
    if int(n_restarts) < 1:
        raise ConfigError(f"n_restarts must be >= 1, got {n_restarts}")
    x0, y = check_inputs(images, labels)
    if mask is None:
        mask = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    else:
        mask = torch.as_tensor(mask, device=x0.device).bool().reshape(-1)
        if mask.shape[0] != x0.shape[0]:
            raise ValueError(f"mask has {mask.shape[0]} entries for {x0.shape[0]} images")
    return x0, y, eps, norm, int(n_iter), int(n_restarts), mask


def _run_stacked(model, x0, y, eps, norm, n_iter, rho, momentum, mask, generator, targets,
                 loss, runs_per_batch, adv, best_loss, fooled):
    """APGD runs, one per entry of `targets` (None: untargeted; else the target class per image),
    on the images of `mask` not fooled yet; updates adv / best_loss / fooled.

    Each run starts from its own random point, drawn for the whole batch in run order (so an
    image's start does not depend on the others). Up to `runs_per_batch` runs go side by side in
    one batch (run-major rows; see `runs_side_by_side`); an image leaves all of them as soon as one misclassifies it. An image
    is fooled iff some run fools it, as when the runs go one after the other on the images still
    robust (runs_per_batch=1), and every run's trajectory on an image is the same either way: the
    robust set does not depend on `runs_per_batch`, only the batches' sizes (and so the speed) do.
    Where several runs fool an image, the adversarial point of the first (in run order) is kept.
    """
    dev = x0.device
    c0 = 0
    while c0 < len(targets):
        idx = (mask & ~fooled).nonzero().squeeze(1)
        m = runs_side_by_side(runs_per_batch, x0.shape[0], idx.numel())
        chunk = targets[c0:c0 + m]
        c0 += m
        starts = [random_start(x0, eps, norm, generator, mode="boundary") for _ in chunk]
        if idx.numel() == 0:
            continue
        m, n = len(chunk), idx.numel()
        img = idx.repeat(m)
        y_rows = y[img]
        if loss == "dlr-t":
            t_rows = torch.cat([t[idx] for t in chunk])
            loss_rows = lambda z, rows: dlr_targeted_loss(z, y_rows[rows], t_rows[rows])  # noqa: E731
        elif loss == "dlr":
            loss_rows = lambda z, rows: dlr_loss(z, y_rows[rows])  # noqa: E731
        else:
            loss_rows = lambda z, rows: ce_loss(z, y_rows[rows])  # noqa: E731
        group = torch.arange(n, device=dev).repeat(m)
        out, fooled_rows, loss_of_rows = _apgd_single(
            model, x0[img], y_rows, torch.cat([s[idx] for s in starts]), loss_rows,
            eps, norm, n_iter, rho, momentum, group)
        fooled_rows, loss_of_rows = fooled_rows.view(m, n), loss_of_rows.view(m, n)
        out = out.view(m, n, *x0.shape[1:])
        hit = fooled_rows.any(0)
        run = torch.where(hit, fooled_rows.int().argmax(0), loss_of_rows.argmax(0))
        chosen = out[run, torch.arange(n, device=dev)]
        chosen_loss = loss_of_rows.amax(0)
        take = hit | (chosen_loss > best_loss[idx])
        adv[idx[take]] = chosen[take]
        best_loss[idx] = torch.maximum(best_loss[idx], chosen_loss)
        fooled[idx[hit]] = True


def apgd(
    model: Model,
    images: Tensor,
    labels: Tensor,
    eps: EpsLike,
    *,
    norm: str = "Linf",
    n_iter: int = 100,
    loss: str = "ce",
    n_restarts: int = 1,
    rho: float = 0.75,
    momentum: float = 0.75,
    generator: Optional[torch.Generator] = None,
    mask: Optional[Tensor] = None,
    runs_per_batch: int = RUNS_PER_BATCH,
) -> Tensor:
    """APGD, untargeted (APGD-CE with ``loss="ce"``, APGD-DLR with ``loss="dlr"``).

    Threat model ``||x_adv - x||_p <= eps`` (p = inf or 2), ``x_adv`` in [0, 1]; images float
    (B, C, H, W) in [0, 1]; model returns logits. fp32, input gradients only, module mode kept.

    Defaults (AutoAttack standard): n_iter 100, 1 restart, rho 0.75, momentum 0.75, initial step
    2 * eps, random start on the eps sphere drawn from ``generator``. ``mask`` (bool, B)
    restricts the attack to some images (others are returned unchanged); images misclassified
    when clean are returned unchanged; an image leaves the attack as soon as it is misclassified.
    ``runs_per_batch`` restarts run side by side in one batch (fewer, larger model calls; the
    images it leaves robust do not depend on it).

    Returns adversarial images: a misclassified point where one was found, else the point of
    highest loss.

    Example::

        >>> adv = apgd(model, images, labels, eps="4/255", n_iter=100)
    """
    x0, y, eps, norm, n_iter, n_restarts, mask = _prepare(images, labels, eps, norm, n_iter,
                                                          n_restarts, mask)
    adv = x0.clone()
    if eps == 0 or x0.shape[0] == 0:
        return adv
    lname = str(loss).lower()
    if lname not in ("ce", "dlr"):
        raise ConfigError(f"APGD loss must be 'ce' or 'dlr', got {loss!r}")
    best_loss = torch.full((x0.shape[0],), float("-inf"), device=x0.device)
    with torch.no_grad():
        fooled = (logits_of(model, x0).argmax(1) != y) & mask  # already misclassified: skipped
    _run_stacked(model, x0, y, eps, norm, n_iter, rho, momentum, mask, generator,
                 [None] * n_restarts, lname, _runs_per_batch(runs_per_batch), adv, best_loss, fooled)
    return adv.detach()


def apgd_targeted(
    model: Model,
    images: Tensor,
    labels: Tensor,
    eps: EpsLike,
    *,
    norm: str = "Linf",
    n_iter: int = 100,
    n_restarts: int = 1,
    n_target_classes: int = 9,
    rho: float = 0.75,
    momentum: float = 0.75,
    generator: Optional[torch.Generator] = None,
    mask: Optional[Tensor] = None,
    runs_per_batch: int = RUNS_PER_BATCH,
) -> Tensor:
    """APGD-T: APGD on the targeted DLR loss, ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``.

    For each target rank r = 2 .. K + 1, with K = ``min(n_target_classes, n_classes - 1)``,
    the target of an image is the class with the r-th highest clean logit; each target gets
    ``n_restarts`` runs of ``n_iter`` iterations on the images still correctly classified.
    Threat model, input range and other defaults as :func:`apgd` (AutoAttack standard:
    9 targets, 1 restart, 100 iterations). With 3 classes the DLR denominator is
    ``z_pi1 - z_pi3``, with 2 the plain margin (the paper's needs 4 classes).
    ``runs_per_batch`` of the K * n_restarts runs go side by side in one batch; an image leaves
    them all once one misclassifies it, and the robust set is the same as one run after another.

    Example::

        >>> adv = apgd_targeted(model, images, labels, eps=4/255, n_target_classes=9)
    """
    x0, y, eps, norm, n_iter, n_restarts, mask = _prepare(images, labels, eps, norm, n_iter,
                                                          n_restarts, mask)
    adv = x0.clone()
    if eps == 0 or x0.shape[0] == 0:
        return adv
    with torch.no_grad():
        clean_logits = logits_of(model, x0)
    k = _n_targets(clean_logits.shape[1], n_target_classes)
    best_loss = torch.full((x0.shape[0],), float("-inf"), device=x0.device)
    fooled = (clean_logits.argmax(1) != y) & mask  # already misclassified: skipped
    targets = [target_by_rank(clean_logits, rank) for rank in range(2, k + 2) for _ in range(n_restarts)]
    _run_stacked(model, x0, y, eps, norm, n_iter, rho, momentum, mask, generator, targets, "dlr-t",
                 _runs_per_batch(runs_per_batch), adv, best_loss, fooled)
    return adv.detach()


class APGD(Attack):
    """APGD attack object (see :func:`apgd`). Defaults: norm "Linf", n_iter 100, loss "ce",
    n_restarts 1, rho 0.75, momentum 0.75.

    Example::

        >>> adv = APGD(model, eps=4/255)(images, labels, generator=torch.Generator().manual_seed(0))
    """

    name = "apgd-ce"

    def __init__(self, model: Model, eps: EpsLike, norm: str = "Linf", n_iter: int = 100,
                 loss: str = "ce", n_restarts: int = 1, rho: float = 0.75,
                 momentum: float = 0.75):
        super().__init__(model)
        self.eps, self.norm, self.n_iter, self.loss = eps_value(eps), canonical_norm(norm), n_iter, loss
        self.n_restarts, self.rho, self.momentum = n_restarts, rho, momentum
        self.name = f"apgd-{loss}"

    def forward(self, images, labels, generator=None):
        return apgd(self.model, images, labels, self.eps, norm=self.norm, n_iter=self.n_iter,
                    loss=self.loss, n_restarts=self.n_restarts, rho=self.rho,
                    momentum=self.momentum, generator=generator)

    def _settings(self):
        return dict(eps=self.eps, norm=self.norm, n_iter=self.n_iter, loss=self.loss,
                    n_restarts=self.n_restarts)


class APGDT(Attack):
    """APGD-T attack object (see :func:`apgd_targeted`). Defaults: norm "Linf", n_iter 100,
    n_restarts 1, n_target_classes 9 (capped at n_classes - 1).

    Example::

        >>> adv = APGDT(model, eps=4/255)(images, labels)
    """

    name = "apgd-t"

    def __init__(self, model: Model, eps: EpsLike, norm: str = "Linf", n_iter: int = 100,
                 n_restarts: int = 1, n_target_classes: int = 9, rho: float = 0.75,
                 momentum: float = 0.75):
        super().__init__(model)
        self.eps, self.norm, self.n_iter = eps_value(eps), canonical_norm(norm), n_iter
        self.n_restarts, self.n_target_classes = n_restarts, n_target_classes
        self.rho, self.momentum = rho, momentum

    def forward(self, images, labels, generator=None):
        return apgd_targeted(self.model, images, labels, self.eps, norm=self.norm,
                             n_iter=self.n_iter, n_restarts=self.n_restarts,
                             n_target_classes=self.n_target_classes, rho=self.rho,
                             momentum=self.momentum, generator=generator)

    def _settings(self):
        return dict(eps=self.eps, norm=self.norm, n_iter=self.n_iter, n_restarts=self.n_restarts,
                    n_target_classes=self.n_target_classes)
