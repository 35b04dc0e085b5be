"""Attacks and weak noise for any classifier ``model(images) -> logits`` of [0, 1] images.

Adversarial: :func:`fgsm`, :func:`pgd` (L-inf / L2, CE or CW-style margin), :func:`apgd`,
:func:`apgd_targeted`, :func:`fab_targeted`, :func:`square` and :func:`autoattack` (standard:
APGD-CE, APGD-T, FAB-T, Square, per-image worst case), with torchattacks-style objects
(:class:`PGD`, :class:`AutoAttack`, ...) and :func:`make_attack` by name. :func:`sanity_checks`
flags an unreliable evaluation. Weak noise (ANPrompt's setting) lives in
:mod:`robustprompt.attacks.noise`.

Conventions: images float (B, C, H, W) in [0, 1] (normalisation inside the model); eps a float
or a string such as "4/255" (:func:`parse_eps`); attacks run in fp32, differentiate w.r.t. the
input only (``param.grad`` untouched) and leave the module's train/eval mode alone; randomness
from a ``torch.Generator``. Class text features are the caller's to cache: an attack only calls
``model(images)``.
"""

from typing import Any

from robustprompt.errors import ConfigError

from ._core import (
    NORMS,
    canonical_norm,
    dlr_loss,
    dlr_targeted_loss,
    eps_value,
    format_eps,
    lp_norm,
    margin_loss,
    n_target_classes,
    parse_eps,
    project,
)
from .auto_pgd import APGD, APGDT, apgd, apgd_checkpoints, apgd_targeted
from .auto_attack import (
    IMPLEMENTATION,
    STANDARD_ATTACKS,
    AutoAttack,
    AutoAttackResult,
    StageCheckpoint,
    autoattack,
    backend_implementation,
)
from .checks import sanity_checks, square_check
from .fab import FABT, fab_targeted, project_hyperplane_box
from .noise import (
    ALT_TEMPLATES,
    DEFAULT_IMAGE_NOISES,
    DEFAULT_TEXT_NOISES,
    ImageNoise,
    TextNoise,
    apply_image_noise,
    apply_text_noise,
    parse_noise,
    parse_noise_list,
    typo,
)
from .gradient import FGSM, PGD, Attack, default_alpha, fgsm, pgd
from .square_attack import Square, square

ATTACKS = {
    "fgsm": FGSM,
    "pgd": PGD,
    "apgd-ce": APGD,
    "apgd-t": APGDT,
    "fab-t": FABT,
    "square": Square,
    "autoattack": AutoAttack,
}


def make_attack(name: str, model: Any, eps: Any, **kwargs: Any) -> Attack:
    """An attack object by name: fgsm, pgd, pgd-margin (PGD on the CW margin), apgd-ce,
    apgd-t, fab-t, square, autoattack. ``kwargs`` go to the class.

    >>> atk = make_attack("pgd", model, "1/255", steps=10, alpha=0.25/255)
    """
    key = str(name).lower()
    if key in ("pgd-margin", "pgd-cw"):
        kwargs.setdefault("loss", "margin")
        key = "pgd"
    if key not in ATTACKS:
        raise ConfigError(
            f"unknown attack {name!r}: use one of {sorted(ATTACKS) + ['pgd-margin']}"
        )
    return ATTACKS[key](model, eps, **kwargs)


__all__ = [
    "ALT_TEMPLATES", "APGD", "APGDT", "ATTACKS", "Attack", "AutoAttack", "AutoAttackResult",
    "DEFAULT_IMAGE_NOISES", "DEFAULT_TEXT_NOISES", "FABT", "FGSM", "IMPLEMENTATION",
    "ImageNoise", "NORMS", "PGD", "STANDARD_ATTACKS", "Square", "StageCheckpoint", "TextNoise", "apgd",
    "apgd_checkpoints", "apgd_targeted", "apply_image_noise", "apply_text_noise", "autoattack",
    "backend_implementation", "canonical_norm", "default_alpha", "dlr_loss", "dlr_targeted_loss",
    "eps_value", "fab_targeted", "fgsm", "format_eps", "lp_norm", "make_attack", "margin_loss",
    "n_target_classes", "parse_eps", "parse_noise", "parse_noise_list", "pgd", "project",
    "project_hyperplane_box", "sanity_checks", "square", "square_check", "typo",
]
