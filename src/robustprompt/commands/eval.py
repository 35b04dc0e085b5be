"""`robustprompt eval`: evaluate a finished run (its own split, another split or another dataset)."""

from __future__ import annotations

from ._common import add_device, formatter

EXAMPLES = """examples:
  robustprompt eval runs/coop-fmnist-s1                 # the run's own test split
  robustprompt eval runs/coop-fmnist-s1 --split novel   # base-to-novel: the unseen classes
  robustprompt eval runs/coop-imagenet --dataset eurosat --data-root ~/data --split all   # cross-dataset
"""


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run directory; results are added to its results.json",
                       description="Evaluate a trained run. Records are merged into RUN/results.json.",
                       epilog=EXAMPLES, formatter_class=formatter)
    p.add_argument("run", help="run directory written by `robustprompt train`")
    p.add_argument("--split", choices=["base", "novel", "all"], help="classes to test (default: the run's)")
    p.add_argument("--dataset", help="another dataset to test on (cross-dataset transfer)")
    p.add_argument("--data-root", help="data root for --dataset")
    p.add_argument("--batch-size", type=int, help="evaluation batch size")
    p.add_argument("--no-write", action="store_true", help="print only; leave results.json unchanged")
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine.runs import evaluate_run

    records = evaluate_run(args.run, split=args.split, dataset=args.dataset, root=args.data_root,
                           device=args.device, batch_size=args.batch_size, write=not args.no_write)
    for r in records:
        extra = "".join(f" {k}={r[k]}" for k in ("attack", "eps", "noise") if r.get(k) is not None)
        print(f"{r['dataset']} {r['split']} {r['metric']}{extra}: {r['value']:.4f} (n={r['n']})")
    return 0
