"""NAP-Tuning before its first training step: where does its starting point stand against zero-shot?

For zero-shot and for NAP-Tuning variants built as `robustprompt train` builds them (same seed, same
initialisation), prints the cross-entropy and top-1 accuracy on a seeded subset of the test images,
and for variants with refiners the mean of |R(h) - h| / |h| over the tokens they refine (how far the
refiners move the features at initialisation).

    OMP_NUM_THREADS=1 .venv/bin/python bench/naptuning_init.py --model robustprompt-small --dataset emoji-food
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from robustprompt.components.refiner import TokenRefiner
from robustprompt.config import build_run_config
from robustprompt.engine.evaluate import eval_loader, subset
from robustprompt.engine.train import build

VARIANTS = {
    "zeroshot": ("zeroshot", []),
    "naptuning (the code's init: 16 random tokens, depth 12, refiners nn.Linear default)": ("naptuning", []),
    "naptuning, refiners off": ("naptuning", ["method_cfg.refine_vision=none"]),
    "naptuning, refiners exactly the identity at init": (
        "naptuning", ["method_cfg.refiner_init=normal", "method_cfg.refiner_up_init_std=0"]),
    "naptuning, refiners off, prompts from 'a photo of a' (n_ctx 4)": (
        "naptuning", ["method_cfg.refine_vision=none", "method_cfg.n_ctx=4", "method_cfg.ctx_init=a photo of a"]),
}


def at_init(preset: str, overrides: list[str], n: int, seed: int) -> dict:
    cfg = build_run_config(preset, overrides)
    s = build(cfg)
    method = s.method.eval()
    moved: list[float] = []
    for module in method.modules():
        if isinstance(module, TokenRefiner):
            module.register_forward_hook(lambda mod, inp, out: moved.append(
                ((out - inp[0]).norm(dim=-1) / inp[0].norm(dim=-1)).mean().item()))
    ce, correct, total = 0.0, 0, 0
    with torch.no_grad():
        ctx = method.class_context(list(s.data.classnames))
        for x, y in eval_loader(subset(s.data.test, n, seed), s.data.images, s.backbone.image_size, 100):
            logits = method(x, ctx)
            ce += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    out = {"ce": ce / total, "accuracy": 100 * correct / total, "images": total}
    if moved:
        out["refiner_relative_change"] = sum(moved) / len(moved)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="robustprompt-small")
    p.add_argument("--dataset", default="emoji-food")
    p.add_argument("--n", type=int, default=400, help="test images (a seeded subset)")
    p.add_argument("--seed", type=int, default=1, help="the runs' seed (initialisation and subset)")
    p.add_argument("--json", help="append the results as one JSON line to this file")
    a = p.parse_args()
    base = [f"model.name={a.model}", f"data.dataset={a.dataset}", "data.split=all", f"seed={a.seed}"]
    results = {}
    for name, (preset, sets) in VARIANTS.items():
        r = results[name] = at_init(preset, base + sets, a.n, a.seed)
        moved = r.get("refiner_relative_change")
        extra = "" if moved is None else f", refiners move tokens by {moved:.3f} of their norm"
        print(f"{name}: CE {r['ce']:.3f}, top-1 {r['accuracy']:.1f}% on {r['images']} images{extra}", flush=True)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps({"model": a.model, "dataset": a.dataset, "seed": a.seed, "results": results}) + "\n")


if __name__ == "__main__":
    main()
