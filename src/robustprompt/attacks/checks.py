"""Sanity checks of an adversarial evaluation (after AutoAttack's own flags, Croce & Hein 2020).

:func:`sanity_checks` returns a JSON-ready dict::

    {"passed": bool,                       # every check that ran passed
     "checks": {name: True | False | None}, # None: not run (e.g. no AutoAttack report given)
     "details": {name: {...numbers...}}}

Checks:

* ``logits_not_probabilities``: the outputs are not all in [0, 1] with rows summing to 1.
* ``deterministic``: two forward passes give the same outputs (no randomised defence).
* ``gradients_nonzero``: no image has an all-zero input gradient of the cross-entropy.
* ``eps_zero_is_clean``: PGD at eps = 0 gives exactly the clean accuracy.
* ``monotone_in_eps``: PGD robust accuracy does not rise with eps (0, eps/2, eps, 2 eps).
* ``monotone_in_steps``: PGD robust accuracy does not rise with the number of steps
  (steps/2, steps, 2 steps; step size 2.5 eps / steps each, the same seed).
* ``zero_at_large_eps``: PGD (2x steps) at a large radius, max(16 eps, 16/255), leaves at most
  ``tol`` of the images correct: a model that still resists there hides its gradients.
* ``transfer_not_better``: given a ``surrogate`` (e.g. zero-shot CLIP on the same backbone), PGD
  crafted on the surrogate and replayed on the model is not more effective than white-box PGD.
* ``square_not_better``: given an AutoAttack report, Square broke no image that the white-box
  attacks before it left standing.

The monotonicity checks allow ``tol`` (default: one image) since independent runs of a
gradient attack may legitimately differ by a hair; a larger rise points at gradient masking.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from ._core import (
    EpsLike,
    Model,
    canonical_norm,
    ce_loss,
    check_inputs,
    logits_of,
    loss_and_grad,
    parse_eps,
)
from .gradient import pgd

WHITE_BOX = ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t")


def _acc(model: Model, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((logits_of(model, x).argmax(1) == y).float().mean())


def _non_increasing(values: Sequence[float], tol: float) -> bool:
    return all(b <= a + tol for a, b in zip(values, values[1:]))


def square_check(report: Dict, tol: float = 0.0) -> Optional[bool]:
    """True when Square broke no image the white-box attacks left (None if it did not run
    after a white-box attack)."""
    after = report.get("robust_acc_after", {})
    names = list(after)
    if "square" not in names:
        return None
    before = [after[n] for n in names[: names.index("square")] if n in WHITE_BOX]
    if not before:
        return None
    return after["square"] >= min(before) - tol


def sanity_checks(
    model: Model,
    images: Tensor,
    labels: Tensor,
    eps: EpsLike,
    *,
    norm: str = "Linf",
    steps: int = 10,
    loss: str = "ce",
    autoattack_report: Optional[Dict] = None,
    seed: int = 0,
    tol: Optional[float] = None,
    surrogate: Optional[Model] = None,
) -> Dict:
    """Run the sanity checks on a batch (a few dozen images suffice; see the module docstring).

    Arguments: the model (logits of [0, 1] images), a batch and its labels, the radius (float or
    "4/255"), the norm, PGD steps for the eps/steps sweeps (10), the PGD loss, an optional
    AutoAttack report (``AutoAttackResult.report``) for the Square check, the seed of the PGD
    random starts, the tolerance of the monotonicity checks (default one image), and an optional
    surrogate model for the transfer check.

    Example::

        >>> rep = sanity_checks(model, images[:64], labels[:64], "4/255",
        ...                     autoattack_report=aa.report)
        >>> rep["passed"], rep["checks"]
    """
    norm = canonical_norm(norm)
    eps_str, eps_f = parse_eps(eps)
    x, y = check_inputs(images, labels)
    n = x.shape[0]
    tol = (1.0 / max(n, 1)) if tol is None else float(tol)
    checks: Dict[str, Optional[bool]] = {}
    details: Dict[str, Dict] = {}

    with torch.no_grad():
        out1 = logits_of(model, x)
        out2 = logits_of(model, x)
    in01 = bool(out1.min() > -1e-5) and bool(out1.max() < 1 + 1e-5)
    sums1 = bool(((out1.sum(1) - 1).abs() < 1e-5).all())
    checks["logits_not_probabilities"] = not (in01 and sums1)
    details["logits_not_probabilities"] = {
        "min": float(out1.min()), "max": float(out1.max()),
        "max_abs_row_sum_minus_1": float((out1.sum(1) - 1).abs().max()),
    }
    diff = float((out1 - out2).abs().max())
    checks["deterministic"] = diff <= 1e-5 * max(1.0, float(out1.abs().max()))
    details["deterministic"] = {"max_abs_diff": diff}

    _, _, g = loss_and_grad(model, x, lambda z: ce_loss(z, y))
    zero = (g.reshape(n, -1).abs().sum(1) == 0)
    checks["gradients_nonzero"] = not bool(zero.any())
    details["gradients_nonzero"] = {"n_zero": int(zero.sum()), "n_images": n,
                                    "mean_abs_grad": float(g.abs().mean())}

    clean = float((out1.argmax(1) == y).float().mean())

    def run(e: float, s: int) -> float:
        gen = torch.Generator().manual_seed(seed)
        adv = pgd(model, x, y, e, steps=s, norm=norm, loss=loss, keep="worst", generator=gen)
        return _acc(model, adv, y)

    acc0 = run(0.0, steps)
    checks["eps_zero_is_clean"] = acc0 == clean
    details["eps_zero_is_clean"] = {"clean_acc": clean, "pgd_acc_eps0": acc0}

    eps_grid = [0.0, eps_f / 2, eps_f, 2 * eps_f]
    accs_eps = [clean] + [run(e, steps) for e in eps_grid[1:]]
    checks["monotone_in_eps"] = _non_increasing(accs_eps, tol)
    details["monotone_in_eps"] = {"eps": eps_grid, "acc": accs_eps, "steps": steps, "tol": tol}

    steps_grid = [max(steps // 2, 1), steps, 2 * steps]
    accs_steps = [run(eps_f, s) for s in steps_grid]
    checks["monotone_in_steps"] = _non_increasing(accs_steps, tol)
    details["monotone_in_steps"] = {"steps": steps_grid, "acc": accs_steps, "eps": eps_f,
                                    "tol": tol}

    large = max(16 * eps_f, 16 / 255)
    acc_large = run(large, 2 * steps)
    checks["zero_at_large_eps"] = acc_large <= tol
    details["zero_at_large_eps"] = {"eps": large, "steps": 2 * steps, "acc": acc_large, "tol": tol}

    if surrogate is not None:
        gen = torch.Generator().manual_seed(seed)
        adv = pgd(surrogate, x, y, eps_f, steps=steps, norm=norm, loss=loss, keep="last", generator=gen)
        acc_transfer = _acc(model, adv, y)
        white = accs_eps[2]
        checks["transfer_not_better"] = acc_transfer >= white - tol
        details["transfer_not_better"] = {"eps": eps_f, "steps": steps, "acc_transfer": acc_transfer,
                                          "acc_white_box": white, "tol": tol}
    else:
        checks["transfer_not_better"] = None
        details["transfer_not_better"] = {"reason": "no surrogate model given"}

    if autoattack_report is not None:
        checks["square_not_better"] = square_check(autoattack_report)
        after = autoattack_report.get("robust_acc_after", {})
        details["square_not_better"] = {"robust_acc_after": dict(after),
                                        "broken_by": dict(autoattack_report.get("broken_by", {}))}
    else:
        checks["square_not_better"] = None
        details["square_not_better"] = {"reason": "no AutoAttack report given"}

    ran = [v for v in checks.values() if v is not None]
    return {"passed": all(ran), "eps": eps_str, "norm": norm, "checks": checks,
            "details": details}
