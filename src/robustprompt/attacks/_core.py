"""Shared pieces of the attack library: eps parsing, norms, projections, losses, model calls.

Every attack sees the model as a classifier ``model(images) -> logits`` of float images
(B, 3, H, W) in [0, 1]. Attacks run in fp32 (autocast is switched off around the model call),
take gradients with ``torch.autograd.grad`` with respect to the input only (nothing accumulates
in ``param.grad``) and never change the module's train/eval mode: the caller decides.

Randomness comes from an explicit ``torch.Generator`` (the global CPU RNG when none is given).
Random tensors are drawn on the generator's device for the *whole* batch and then moved and
indexed, so an image gets the same random draws whichever other images share its batch or are
still being attacked; this makes a sequential ensemble (AutoAttack) agree image by image with its
components run alone.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from robustprompt.errors import ConfigError

Model = Callable[[Tensor], Tensor]
EpsLike = Union[float, int, str]

NORMS = ("Linf", "L2")
_NORM_ALIASES = {
    "linf": "Linf", "l_inf": "Linf", "inf": "Linf", "l-inf": "Linf", "infinity": "Linf",
    "l2": "L2", "2": "L2", "l_2": "L2", "l-2": "L2",
}

_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
_FRACTION_RE = re.compile(rf"^({_NUMBER})/({_NUMBER})$")
_NUMBER_RE = re.compile(rf"^{_NUMBER}$")


# --------------------------------------------------------------------------------------------
# eps and norms


def parse_eps(eps: EpsLike) -> Tuple[str, float]:
    """Parse an attack radius into ``(canonical string, float)``.

    Accepts ``"4/255"``, ``"0.0157"``, ``"0"``, ``"1e-3"`` or a number. Fractions keep their
    form ("4 / 255" -> "4/255"); decimals keep their digits; a float input is written as
    ``k/255`` when it is one (``4/255`` -> "4/255"), otherwise with ``repr``. Round-trips:
    ``parse_eps(parse_eps(s)[0]) == parse_eps(s)``.

    >>> parse_eps("4/255")
    ('4/255', 0.01568627450980392)
    >>> parse_eps("0")
    ('0', 0.0)
    """
    if isinstance(eps, bool):
        raise ConfigError(f"eps must be a number or a string like '4/255', got {eps!r}")
    if isinstance(eps, (int, float)):
        value = float(eps)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"eps must be a finite number >= 0, got {eps!r}")
        return format_eps(value), value
    if not isinstance(eps, str):
        raise ConfigError(f"eps must be a number or a string like '4/255', got {eps!r}")
    text = "".join(eps.split())
    m = _FRACTION_RE.match(text)
    if m:
        num, den = float(m.group(1)), float(m.group(2))
        if den == 0:
            raise ConfigError(f"eps {eps!r} divides by zero")
        value = num / den
        canonical = f"{m.group(1)}/{m.group(2)}"
    elif _NUMBER_RE.match(text):
        value = float(text)
        canonical = text
    else:
        raise ConfigError(
            f"cannot read eps {eps!r}: write a number >= 0 or a fraction such as '4/255'"
        )
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"eps must be a finite number >= 0, got {eps!r}")
    return canonical, value


def format_eps(value: float) -> str:
    """Write a float radius as a string: ``k/255`` when it is one below 1, else ``repr(value)``."""
    value = float(value)
    if value == 0:
        return "0"
    k = value * 255
    if value < 1 and abs(k - round(k)) < 1e-9 * max(1.0, abs(k)) and round(k) != 0:
        return f"{int(round(k))}/255"
    return repr(value)


def eps_value(eps: EpsLike) -> float:
    """The float of a radius given as a number or a string (see :func:`parse_eps`)."""
    return parse_eps(eps)[1]


def canonical_norm(norm: str) -> str:
    """'Linf' or 'L2' from common spellings ('linf', 'inf', 'l2', ...)."""
    if norm in NORMS:
        return norm
    key = str(norm).strip().lower()
    if key in _NORM_ALIASES:
        return _NORM_ALIASES[key]
    raise ConfigError(f"unknown norm {norm!r}: use 'Linf' or 'L2'")


def lp_norm(x: Tensor, norm: str) -> Tensor:
    """Per-sample norm of a batch (B, ...) -> (B,)."""
    flat = x.reshape(x.shape[0], -1)
    if norm == "Linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(x.shape[0])
    return flat.norm(p=2, dim=1)


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def normalize_l2(g: Tensor) -> Tensor:
    """g / max(||g||_2, 1e-12) per sample."""
    n = lp_norm(g, "L2").clamp_min(1e-12)
    return g / _view(n, g)


def project(x: Tensor, x0: Tensor, eps: float, norm: str, box: bool = True) -> Tensor:
    """Project x onto {z : ||z - x0|| <= eps} and then (if `box`) onto the box [0, 1].

    For L-inf the two projections commute; for L2 clipping to the box after the ball projection
    only shrinks every coordinate of the perturbation, so the result stays in both sets.
    """
    delta = x - x0
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = lp_norm(delta, "L2").clamp_min(1e-12)
        factor = torch.clamp(eps / n, max=1.0)
        delta = delta * _view(factor, delta)
    return (x0 + delta).clamp(0.0, 1.0) if box else x0 + delta


# --------------------------------------------------------------------------------------------
# randomness


def _gen_device(generator: Optional[torch.Generator]) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def rand_uniform(shape, generator: Optional[torch.Generator], device) -> Tensor:
    """U[0, 1) drawn on the generator's device (CPU global RNG if None), moved to ``device``."""
    t = torch.rand(shape, generator=generator, device=_gen_device(generator), dtype=torch.float32)
    return t.to(device)


def rand_normal(shape, generator: Optional[torch.Generator], device) -> Tensor:
    t = torch.randn(shape, generator=generator, device=_gen_device(generator), dtype=torch.float32)
    return t.to(device)


def rand_sign(shape, generator: Optional[torch.Generator], device) -> Tensor:
    """+-1 with equal probability."""
    return torch.where(rand_uniform(shape, generator, device) < 0.5, -1.0, 1.0)


def rand_int(low: int, high_inclusive: int, shape, generator, device) -> Tensor:
    """Uniform integers in [low, high_inclusive]."""
    u = rand_uniform(shape, generator, device)
    n = high_inclusive - low + 1
    return (low + torch.clamp((u * n).long(), max=n - 1)).long()


def random_start(x0: Tensor, eps: float, norm: str, generator, *, mode: str = "uniform") -> Tensor:
    """A random point of the eps ball around x0, clipped to [0, 1].

    mode "uniform": uniform in the ball (L-inf: each pixel U[-eps, eps]; L2: Gaussian direction
    with radius eps * U^(1/d)). mode "boundary": on the ball's surface, as APGD starts
    (L-inf: eps * t / ||t||_inf with t ~ U[-1, 1]^d; L2: eps * g / ||g||_2).
    """
    shape = x0.shape
    if norm == "Linf":
        t = 2 * rand_uniform(shape, generator, x0.device) - 1
        if mode == "boundary":
            t = t / _view(lp_norm(t, "Linf").clamp_min(1e-12), t)
        delta = eps * t
    else:
        g = rand_normal(shape, generator, x0.device)
        g = normalize_l2(g)
        if mode == "boundary":
            r = torch.ones(shape[0], device=x0.device)
        else:
            d = g[0].numel()
            r = rand_uniform((shape[0],), generator, x0.device) ** (1.0 / d)
        delta = eps * g * _view(r, g)
    return (x0 + delta).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# model calls


def _no_autocast(device: torch.device):
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # a device type without autocast support
        return contextlib.nullcontext()


def check_inputs(images: Tensor, labels: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """Validate and return (fp32 detached images, long labels)."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(
            f"images must be a float tensor (B, C, H, W), got {type(images).__name__}"
            + (f" of shape {tuple(images.shape)}" if isinstance(images, Tensor) else "")
        )
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
    x = images.detach().float()
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"images must lie in [0, 1] (CLIP normalisation happens inside the model), "
                f"got values in [{lo:.4g}, {hi:.4g}]"
            )
        x = x.clamp(0.0, 1.0)
    y = None
    if labels is not None:
        y = torch.as_tensor(labels, device=x.device).long().reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "attacks need autograd: call them outside torch.inference_mode() "
            "(torch.no_grad() is fine, the attack re-enables gradients)"
        )
    return x, y


def logits_of(model: Model, x: Tensor) -> Tensor:
    """Call the model in fp32 with autocast off; check and return (B, n_classes) float logits."""
    with _no_autocast(x.device):
        out = model(x.float())
    if not isinstance(out, Tensor):
        raise TypeError(f"the model must return a logits tensor, got {type(out).__name__}")
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"the model must return logits (B, n_classes), got shape {tuple(out.shape)}")
    return out.float()


@torch.no_grad()
def predict(model: Model, x: Tensor) -> Tensor:
    """Predicted labels (argmax of logits), no gradients."""
    return logits_of(model, x).argmax(dim=1)


def loss_and_grad(
    model: Model, x: Tensor, loss_fn: Callable[[Tensor], Tensor]
) -> Tuple[Tensor, Tensor, Tensor]:
    """(logits, per-sample loss, d sum(loss) / d x), all detached.

    Only the input receives a gradient (``torch.autograd.grad``), so model parameters keep
    whatever ``.grad`` they had.
    """
    xv = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = logits_of(model, xv)
        losses = loss_fn(logits)
        (g,) = torch.autograd.grad(losses.sum(), [xv], allow_unused=True)
    if g is None:
        g = torch.zeros_like(xv)
    return logits.detach(), losses.detach(), g.detach()


# --------------------------------------------------------------------------------------------
# losses (per sample, to be maximised by the attacker)


def ce_loss(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def _other_max(logits: Tensor, y: Tensor) -> Tensor:
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.amax(dim=1)


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """CW-style logit margin max_{j != y} z_j - z_y (positive once misclassified)."""
    return _other_max(logits, y) - logits.gather(1, y[:, None]).squeeze(1)


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020), untargeted:

    DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), z sorted decreasingly.
    With fewer than 3 classes the denominator is not defined and the plain margin is used.
    """
    num = _other_max(logits, y) - logits.gather(1, y[:, None]).squeeze(1)
    if logits.shape[1] < 3:
        return num
    s = logits.sort(dim=1, descending=True).values
    return num / (s[:, 0] - s[:, 2] + 1e-12)


def dlr_targeted_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR (Croce & Hein 2020): -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2).

    The paper's denominator needs 4 classes. With 3 classes z_pi1 - z_pi3 is used (still shift-
    and scale-invariant); with 2 classes the unnormalised margin z_t - z_y.
    """
    num = logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)
    c = logits.shape[1]
    if c < 3:
        return num
    s = logits.sort(dim=1, descending=True).values
    if c == 3:
        den = s[:, 0] - s[:, 2]
    else:
        den = s[:, 0] - 0.5 * (s[:, 2] + s[:, 3])
    return num / (den + 1e-12)


LOSSES = {"ce": ce_loss, "margin": margin_loss, "cw": margin_loss, "dlr": dlr_loss}


def get_loss(name) -> Callable[[Tensor, Tensor], Tensor]:
    """A loss by name, or a callable `(logits, labels) -> per-sample loss` passed through (TRADES' KL)."""
    if callable(name):
        return name
    try:
        return LOSSES[name.lower()]
    except (KeyError, AttributeError):
        raise ConfigError(f"unknown attack loss {name!r}: use one of {sorted(LOSSES)}") from None


def n_target_classes(n_classes: int, requested: int = 9) -> int:
    """Targets used by the targeted attacks: min(requested, n_classes - 1) (AutoAttack, 9)."""
    return max(0, min(int(requested), int(n_classes) - 1))


def target_by_rank(clean_logits: Tensor, rank: int) -> Tensor:
    """The class with the ``rank``-th highest clean logit (rank 2 = runner-up), per image."""
    return clean_logits.argsort(dim=1, descending=True)[:, rank - 1]
