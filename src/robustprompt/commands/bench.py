"""`robustprompt bench b2n|robustness`: the field's protocols over several methods, datasets and seeds."""

from __future__ import annotations

from pathlib import Path

from ._common import add_device, formatter, split_list

B2N_PRESETS = ["zeroshot", "coop", "kgcoop", "ivlp", "maple", "anprompt"]
XD_PRESETS = [("maple-xd" if p == "maple" else p) for p in B2N_PRESETS]  # MaPLe's code has its own xd recipe
ROBUST_PRESETS = ["zeroshot", "coop", "advpt", "advivlp", "advmaple", "naptuning"]
TESTBEDS = ["fashion-mnist", "shapes", "colors"]
IMAGE_NOISES = ["gaussian:0.02", "gaussian:0.05", "blur:1", "jpeg:50", "typo:0.1"]

EXAMPLES = """examples:
  robustprompt bench b2n                                   # every prompt method, testbeds, seeds 1,2,3
  robustprompt bench b2n --methods coop,anprompt --datasets eurosat,dtd --data-root ~/data \\
      --model ViT-B-16 --pretrained openai --out runs/b2n
  robustprompt bench robustness --eps 1/255,4/255,8/255,16/255 --aa-n-max 500
  robustprompt bench xd --datasets emoji-world --targets emoji-animals,emoji-food,emoji-world-outline
  robustprompt bench robustness --methods advivlp,naptuning --datasets emoji-world \
      --targets emoji-animals,emoji-food --eps 1/255          # robustness across datasets

Protocols: b2n trains on the base classes and tests base and novel (clean and under weak noise);
xd trains on all classes of the source (--datasets) and tests clean accuracy on every --targets
dataset; robustness trains on all classes and tests clean, PGD and AutoAttack accuracy, on the
source and, with --targets, on every target.

Each (dataset, method, seed) is a run directory OUT/<dataset>/<method>/seed<S>; finished runs and
recorded evaluations are skipped, so an interrupted benchmark resumes. The tables (mean +- std over
seeds) are written to OUT/report/ and printed.
"""


def register(sub) -> None:
    p = sub.add_parser("bench", help="run a protocol (base-to-novel, robustness) and tabulate it",
                       description="Run one of the field's protocols over methods x datasets x seeds.",
                       epilog=EXAMPLES, formatter_class=formatter)
    p.add_argument("protocol", choices=["b2n", "xd", "robustness"])
    p.add_argument("--methods", help="comma-separated presets (default: the protocol's methods)")
    p.add_argument("--datasets", help=f"comma-separated datasets (default: {','.join(TESTBEDS)})")
    p.add_argument("--targets", help="xd / robustness: comma-separated datasets to test the runs on (cross-dataset)")
    p.add_argument("--data-root", help="data root for benchmark datasets")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--model", help="architecture (default: the embedded model)")
    p.add_argument("--pretrained", help="pretrained tag or weights file")
    p.add_argument("--noise", help=f"b2n: weak noises to evaluate (default {','.join(IMAGE_NOISES)}; 'none' for none)")
    p.add_argument("--eps", default="1/255,4/255,8/255,16/255", help="robustness: radii (L-inf)")
    p.add_argument("--pgd-steps", type=int, default=100)
    p.add_argument("--n-max", type=int, help="every evaluation (clean, noise, PGD) on a fixed seeded subset of N "
                                             "test images (default: all); AutoAttack keeps --aa-n-max")
    p.add_argument("--pgd-n-max", type=int, help="PGD on a fixed seeded subset of N test images (default: --n-max)")
    p.add_argument("--aa-steps", type=int, default=100, help="AutoAttack APGD/FAB iterations")
    p.add_argument("--aa-n-max", type=int, default=500, help="AutoAttack on a fixed seeded subset of N test images")
    p.add_argument("--no-autoattack", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    p.add_argument("--out", help="output folder (default runs/bench-<protocol>)")
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine.protocols import ProtocolConfig, base_to_novel, cross_dataset, robustness
    from ..errors import ConfigError

    try:
        seeds = [int(s) for s in split_list(args.seeds, [])]
    except ValueError:
        raise ConfigError(f"--seeds must be integers, got {args.seeds!r}") from None
    presets = split_list(args.methods, {"b2n": B2N_PRESETS, "xd": XD_PRESETS, "robustness": ROBUST_PRESETS}[args.protocol])
    targets = split_list(args.targets, [])
    if args.protocol == "xd" and not targets:
        raise ConfigError("bench xd needs --targets (the datasets to test the source runs on)")
    if targets and args.protocol == "b2n":
        raise ConfigError("--targets applies to bench xd and bench robustness, not b2n")
    pc = ProtocolConfig(presets=presets, datasets=split_list(args.datasets, TESTBEDS), seeds=seeds,
                        out=Path(args.out or f"runs/bench-{args.protocol}"), shots=args.shots, root=args.data_root,
                        model=args.model, pretrained=args.pretrained, overrides=args.set, device=args.device,
                        n_max=args.n_max)
    if args.n_max is not None and args.n_max < 1:
        raise ConfigError(f"--n-max must be >= 1, got {args.n_max}")
    if args.protocol == "b2n":
        noises = [] if args.noise == "none" else split_list(args.noise, IMAGE_NOISES)
        base_to_novel(pc, noises)
        tables = ["b2n", "noise"]
    elif args.protocol == "xd":
        cross_dataset(pc, targets)
        tables = ["clean"]
    else:
        robustness(pc, split_list(args.eps, []), pgd_steps=args.pgd_steps, pgd_n_max=args.pgd_n_max, autoattack=not args.no_autoattack,
                   aa_steps=args.aa_steps, aa_n_max=args.aa_n_max, targets=targets)
        tables = ["robustness"]
    return print_report(pc.out, tables)


def print_report(out: Path, tables: list[str]) -> int:
    from ..report import build_report
    from ..report.tables import to_markdown

    result = build_report([out], out / "report", tables=tables)
    for name in tables:
        if name in result.tables and not result.tables[name].empty:
            print(to_markdown(result.tables[name]))
    print(f"report: {result.html}")
    return 0
