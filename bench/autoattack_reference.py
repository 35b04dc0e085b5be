"""Our AutoAttack against the reference implementations, on the same model and the same images.

    .venv/bin/python bench/autoattack_reference.py --reference PATH/TO/auto-attack [--torchattacks]
        [--run RUN | --method zeroshot] [--dataset fashion-mnist] [--n 100] [--eps 1/255]
        [--device cpu] [--threads 2] [--runs-per-batch 9] [--also-runs-per-batch 1] [--json OUT] [--profile]

`--reference` is a checkout of fra31/auto-attack (the folder holding `autoattack/`; pinned commit
a39220048b3c9f2cca9a4d3a54604793c68eca7e was used for the numbers in docs/performance.md); it is
imported from there, never vendored. `--torchattacks` also runs torchattacks' attacks (pip install
--no-deps torchattacks; 3.5.1 was used) as a second reference, configured as the standard version:
torchattacks' own `AutoAttack(version="standard")` runs APGD, APGD-T and FAB with 10 iterations
(its classes' default), not the standard 100, and Square with the rescaled schedule, so it is a
weaker, cheaper attack; here its components are built with the standard settings instead. All run the standard version (APGD-CE, APGD-T,
FAB-T, Square; 100 iterations, 9 targets, 5000 queries) with seed 0 on one batch of the first `--n`
images of a seeded subset of the test split, through the same classifier (the run's prompts,
class features computed once). Printed: each implementation's robust accuracy and wall time, the
per-image agreement of the robust sets with ours, and the time ratio (reference / ours), then
where our time went (seconds per attack). `--also-runs-per-batch K` adds a row for ours with
another `runs_per_batch` (1: APGD-T's and FAB-T's targets one after another). The
implementations are timed one after the other in this one process; the load average is printed
beside the times.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

import torch
from benchlib import append_jsonl, load


def classifier_and_data(*, run=None, method_name="zeroshot", model=None, dataset="fashion-mnist", n=100, device="cpu"):
    """(classifier with its class features computed once, n seeded test images, their labels): a trained run,
    or `method_name` built on `model` for `dataset`."""
    from robustprompt.backbone import load_backbone
    from robustprompt.data import prepare_dataset
    from robustprompt.engine.evaluate import eval_loader, subset
    from robustprompt.engine.runs import load_run
    from robustprompt.methods.registry import create_method

    if run:
        cfg, method = load_run(run, device)
        data = prepare_dataset(cfg.data.dataset, cfg.data.root, shots=0, seed=cfg.seed, split=cfg.data.split)
    else:
        bb = load_backbone(model, None, device=device)
        data = prepare_dataset(dataset, None, shots=0, seed=1, split="all")
        method = create_method(method_name, bb, data.classnames, data.template)
    method.eval()
    with torch.no_grad():
        ctx = method.class_context(list(data.classnames))
    items = subset(data.test, n, 1)
    x, y = next(iter(eval_loader(items, data.images, method.backbone.image_size, len(items))))
    return (lambda z: method(z, ctx)), x.to(device), y.to(device)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", required=True, help="checkout of fra31/auto-attack (the folder with autoattack/)")
    ap.add_argument("--torchattacks", action="store_true", help="also run torchattacks' AutoAttack")
    ap.add_argument("--run", help="a run directory (default: zero-shot on the embedded model)")
    ap.add_argument("--method", default="zeroshot")
    ap.add_argument("--model", default=None)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--eps", default="1/255")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--runs-per-batch", type=int, default=9, help="ours: runs of one attack side by side")
    ap.add_argument("--also-runs-per-batch", type=int, help="also time ours with this runs_per_batch")
    ap.add_argument("--json", help="append the result as one JSON line")
    ap.add_argument("--profile", action="store_true", help="print cProfile's top functions of our run (its time then includes the profiler's overhead)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.path.isdir(os.path.join(args.reference, "autoattack")):
        print(f"--reference {args.reference}: no autoattack/ folder (a checkout of fra31/auto-attack)", file=sys.stderr)
        return 2
    sys.path.insert(0, os.path.abspath(args.reference))
    from autoattack import AutoAttack as ReferenceAutoAttack

    from robustprompt.attacks import autoattack, parse_eps

    f, x, y = classifier_and_data(run=args.run, method_name=args.method, model=args.model, dataset=args.dataset,
                                  n=args.n, device=args.device)
    eps = parse_eps(args.eps)[1]

    def robust_of(adv):
        with torch.no_grad():
            return (f(adv).argmax(1) == y).cpu()

    profile = cProfile.Profile() if args.profile else None
    if profile:
        profile.enable()
    ours, t_ours = timed(lambda: autoattack(f, x, y, eps, seed=0, runs_per_batch=args.runs_per_batch))
    if profile:
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    ours_robust = ours.robust.cpu()
    rows = [("robustprompt", ours_robust, t_ours)]
    per_attack = {f"robustprompt runs_per_batch={args.runs_per_batch}": ours.report["time_s"]}
    if args.also_runs_per_batch:
        other, t_other = timed(lambda: autoattack(f, x, y, eps, seed=0, runs_per_batch=args.also_runs_per_batch))
        rows.append((f"robustprompt rpb={args.also_runs_per_batch}", other.robust.cpu(), t_other))
        per_attack[f"robustprompt runs_per_batch={args.also_runs_per_batch}"] = other.report["time_s"]
    ref = ReferenceAutoAttack(f, norm="Linf", eps=eps, version="standard", seed=0, verbose=False, device=args.device)
    adv, t_ref = timed(lambda: ref.run_standard_evaluation(x.clone(), y.clone(), bs=len(y)))
    rows.append(("fra31/auto-attack", robust_of(adv), t_ref))
    if args.torchattacks:
        import torchattacks

        class Wrapped(torch.nn.Module):
            def forward(self, z):
                return f(z)

        net, classes = Wrapped(), int(f(x[:1]).shape[1])
        ta = torchattacks.MultiAttack([  # AutoAttack's standard settings (see the module docstring)
            torchattacks.APGD(net, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=0, loss="ce"),
            torchattacks.APGDT(net, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=0, n_classes=classes),
            torchattacks.FAB(net, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=0, multi_targeted=True,
                             n_classes=classes),
            torchattacks.Square(net, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, p_init=0.8,
                                resc_schedule=False, seed=0),
        ])
        adv, t_ta = timed(lambda: ta(x.clone(), y.clone()))
        rows.append(("torchattacks", robust_of(adv), t_ta))
    machine_load = load()
    print(f"{len(y)} images, eps {args.eps}, load average {machine_load}, threads {torch.get_num_threads()}")
    print(f"{'implementation':20} {'robust acc':>10} {'time s':>8} {'same as ours':>13} {'time / ours':>11}")
    result = {"n": len(y), "eps": args.eps, "load_avg": machine_load, "run": args.run or f"{args.method} {args.dataset}",
              "ours_time_s": round(t_ours, 2), "implementations": {}}
    for name, robust, t in rows:
        agree = int((robust == ours_robust).sum())
        print(f"{name:20} {robust.float().mean().item():>10.4f} {t:>8.1f} {agree:>7}/{len(y):<5} {t / t_ours:>10.2f}x")
        result["implementations"][name] = {"robust_acc": robust.float().mean().item(), "time_s": round(t, 2),
                                           "agree": agree, "ratio_to_ours": round(t / t_ours, 3)}
    for name, times in per_attack.items():
        print(f"{name}: " + ", ".join(f"{a} {t:.1f} s" for a, t in times.items()))
    result["ours_time_s_per_attack"] = per_attack
    result["threads"] = torch.get_num_threads()
    append_jsonl(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
