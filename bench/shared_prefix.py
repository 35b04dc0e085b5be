"""The text tower's shared prefix (train.share_text_prefix): one training step with the shared prompt
positions computed once against every class prompt in full, in one process, interleaved.

    .venv/bin/python bench/shared_prefix.py [--methods coop,kgcoop,maple,anprompt] [--classes 100,1000]
                                            [--model robustprompt-small] [--pretrained ""] [--batch 4]
                                            [--repeats 3] [--threads N] [--device cpu]

A step is the engine's own (`engine.train.step_loss` + backward), at the method's preset, on random
images; class names are emoji-world's (real names of one to four words; `robustprompt world fetch`)
or, without the world, "class 17 object". Per (method, class count) the two modes alternate
`--repeats` times after one warm-up step each; the medians, their ratio (full / shared: how many times
faster sharing is), the largest difference of the class features (of the logits for CoCoOp, whose
class features exist per image only) and the relative difference of the learnable gradients are
printed, with the load average beside them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from benchlib import load


def class_names(n: int) -> list[str]:
    try:
        from robustprompt.data.emoji_suite import build_world

        names = build_world().classnames
    except Exception:  # the world is not fetched: synthetic names
        names = []
    if len(names) < n:
        names = [f"class {i} object" for i in range(n)]
    return list(names[:n])


def measure(method: str, n: int, args) -> dict:
    from robustprompt.backbone import load_backbone
    from robustprompt.config import build_run_config
    from robustprompt.engine.train import step_loss
    from robustprompt.methods.registry import create_method, method_config

    dev = torch.device(args.device)
    sets = [f"model.name={args.model}", f"train.batch_size={args.batch}"]
    if args.pretrained:
        sets.append(f"model.pretrained={args.pretrained}")
    cfg = build_run_config(method, overrides=sets)
    backbone = load_backbone(args.model, args.pretrained or cfg.model.pretrained, device=dev)
    names = class_names(n)
    torch.manual_seed(0)
    m = create_method(cfg.method, backbone, names, "a photo of a {}.", method_config(cfg.method, cfg.method_cfg))
    m.train()
    params = list(m.learnable_parameters().values())
    x = torch.rand(args.batch, 3, backbone.image_size, backbone.image_size, device=dev)
    y = torch.arange(args.batch, device=dev) % n

    def step(share: bool) -> tuple[float, torch.Tensor]:
        backbone.share_text_prefix = share
        for p in params:
            p.grad = None
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        loss, _ = step_loss(m, cfg, False, x, y)
        loss.backward()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        took = time.perf_counter() - t
        return took, torch.cat([p.grad.flatten() for p in params if p.grad is not None])

    times = {False: [], True: []}
    grads = {}
    for r in range(args.repeats + 1):
        for share in (False, True):
            took, g = step(share)
            grads[share] = g
            if r > 0:
                times[share].append(took)
    with torch.no_grad():
        feats = {}
        for share in (False, True):
            backbone.share_text_prefix = share
            try:
                feats[share] = m.class_features(tuple(names))
            except NotImplementedError:  # CoCoOp: class features exist per image only; its logits instead
                feats[share] = m(x, m.class_context())
    backbone.share_text_prefix = True
    full, shared = statistics.median(times[False]), statistics.median(times[True])
    return {"method": method, "classes": n, "model": args.model, "full_s": full, "shared_s": shared,
            "ratio": full / shared, "feature_max_abs_diff": float((feats[True] - feats[False]).abs().max()),
            "grad_rel_diff": float((grads[True] - grads[False]).norm() / grads[False].norm()),
            "load_avg": load(), "threads": torch.get_num_threads()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default="coop,kgcoop,maple,anprompt")
    ap.add_argument("--classes", default="100,1000")
    ap.add_argument("--model", default="robustprompt-small")
    ap.add_argument("--pretrained", default="", help="weights tag or file (default: the model's own; 'random' for "
                                                     "open_clip architectures without downloads)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{'method':10} {'classes':>7} {'full s':>8} {'shared s':>9} {'full/shared':>11} {'feat diff':>10} "
          f"{'grad rel':>9}  load")
    for method in args.methods.split(","):
        for n in (int(c) for c in args.classes.split(",")):
            r = measure(method, n, args)
            print(f"{method:10} {n:>7} {r['full_s']:>8.3f} {r['shared_s']:>9.3f} {r['ratio']:>10.2f}x "
                  f"{r['feature_max_abs_diff']:>10.1e} {r['grad_rel_diff']:>9.1e}  {r['load_avg']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
