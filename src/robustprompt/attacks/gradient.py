"""FGSM and PGD (Madry et al. 2018), L-inf and L2, cross-entropy or CW-style margin loss."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from robustprompt.errors import ConfigError

from ._core import (
    EpsLike,
    Model,
    canonical_norm,
    check_inputs,
    eps_value,
    get_loss,
    logits_of,
    loss_and_grad,
    normalize_l2,
    project,
    random_start as _random_start,
)

KEEP_MODES = ("last", "worst")


def default_alpha(eps: float, steps: int) -> float:
    """Step size used when none is given: 2.5 * eps / steps (Madry et al. 2018)."""
    return 2.5 * eps / max(int(steps), 1)


def pgd(
    model: Model,
    images: Tensor,
    labels: Tensor,
    eps: EpsLike,
    *,
    alpha: Optional[float] = None,
    steps: int = 10,
    norm: str = "Linf",
    random_start: bool = True,
    loss: str = "ce",
    keep: str = "last",
    generator: Optional[torch.Generator] = None,
    start: Optional[Tensor] = None,
    box: str = "each-step",
) -> Tensor:
    """Projected gradient descent (ascent on the loss), untargeted.

    Threat model: ``||x_adv - x||_p <= eps`` with p = inf ("Linf") or 2 ("L2"), and
    ``x_adv`` in [0, 1]. Images are float (B, C, H, W) in [0, 1]; the model maps them to logits
    (normalisation inside the model). Runs in fp32; gradients are taken w.r.t. the input only;
    the model's train/eval mode is left as the caller set it.

    Each step: L-inf ``x <- P(x + alpha * sign(g))``; L2 ``x <- P(x + alpha * g / ||g||_2)``,
    where ``P`` projects onto the eps ball and [0, 1], and ``g`` the gradient of the summed
    per-sample loss.

    Arguments (defaults):
        eps: radius, a float or a string such as "4/255" (see :func:`parse_eps`).
        alpha: step size (None: ``2.5 * eps / steps``).
        steps: iterations (10). ``steps=0`` returns the start point.
        norm: "Linf" or "L2" ("Linf").
        random_start: start from a uniform random point of the eps ball (True).
        loss: "ce" (cross-entropy) or "margin" (CW-style ``max_{j!=y} z_j - z_y``) ("ce"), or a
            callable ``(logits, labels) -> per-sample loss`` (e.g. TRADES' KL to the clean output).
        keep: "last" returns the final iterate (Madry / torchattacks; for training);
            "worst" returns, per image, an iterate that was misclassified if any was
            (otherwise the final one) -- use this for evaluation: with a fixed seed and step
            size, robust accuracy can then not rise with more steps.
        generator: ``torch.Generator`` for the random start (global RNG if None).
        start: the start point (B, C, H, W), projected onto the ball; overrides ``random_start``.
        box: "each-step" projects every iterate onto [0, 1] as well as the ball ("each-step");
            "end" projects iterates onto the ball only and clips the returned images to [0, 1]
            (the training attack of NAP-Tuning's code; the gradient is then also taken at points
            outside the image range).

    Returns the adversarial images (B, C, H, W), fp32, detached.

    Example::

        >>> from robustprompt.attacks import pgd
        >>> adv = pgd(model, images, labels, eps=4/255, alpha=1/255, steps=10)
        >>> robust_acc = (model(adv).argmax(1) == labels).float().mean()
    """
    norm = canonical_norm(norm)
    eps = eps_value(eps)
    if keep not in KEEP_MODES:
        raise ConfigError(f"keep must be one of {KEEP_MODES}, got {keep!r}")
    if box not in ("each-step", "end"):
        raise ConfigError(f"box must be 'each-step' or 'end', got {box!r}")
    if box == "end" and keep == "worst":
        raise ConfigError("box 'end' (a training attack) keeps the last iterate: use keep='last'")
    if int(steps) < 0:
        raise ConfigError(f"steps must be >= 0, got {steps}")
    steps = int(steps)
    alpha = default_alpha(eps, steps) if alpha is None else float(alpha)
    if alpha < 0:
        raise ConfigError(f"alpha must be >= 0, got {alpha}")
    loss_name = loss
    loss_fn = get_loss(loss_name)
    x0, y = check_inputs(images, labels)
    if eps == 0 or x0.shape[0] == 0:
        return x0.clone()

    if start is not None:
        x = project(start.to(x0.device, x0.dtype), x0, eps, norm)
    else:
        x = _random_start(x0, eps, norm, generator) if random_start else x0.clone()

    track = keep == "worst"
    if track:
        best = x.clone()
        fooled = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)

    def _update(xc: Tensor, logits: Tensor) -> None:
        mis = logits.argmax(dim=1) != y
        if mis.any():
            best[mis] = xc[mis]
            fooled.logical_or_(mis)

    for _ in range(steps):
        logits, _, g = loss_and_grad(model, x, lambda z: loss_fn(z, y))
        if track:
            _update(x, logits)
        if norm == "Linf":
            x = x + alpha * g.sign()
        else:
            x = x + alpha * normalize_l2(g)
        x = project(x, x0, eps, norm, box=box == "each-step")

    if box == "end":
        x = x.clamp(0.0, 1.0)
    if track:
        with torch.no_grad():
            _update(x, logits_of(model, x))
        x = torch.where(fooled.view(-1, 1, 1, 1), best, x)
    return x.detach()


def fgsm(
    model: Model,
    images: Tensor,
    labels: Tensor,
    eps: EpsLike,
    *,
    norm: str = "Linf",
    loss: str = "ce",
) -> Tensor:
    """Fast Gradient Sign Method (Goodfellow et al. 2015): one step of size eps, no random start.

    Threat model ``||x_adv - x||_p <= eps``, x_adv in [0, 1]; L-inf uses the gradient's sign
    (FGSM), L2 the L2-normalised gradient (FGM). Images float (B, C, H, W) in [0, 1].

    Example::

        >>> adv = fgsm(model, images, labels, eps="1/255")
    """
    e = eps_value(eps)
    return pgd(model, images, labels, e, alpha=e, steps=1, norm=norm, random_start=False,
               loss=loss, keep="last")


class Attack:
    """Base of the attack objects (torchattacks style): configure once, call on batches.

    ``attack(images, labels, generator=None) -> adversarial images``.
    """

    name = "attack"

    def __init__(self, model: Model):
        self.model = model

    def __call__(self, images: Tensor, labels: Tensor,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        return self.forward(images, labels, generator=generator)

    def forward(self, images, labels, generator=None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _settings(self) -> dict:
        return {}

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({items})"


class PGD(Attack):
    """PGD attack object. Threat model, input range and step rule as :func:`pgd`.

    Defaults: eps required, alpha = 2.5 * eps / steps, steps = 10, norm "Linf",
    random_start True, loss "ce", keep "last".

    Example::

        >>> atk = PGD(model, eps="4/255", alpha=1/255, steps=10)
        >>> adv = atk(images, labels, generator=torch.Generator().manual_seed(0))
    """

    name = "pgd"

    def __init__(self, model: Model, eps: EpsLike, alpha: Optional[float] = None, steps: int = 10,
                 norm: str = "Linf", random_start: bool = True, loss: str = "ce",
                 keep: str = "last"):
        super().__init__(model)
        self.eps = eps_value(eps)
        self.alpha = alpha
        self.steps = int(steps)
        self.norm = canonical_norm(norm)
        self.random_start = bool(random_start)
        self.loss = loss
        get_loss(loss)
        if keep not in KEEP_MODES:
            raise ConfigError(f"keep must be one of {KEEP_MODES}, got {keep!r}")
        self.keep = keep

    def forward(self, images, labels, generator=None):
        return pgd(self.model, images, labels, self.eps, alpha=self.alpha, steps=self.steps,
                   norm=self.norm, random_start=self.random_start, loss=self.loss,
                   keep=self.keep, generator=generator)

    def _settings(self):
        return dict(eps=self.eps, alpha=self.alpha, steps=self.steps, norm=self.norm,
                    random_start=self.random_start, loss=self.loss, keep=self.keep)


class FGSM(Attack):
    """FGSM attack object (see :func:`fgsm`). Defaults: norm "Linf", loss "ce".

    Example::

        >>> adv = FGSM(model, eps=1/255)(images, labels)
    """

    name = "fgsm"

    def __init__(self, model: Model, eps: EpsLike, norm: str = "Linf", loss: str = "ce"):
        super().__init__(model)
        self.eps = eps_value(eps)
        self.norm = canonical_norm(norm)
        self.loss = loss
        get_loss(loss)

    def forward(self, images, labels, generator=None):
        return fgsm(self.model, images, labels, self.eps, norm=self.norm, loss=self.loss)

    def _settings(self):
        return dict(eps=self.eps, norm=self.norm, loss=self.loss)
