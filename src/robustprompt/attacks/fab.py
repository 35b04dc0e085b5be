"""FAB-T: the targeted Fast Adaptive Boundary attack (Croce & Hein, ICML 2020).

FAB looks for the smallest perturbation that crosses the decision boundary. At the current point
``x`` it linearises the boundary between the true class y and the target t,
``f_t(x) - f_y(x) + grad(f_t - f_y)(x) . (z - x) = 0``, and projects both ``x`` and the
original image ``x_orig`` onto that hyperplane intersected with the box [0, 1]^d (exact
minimum-norm projections, L-inf or L2). The next point is a biased convex combination

    alpha = min(||d||_p / (||d||_p + ||d_orig||_p), alpha_max)
    x <- clip((1 - alpha)(x + eta d) + alpha (x_orig + eta d_orig), 0, 1)

with overshoot eta = 1.05 and alpha_max = 0.1. When ``x`` is misclassified it is recorded if its
distance to ``x_orig`` is the smallest so far and then pulled back,
``x <- x_orig + beta (x - x_orig)`` with beta = 0.9. In AutoAttack's FAB-T the targets are the
top ``min(9, n_classes - 1)`` classes (by clean logit, runner-up first), one run of 100 iterations
each starting at ``x_orig``; further restarts start at a random point of radius
``min(best, eps) / 2``. An image counts as broken when a point within eps is found.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ._core import (
    EpsLike,
    Model,
    lp_norm,
    logits_of,
    loss_and_grad,
    n_target_classes as _n_targets,
    normalize_l2,
    rand_normal,
    rand_uniform,
    target_by_rank,
)
from .auto_pgd import RUNS_PER_BATCH, _prepare, _runs_per_batch, runs_side_by_side
from .gradient import Attack


def _solve_saturating(a: Tensor, beta: Tensor, c: Tensor) -> Tensor:
    """Per row, the smallest tau >= 0 with ``sum_i a_i min(tau, beta_i) >= c``.

    a, beta >= 0 of shape (B, d); c >= 0 of shape (B,). If no tau reaches c (the box is too
    small) tau = max_i beta_i, i.e. every coordinate goes as far as it can.
    """
    bs, order = beta.sort(dim=1)
    as_ = a.gather(1, order)
    cum_a = as_.cumsum(dim=1)
    total = cum_a[:, -1:]
    prefix = (as_ * bs).cumsum(dim=1)  # sum_{j<=k} a_j beta_j
    g_at = prefix + bs * (total - cum_a)  # g(beta_k), nondecreasing in k
    k = (g_at < c[:, None]).sum(dim=1)  # first k with g(beta_k) >= c
    feasible = k < bs.shape[1]
    kc = k.clamp(max=bs.shape[1] - 1)
    km1 = (kc - 1).clamp(min=0)
    a_prev = torch.where(kc > 0, prefix.gather(1, km1[:, None]).squeeze(1), torch.zeros_like(c))
    w_rest = torch.where(kc > 0, (total.squeeze(1) - cum_a.gather(1, km1[:, None]).squeeze(1)),
                         total.squeeze(1))
    tau = (c - a_prev) / w_rest.clamp_min(1e-30)
    tau = torch.where(c <= 0, torch.zeros_like(tau), tau.clamp_min(0))
    return torch.where(feasible, tau, bs[:, -1])


def project_hyperplane_box(p: Tensor, w: Tensor, b: Tensor, norm: str) -> Tensor:
    """Minimum-norm ``delta`` with ``w . (p + delta) = b`` and ``p + delta`` in [0, 1]^d.

    p, w: (B, d); b: (B,). L-inf or L2 norm. Where the box does not reach the hyperplane the
    step that comes closest is returned.
    """
    c = b - (w * p).sum(dim=1)
    sgn = torch.sign(c)
    sgn = torch.where(sgn == 0, torch.ones_like(sgn), sgn)
    w = w * sgn[:, None]
    c = c.abs()
    room = torch.where(w > 0, 1.0 - p, p).clamp_min(0)  # how far each coordinate may move
    nz = w.abs() > 1e-12
    if norm == "Linf":
        a = torch.where(nz, w.abs(), torch.zeros_like(w))
        beta = torch.where(nz, room, torch.zeros_like(room))
        tau = _solve_saturating(a, beta, c)
        delta = torch.sign(w) * torch.minimum(tau[:, None], room)
    else:
        a = torch.where(nz, w * w, torch.zeros_like(w))
        beta = torch.where(nz, room / w.abs().clamp_min(1e-12), torch.zeros_like(room))
        tau = _solve_saturating(a, beta, c)
        delta = w * torch.minimum(tau[:, None], beta)
    return torch.where(nz, delta, torch.zeros_like(delta))


def _fab_single(
    model: Model,
    x0: Tensor,
    y: Tensor,
    target: Tensor,
    x_start: Tensor,
    eps: float,
    norm: str,
    n_iter: int,
    alpha_max: float,
    eta: float,
    beta: float,
    group: Tensor,
) -> Tuple[Tensor, Tensor]:
    """Targeted FAB on a batch of rows, each its own run; every row of an image (`group`) stops
    once one of them has found a point within eps. Returns (closest adversarial point found,
    its norm; inf if none).

    The forward pass that tells whether a new point is misclassified also gives the gradient
    at it, which is the next iteration's linearisation unless the point was pulled back: one
    forward-backward per iteration instead of a forward-backward plus a forward."""
    b = x0.shape[0]
    dev = x0.device
    shape = x0.shape
    x = x_start.clone()
    x_out = x0.clone()
    best = torch.full((b,), float("inf"), device=dev)
    group_done = torch.zeros(int(group.max()) + 1, dtype=torch.bool, device=dev)
    x0f = x0.reshape(b, -1)
    df_at_x, dg_at_x = torch.zeros(b, device=dev), torch.zeros_like(x)
    have_grad = torch.zeros(b, dtype=torch.bool, device=dev)

    def target_minus_true(rows):
        ya, ta = y[rows], target[rows]
        return lambda z: z.gather(1, ta[:, None]).squeeze(1) - z.gather(1, ya[:, None]).squeeze(1)

    for it in range(n_iter):
        act = (~group_done[group]).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        need = act[~have_grad[act]]
        if need.numel():
            _, df_at_x[need], dg_at_x[need] = loss_and_grad(model, x[need], target_minus_true(need))
        xa, df, w = x[act], df_at_x[act], dg_at_x[act].reshape(act.numel(), -1)
        xaf = xa.reshape(act.numel(), -1)
        bb = (w * xaf).sum(dim=1) - df
        d1 = project_hyperplane_box(xaf, w, bb, norm)
        d2 = project_hyperplane_box(x0f[act], w, bb, norm)
        n1 = lp_norm(d1, norm).clamp_min(1e-8)
        n2 = lp_norm(d2, norm).clamp_min(1e-8)
        alpha = (n1 / (n1 + n2)).clamp(0.0, alpha_max)[:, None]
        xn = ((1 - alpha) * (xaf + eta * d1) + alpha * (x0f[act] + eta * d2)).clamp(0.0, 1.0)
        xn = xn.reshape(-1, *shape[1:])
        if it == n_iter - 1:  # no next iteration to linearise for
            with torch.no_grad():
                logits = logits_of(model, xn)
        else:
            logits, df_at_x[act], dg_at_x[act] = loss_and_grad(model, xn, target_minus_true(act))
        is_adv = logits.argmax(1) != y[act]
        have_grad[act] = ~is_adv
        if is_adv.any():
            nrm = lp_norm(xn - x0[act], norm)
            better = is_adv & (nrm < best[act])
            ib = act[better]
            x_out[ib] = xn[better]
            best[ib] = nrm[better]
            group_done[group[ib[nrm[better] <= eps]]] = True
            xn = torch.where(is_adv.view(-1, 1, 1, 1), x0[act] + beta * (xn - x0[act]), xn)
        x[act] = xn
    return x_out, best


def fab_targeted(
    model: Model,
    images: Tensor,
    labels: Tensor,
    eps: EpsLike,
    *,
    norm: str = "Linf",
    n_iter: int = 100,
    n_restarts: int = 1,
    n_target_classes: int = 9,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    generator: Optional[torch.Generator] = None,
    mask: Optional[Tensor] = None,
    runs_per_batch: int = RUNS_PER_BATCH,
) -> Tensor:
    """FAB-T, targeted Fast Adaptive Boundary attack (see the module docstring).

    Threat model ``||x_adv - x||_p <= eps`` (p = inf or 2), ``x_adv`` in [0, 1]; images float
    (B, C, H, W) in [0, 1]; model returns logits. fp32, input gradients only, module mode kept.

    Defaults (AutoAttack standard): n_iter 100, n_restarts 1 (the first run starts at the clean
    image; more restarts start at random points drawn from ``generator``), n_target_classes 9
    (capped at n_classes - 1), alpha_max 0.1, eta 1.05, beta 0.9. ``mask`` restricts the attack
    to some images. With one restart, ``runs_per_batch`` targets run side by side in one batch
    (an image leaves them all once one finds a point within eps; the robust set is the same as
    one target after another); a restart's radius depends on the runs before it, so with more
    restarts the runs go one after another. Returns, per image, the closest misclassified point
    found if it lies within eps, else the clean image.

    Example::

        >>> adv = fab_targeted(model, images, labels, eps=4/255, n_target_classes=9)
    """
    x0, y, eps, norm, n_iter, n_restarts, mask = _prepare(images, labels, eps, norm, n_iter,
                                                          n_restarts, mask)
    adv = x0.clone()
    if eps == 0 or x0.shape[0] == 0:
        return adv
    with torch.no_grad():
        clean_logits = logits_of(model, x0)
    k = _n_targets(clean_logits.shape[1], n_target_classes)
    done = (clean_logits.argmax(1) != y) | ~mask
    best = torch.full((x0.shape[0],), float("inf"), device=x0.device)
    runs = [(target_by_rank(clean_logits, rank), r) for rank in range(2, k + 2) for r in range(n_restarts)]
    per_batch = _runs_per_batch(runs_per_batch) if n_restarts == 1 else 1
    c0 = 0
    while c0 < len(runs):
        idx = (~done).nonzero().squeeze(1)
        chunk = runs[c0:c0 + runs_side_by_side(per_batch, x0.shape[0], idx.numel())]
        c0 += len(chunk)
        starts = []
        for _, r in chunk:
            if r == 0:
                starts.append(x0)
            else:  # drawn for the whole batch: an image's start does not depend on the others
                if norm == "Linf":
                    t = 2 * rand_uniform(x0.shape, generator, x0.device) - 1
                    t = t / lp_norm(t, "Linf").clamp_min(1e-12).view(-1, 1, 1, 1)
                else:
                    t = normalize_l2(rand_normal(x0.shape, generator, x0.device))
                radius = torch.clamp(best, max=eps).view(-1, 1, 1, 1)
                starts.append((x0 + 0.5 * radius * t).clamp(0.0, 1.0))
        if idx.numel() == 0:
            continue
        m, n = len(chunk), idx.numel()
        img = idx.repeat(m)
        out, nrm = _fab_single(model, x0[img], y[img], torch.cat([t[idx] for t, _ in chunk]),
                               torch.cat([s[idx] for s in starts]), eps, norm, n_iter, alpha_max,
                               eta, beta, torch.arange(n, device=x0.device).repeat(m))
        nrm, closest = nrm.view(m, n).min(0)
        out = out.view(m, n, *x0.shape[1:])[closest, torch.arange(n, device=x0.device)]
        best[idx] = torch.minimum(best[idx], nrm)
        ok = nrm <= eps
        adv[idx[ok]] = out[ok]
        done[idx[ok]] = True
    return adv.detach()


class FABT(Attack):
    """FAB-T attack object (see :func:`fab_targeted`). Defaults: norm "Linf", n_iter 100,
    n_restarts 1, n_target_classes 9, alpha_max 0.1, eta 1.05, beta 0.9.

    Example::

        >>> adv = FABT(model, eps=4/255)(images, labels)
    """

    name = "fab-t"

    def __init__(self, model: Model, eps: EpsLike, norm: str = "Linf", n_iter: int = 100,
                 n_restarts: int = 1, n_target_classes: int = 9, alpha_max: float = 0.1,
                 eta: float = 1.05, beta: float = 0.9):
        super().__init__(model)
        from ._core import canonical_norm, eps_value

        self.eps, self.norm, self.n_iter = eps_value(eps), canonical_norm(norm), n_iter
        self.n_restarts, self.n_target_classes = n_restarts, n_target_classes
        self.alpha_max, self.eta, self.beta = alpha_max, eta, beta

    def forward(self, images, labels, generator=None):
        return fab_targeted(self.model, images, labels, self.eps, norm=self.norm,
                            n_iter=self.n_iter, n_restarts=self.n_restarts,
                            n_target_classes=self.n_target_classes, alpha_max=self.alpha_max,
                            eta=self.eta, beta=self.beta, generator=generator)

    def _settings(self):
        return dict(eps=self.eps, norm=self.norm, n_iter=self.n_iter, n_restarts=self.n_restarts,
                    n_target_classes=self.n_target_classes)
