"""`robustprompt eval`: evaluate a finished run, clean, under weak noise or under attack."""

from __future__ import annotations

from ._common import add_device, formatter, split_list

EXAMPLES = """examples:
  robustprompt eval runs/coop-fmnist-s1                 # the run's own test split
  robustprompt eval runs/coop-fmnist-s1 --split novel   # base-to-novel: the unseen classes
  robustprompt eval RUN --split novel --noise gaussian:0.02,gaussian:0.05,blur:1,jpeg:50,typo:0.1
  robustprompt eval RUN --attack pgd --eps 1/255,4/255 --steps 100
  robustprompt eval RUN --attack autoattack --eps 4/255 --n-max 500   # on a fixed seeded subset
  robustprompt eval runs/coop-imagenet --dataset eurosat --data-root ~/data --split all   # cross-dataset

Splitting an AutoAttack evaluation over 4 processes (or devices), then assembling its record:
  for k in 0 1 2 3; do robustprompt eval RUN --attack autoattack --eps 1/255 --n-max 1000 --batch-size 50 --shard $k/4 & done; wait
  robustprompt eval RUN --attack autoattack --eps 1/255 --n-max 1000 --batch-size 50
An interrupted attacked evaluation continues where it stopped when the same command is run again.

Each evaluation is one record in RUN/results.json (a record with the same dataset, split, metric,
attack, eps, steps and noise replaces the old one). Clean accuracy is always evaluated too.
"""


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run directory (clean, weak noise, PGD, AutoAttack)",
                       description="Evaluate a trained run. Records are merged into RUN/results.json.",
                       epilog=EXAMPLES, formatter_class=formatter)
    p.add_argument("run", help="run directory written by `robustprompt train`")
    p.add_argument("--split", choices=["base", "novel", "all"], help="classes to test (default: the run's)")
    p.add_argument("--dataset", help="another dataset to test on (cross-dataset transfer)")
    p.add_argument("--data-root", help="data root for --dataset")
    p.add_argument("--noise", help="comma-separated weak noises: gaussian:SIGMA, blur:SIGMA, jpeg:QUALITY, typo:RATE")
    p.add_argument("--attack", choices=["pgd", "autoattack"], help="L-inf attack on the whole prompted model")
    p.add_argument("--eps", help="comma-separated radii for --attack, e.g. 1/255,4/255")
    p.add_argument("--steps", type=int, default=100, help="PGD steps / APGD iterations (default 100)")
    p.add_argument("--n-max", type=int, help="evaluate on a fixed seeded subset of this many test images")
    p.add_argument("--batch-size", type=int, help="evaluation batch size")
    p.add_argument("--no-write", action="store_true", help="print only; leave results.json unchanged")
    p.add_argument("--shard", metavar="K/N", help="attack only batches i with i %% N == K (K = 0 .. N-1) and keep "
                                                  "them in RUN/.partial: N processes or devices split an attacked "
                                                  "evaluation; the same command without --shard then makes the record")
    p.add_argument("--out", help="record into a copy of the run in this new folder (for a run in a read-only "
                                 "folder, or one to keep unchanged)")
    add_device(p)
    p.set_defaults(func=run)


def specs_from_args(args) -> list:
    from ..engine.evaluate import EvalSpec
    from ..errors import ConfigError

    common = dict(split=args.split, dataset=args.dataset, root=args.data_root)
    specs = [EvalSpec(**common)]
    for noise in split_list(args.noise):
        specs.append(EvalSpec(**common, noise=noise))
    if args.attack:
        eps_list = split_list(args.eps)
        if not eps_list:
            raise ConfigError("--attack needs --eps, e.g. --eps 1/255,4/255")
        specs += [EvalSpec(**common, attack=args.attack, eps=e, steps=args.steps, n_max=args.n_max) for e in eps_list]
    elif args.eps:
        raise ConfigError("--eps is given without --attack")
    return specs


def run(args) -> int:
    from ..engine.runs import describe, evaluate_run
    from ..errors import ConfigError

    if args.out and args.no_write:
        raise ConfigError("--out and --no-write contradict each other; give one")
    shard = None
    if args.shard:
        try:
            k, n = (int(v) for v in args.shard.split("/"))
        except ValueError:
            raise ConfigError(f"--shard expects K/N, e.g. 0/4; got {args.shard!r}") from None
        if not 0 <= k < n:
            raise ConfigError(f"--shard {args.shard}: K must be in 0 .. N-1")
        shard = (k, n)

    records = evaluate_run(args.run, specs_from_args(args), device=args.device, batch_size=args.batch_size,
                           write=not args.no_write, out=args.out, shard=shard)
    for r in records:
        print(describe(r))
    if shard is not None:
        print(f"shard {shard[0]}/{shard[1]} done: its batches are in {args.run}/.partial; run the same command "
              "without --shard (after every shard) to make the record")
    return 0
