"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): score-based black box.

Random search on the margin loss ``z_y - max_{j != y} z_j`` (minimised; the image is broken
once it is negative). Only logits are used, no gradients.

L-inf: start from vertical stripes ``x + eps * (+-1)`` (one sign per column and channel); at
iteration i pick a square of side ``s = round(sqrt(p_i * H * W))`` at a random place and set
it, per channel, to ``+-eps`` around the clean image (a sign pattern that changes the window);
keep the candidate when the loss decreases. L2: start from a grid of 5 x 5 "meta
pseudo-Gaussian" blocks scaled to norm eps; at each iteration move the perturbation mass of one
random window into another (the paper's Algorithm 3), keeping the total norm at eps.

The fraction ``p_i`` starts at ``p_init`` (0.8 in AutoAttack) and halves at iterations
10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of a 10 000-query run; with
``rescale_schedule=True`` these points scale with ``n_queries`` (the Square paper), with False
they are absolute (AutoAttack's setting). Each image costs one query for the start and one per
iteration until it is broken, at most ``n_queries`` in all.

Random draws (window places, signs) are made for the whole batch at every iteration, so an
image's trajectory does not depend on which other images are still being attacked. L-inf
evaluates an image's next proposals ahead in one batch when few images are left (see
``SPECULATIVE_ROWS``): the same proposals, decisions and generator state as one query at a time.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from robustprompt.errors import ConfigError

from ._core import (
    EpsLike,
    Model,
    canonical_norm,
    check_inputs,
    eps_value,
    logits_of,
    lp_norm,
    normalize_l2,
    rand_int,
    rand_sign,
    rand_uniform,
)
from .gradient import Attack

_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
             (6000, 128), (8000, 256))


def p_selection(p_init: float, it: int, n_queries: int, rescale: bool) -> float:
    """Fraction of pixels changed at iteration ``it`` (Square paper schedule)."""
    if rescale:
        it = int(it / max(n_queries, 1) * 10000)
    div = 512
    for bound, d in _SCHEDULE:
        if it <= bound:
            div = d
            break
    return p_init / div


def _margin_and_loss(model: Model, x: Tensor, y: Tensor, loss: str) -> Tuple[Tensor, Tensor]:
    with torch.no_grad():
        logits = logits_of(model, x)
    zy = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    margin = zy - other.amax(dim=1)
    if loss == "margin":
        return margin, margin
    return margin, -F.cross_entropy(logits, y, reduction="none")


def _window_mask(vh: Tensor, vw: Tensor, s, h: int, w: int) -> Tensor:
    """(B, 1, H, W) bool mask of the s x s windows whose top-left corners are (vh, vw); s is one
    size or one per window (B,)."""
    rows = torch.arange(h, device=vh.device)[None, :]
    cols = torch.arange(w, device=vh.device)[None, :]
    s = torch.as_tensor(s, device=vh.device).reshape(-1, 1)
    mh = (rows >= vh[:, None]) & (rows < vh[:, None] + s)
    mw = (cols >= vw[:, None]) & (cols < vw[:, None] + s)
    return (mh[:, None, :, None] & mw[:, None, None, :])


def _get_window(t: Tensor, vh: Tensor, vw: Tensor, s: int) -> Tensor:
    """(B, C, s, s) windows of t (B, C, H, W) at per-image corners."""
    b = torch.arange(t.shape[0], device=t.device)[:, None, None]
    r = (vh[:, None] + torch.arange(s, device=t.device))[:, :, None]
    c = (vw[:, None] + torch.arange(s, device=t.device))[:, None, :]
    return t.permute(0, 2, 3, 1)[b, r, c].permute(0, 3, 1, 2)


def _set_window(t: Tensor, vh: Tensor, vw: Tensor, s: int, val: Tensor) -> None:
    b = torch.arange(t.shape[0], device=t.device)[:, None, None]
    r = (vh[:, None] + torch.arange(s, device=t.device))[:, :, None]
    c = (vw[:, None] + torch.arange(s, device=t.device))[:, None, :]
    tp = t.permute(0, 2, 3, 1)
    tp[b, r, c] = val.permute(0, 2, 3, 1)


def _pseudo_gaussian_rect(h: int, w: int, device) -> Tensor:
    """Concentric rectangles around the centre, weight sum_{k>=d} 1/(k+1)^2 at Chebyshev
    distance d (the paper's meta pseudo-Gaussian), L2-normalised."""
    if h == 0 or w == 0:
        return torch.zeros(h, w, device=device)
    ch, cw = h // 2, w // 2  # centre (x_c - 1 with x_c = h // 2 + 1)
    n = max(ch + 1, cw + 1)
    r = torch.arange(h, device=device)[:, None]
    c = torch.arange(w, device=device)[None, :]
    d = torch.maximum((r - ch).abs(), (c - cw).abs())
    weights = 1.0 / (torch.arange(n, device=device, dtype=torch.float32) + 1) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[k] = sum_{j >= k} weights[j]
    out = tail[d.clamp(max=n - 1)]
    return out / out.norm().clamp_min(1e-12)


def _eta(s: int, device) -> Tensor:
    """The L2 update pattern: a positive pseudo-Gaussian over the top half of an s x s square,
    a negative one over the bottom half, L2-normalised."""
    top = _pseudo_gaussian_rect(s // 2, s, device)
    bottom = -_pseudo_gaussian_rect(s - s // 2, s, device)
    out = torch.cat([top, bottom], dim=0)
    return out / out.norm().clamp_min(1e-12)


# Square's queries for an image are sequential, but a proposal that is rejected leaves the image's
# best point as it was: with few images left, their next proposals are evaluated ahead in one batch
# of at most this many rows (and at most the batch's size; speculatively, as if all were rejected), and everything after an image's
# first accepted proposal is thrown away (it was built on the old best point).
SPECULATIVE_ROWS = 32


class _Draws:
    """The random draws of L-inf Square, iteration by iteration for the whole batch in the order
    the one-query-at-a-time loop makes them, drawn as far as they are needed.

    Speculation may draw iterations that the one-at-a-time loop never reaches (it stops at the
    first iteration with no image left); `settle(n)` leaves the generator exactly where that loop
    would have, so that a later restart draws what it would have drawn."""

    def __init__(self, b: int, c: int, h: int, w: int, sizes: Tensor, generator, device):
        self.b, self.c, self.h, self.w, self.sizes = b, c, h, w, sizes
        self.generator, self.device, self.count = generator, device, 0
        self.start_state = (generator.get_state() if generator is not None else torch.random.get_rng_state())
        n = sizes.numel()
        self.vh = torch.zeros(n, b, dtype=torch.long, device=device)
        self.vw, self.flips = torch.zeros_like(self.vh), torch.zeros_like(self.vh)
        self.sign = torch.zeros(n, b, c, device=device)

    def _draw(self, it: int):
        s, args = int(self.sizes[it]), (self.generator, self.device)
        return (rand_int(0, self.h - s, (self.b,), *args), rand_int(0, self.w - s, (self.b,), *args),
                rand_sign((self.b, self.c), *args),
                rand_int(1, 2 ** self.c - 1, (self.b,), *args))  # sign flips if the window would not move

    def upto(self, n: int) -> None:
        """Draw iterations count .. n - 1."""
        for it in range(self.count, n):
            self.vh[it], self.vw[it], self.sign[it], self.flips[it] = self._draw(it)
        self.count = max(self.count, n)

    def settle(self, n: int) -> None:
        """Leave the generator as after drawing exactly iterations 0 .. n - 1."""
        if self.count > n:
            if self.generator is not None:
                self.generator.set_state(self.start_state)
            else:
                torch.random.set_rng_state(self.start_state)
            for it in range(n):
                self._draw(it)
        else:
            self.upto(n)


def _start_from(model, init, x_best, y, loss, attack_mask):
    """Move the attacked images of x_best (in place) to their initial points; their margins, losses and
    which images need no more queries (not attacked, or already misclassified at the start)."""
    b, dev = init.shape[0], init.device
    att = attack_mask.nonzero().squeeze(1)
    margin = torch.full((b,), float("inf"), device=dev)
    lossv = torch.full((b,), float("inf"), device=dev)
    x_best[att] = init[att]
    if att.numel():
        margin[att], lossv[att] = _margin_and_loss(model, x_best[att], y[att], loss)
    return margin, lossv, ~attack_mask | (margin <= 0)


def _square_linf(model, x0, y, eps, n_queries, p_init, rescale, loss, generator, attack_mask):
    b, c, h, w = x0.shape
    dev = x0.device
    x_best = x0.clone()
    init = (x0 + eps * rand_sign((b, c, 1, w), generator, dev)).clamp(0.0, 1.0)
    margin, lossv, done = _start_from(model, init, x_best, y, loss, attack_mask)
    n_iters = n_queries - 1
    sizes = torch.tensor([min(max(int(round(math.sqrt(p_selection(p_init, it, n_queries, rescale) * h * w))), 1), h, w)
                          for it in range(n_iters)], dtype=torch.long, device=dev)
    draws = _Draws(b, c, h, w, sizes, generator, dev)
    nxt = torch.zeros(b, dtype=torch.long, device=dev)  # each image's next iteration
    last_needed = 0  # the one-at-a-time loop draws up to the iteration at which no image is left
    steps_recent, accepts_recent = 1.0, 1.0  # decaying counts of proposals decided and accepted
    while True:
        act = (~done & (nxt < n_iters)).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        # about one accepted proposal per image per batch: deeper speculation than the recent
        # acceptance rate mostly evaluates proposals built on a best point that has moved on
        k = max(1, min(min(SPECULATIVE_ROWS, b) // act.numel(), math.ceil(steps_recent / accepts_recent)))
        its = nxt[act][:, None] + torch.arange(k, device=dev)[None, :]  # (n_act, k)
        valid = its < n_iters
        draws.upto(int(its[valid].max()) + 1)
        cell_img = act[:, None].expand_as(its)[valid]
        cell_it = its[valid]
        win = _window_mask(draws.vh[cell_it, cell_img], draws.vw[cell_it, cell_img], sizes[cell_it], h, w)
        xa, xb = x0[cell_img], x_best[cell_img]

        def candidate(signs):
            delta = 2 * eps * signs[:, :, None, None] * win
            return torch.minimum(torch.maximum(xb + delta, xa - eps), xa + eps).clamp(0.0, 1.0)

        sg = draws.sign[cell_it, cell_img]
        x_new = candidate(sg)
        same = ((x_new - xb).abs() < 1e-7).reshape(x_new.shape[0], -1).all(dim=1)
        if same.any():
            bits = (draws.flips[cell_it, cell_img][:, None] >> torch.arange(c, device=dev)[None, :]) & 1
            x_new = torch.where(same.view(-1, 1, 1, 1), candidate(torch.where(bits.bool(), -sg, sg)), x_new)
        m_new, l_new = _margin_and_loss(model, x_new, y[cell_img], loss)
        improved = l_new < lossv[cell_img]
        accepted = torch.zeros_like(its, dtype=torch.bool)
        accepted[valid] = improved | (m_new <= 0)
        first = accepted.int().argmax(1)
        hit = accepted.any(1)
        # the accepted cell of each image that has one: its row among the valid cells
        cell_index = torch.full_like(its, -1)
        cell_index[valid] = torch.arange(int(valid.sum()), device=dev)
        r = cell_index[torch.arange(act.numel(), device=dev), first][hit]
        ih = act[hit]
        upd_loss = improved[r]
        lossv[ih[upd_loss]] = l_new[r[upd_loss]]
        margin[ih], x_best[ih] = m_new[r], x_new[r]
        done[ih[m_new[r] <= 0]] = True
        finished_at = its[hit, first[hit]]
        if bool((m_new[r] <= 0).any()):
            last_needed = max(last_needed, int(finished_at[m_new[r] <= 0].max()) + 1)
        advance = torch.where(hit, first + 1, torch.full_like(first, k))
        nxt[act] += advance
        steps_recent = 0.8 * steps_recent + float(advance.sum())
        accepts_recent = 0.8 * accepts_recent + float(hit.sum())
    if bool((~done).any()):
        last_needed = n_iters - 1  # an image attacked to the end: every iteration was drawn
    draws.settle(min(last_needed, n_iters - 1) + 1)
    return x_best


def _square_l2(model, x0, y, eps, n_queries, p_init, rescale, loss, generator, attack_mask):
    b, c, h, w = x0.shape
    dev = x0.device
    # start: a grid of 5 x 5 blocks with pseudo-Gaussian patterns of random sign per channel
    s0 = max(min(h, w) // 5, 1)
    nb_h, nb_w = min(5, h // s0), min(5, w // s0)
    sp_h, sp_w = (h - s0 * nb_h) // 2, (w - s0 * nb_w) // 2
    delta0 = torch.zeros_like(x0)
    eta0 = _eta(s0, dev)
    for i in range(nb_h):
        for j in range(nb_w):
            sg = rand_sign((b, c, 1, 1), generator, dev)
            r0, c0 = sp_h + i * s0, sp_w + j * s0
            delta0[:, :, r0:r0 + s0, c0:c0 + s0] += eta0[None, None] * sg
    init = (x0 + normalize_l2(delta0) * eps).clamp(0.0, 1.0)
    x_best = x0.clone()
    margin, lossv, done = _start_from(model, init, x_best, y, loss, attack_mask)
    n_features = c * h * w
    for it in range(n_queries - 1):
        p = p_selection(p_init, it, n_queries, rescale)
        s = max(int(round(math.sqrt(p * n_features / c))), 3)
        if s % 2 == 0:
            s += 1
        s = min(s, h, w)
        vh = rand_int(0, h - s, (b,), generator, dev)
        vw = rand_int(0, w - s, (b,), generator, dev)
        vh2 = rand_int(0, h - s, (b,), generator, dev)
        vw2 = rand_int(0, w - s, (b,), generator, dev)
        sg = rand_sign((b, c, 1, 1), generator, dev)
        transpose = rand_uniform((b,), generator, dev) < 0.5
        act = (~done).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        xa, xb = x0[act], x_best[act]
        delta = xb - xa
        va, wa, va2, wa2 = vh[act], vw[act], vh2[act], vw2[act]
        m1 = _window_mask(va, wa, s, h, w)
        m2 = _window_mask(va2, wa2, s, h, w)
        win1 = _get_window(delta, va, wa, s)  # (B, C, s, s)
        norm_win1 = win1.pow(2).sum(dim=(2, 3), keepdim=True).sqrt()
        norm_img = lp_norm(delta, "L2").view(-1, 1, 1, 1)
        norm_windows = (delta * (m1 | m2)).pow(2).sum(dim=(2, 3), keepdim=True).sqrt()
        eta = _eta(s, dev)
        eta_b = torch.where(transpose[act].view(-1, 1, 1), eta.t()[None], eta[None])[:, None]
        new = eta_b * sg[act] + win1 / (1e-12 + norm_win1)
        budget = (torch.clamp(eps ** 2 - norm_img ** 2, min=0) / c + norm_windows ** 2).sqrt()
        new = new / new.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12) * budget
        delta = delta * (~m2)
        _set_window(delta, va, wa, s, new)
        x_new = (xa + normalize_l2(delta) * eps).clamp(0.0, 1.0)
        m_new, l_new = _margin_and_loss(model, x_new, y[act], loss)
        improved = l_new < lossv[act]
        upd = improved | (m_new <= 0)
        lossv[act[improved]] = l_new[improved]
        margin[act[upd]] = m_new[upd]
        x_best[act[upd]] = x_new[upd]
        done[act[upd & (m_new <= 0)]] = True
    return x_best


def square(
    model: Model,
    images: Tensor,
    labels: Tensor,
    eps: EpsLike,
    *,
    norm: str = "Linf",
    n_queries: int = 5000,
    p_init: float = 0.8,
    n_restarts: int = 1,
    loss: str = "margin",
    rescale_schedule: bool = True,
    generator: Optional[torch.Generator] = None,
    mask: Optional[Tensor] = None,
) -> Tensor:
    """Square Attack, untargeted, score-based (see the module docstring).

    Threat model ``||x_adv - x||_p <= eps`` (p = inf or 2), ``x_adv`` in [0, 1]; images float
    (B, C, H, W) in [0, 1]; only the model's logits are used (no gradients), in fp32.

    Defaults: n_queries 5000 (per image, the start included), p_init 0.8, 1 restart,
    loss "margin" ("ce" minimises -CE instead), rescale_schedule True (AutoAttack uses False),
    random draws from ``generator``. ``mask`` restricts the attack to some images; images
    misclassified when clean are skipped. Returns the best point found per image (a
    misclassified one where the attack succeeded).

    Example::

        >>> adv = square(model, images, labels, eps=4/255, n_queries=1000,
        ...              generator=torch.Generator().manual_seed(0))
    """
    norm = canonical_norm(norm)
    eps = eps_value(eps)
    if int(n_queries) < 1:
        raise ConfigError(f"n_queries must be >= 1, got {n_queries}")
    if loss not in ("margin", "ce"):
        raise ConfigError(f"Square loss must be 'margin' or 'ce', got {loss!r}")
    x0, y = check_inputs(images, labels)
    adv = x0.clone()
    if eps == 0 or x0.shape[0] == 0:
        return adv
    if mask is None:
        mask = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    else:
        mask = torch.as_tensor(mask, device=x0.device).bool().reshape(-1)
    with torch.no_grad():
        fooled = logits_of(model, x0).argmax(1) != y
    run = _square_linf if norm == "Linf" else _square_l2
    n_restarts = int(n_restarts)
    for r in range(n_restarts):
        todo = mask & ~fooled
        if not todo.any():
            break
        out = run(model, x0, y, eps, int(n_queries), p_init, rescale_schedule, loss, generator,
                  todo)
        idx = todo.nonzero().squeeze(1)
        with torch.no_grad():
            mis = logits_of(model, out[idx]).argmax(1) != y[idx]
        # broken images keep their adversarial point; the others that of the last restart
        take = mis | (r == n_restarts - 1)
        adv[idx[take]] = out[idx[take]]
        fooled[idx[mis]] = True
    return adv.detach()


class Square(Attack):
    """Square attack object (see :func:`square`). Defaults: norm "Linf", n_queries 5000,
    p_init 0.8, n_restarts 1, loss "margin", rescale_schedule True.

    Example::

        >>> adv = Square(model, eps=4/255, n_queries=1000)(images, labels)
    """

    name = "square"

    def __init__(self, model: Model, eps: EpsLike, norm: str = "Linf", n_queries: int = 5000,
                 p_init: float = 0.8, n_restarts: int = 1, loss: str = "margin",
                 rescale_schedule: bool = True):
        super().__init__(model)
        self.eps, self.norm, self.n_queries = eps_value(eps), canonical_norm(norm), n_queries
        self.p_init, self.n_restarts, self.loss = p_init, n_restarts, loss
        self.rescale_schedule = rescale_schedule

    def forward(self, images, labels, generator=None):
        return square(self.model, images, labels, self.eps, norm=self.norm,
                      n_queries=self.n_queries, p_init=self.p_init, n_restarts=self.n_restarts,
                      loss=self.loss, rescale_schedule=self.rescale_schedule,
                      generator=generator)

    def _settings(self):
        return dict(eps=self.eps, norm=self.norm, n_queries=self.n_queries, p_init=self.p_init,
                    n_restarts=self.n_restarts)
