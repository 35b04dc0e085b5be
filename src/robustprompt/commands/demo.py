"""`robustprompt demo`: the whole product offline in minutes on a CPU.

Embedded model + offline testbed: zero-shot and every prompt method, trained on base classes,
tested on base and novel classes, clean and under weak noise; a printed table and an HTML report.
"""

from __future__ import annotations

from pathlib import Path

from ._common import add_device, formatter, split_list

DEMO_DATASETS = ["fashion-mnist"]
DEMO_NOISES = ["gaussian:0.05", "typo:0.1"]

EXAMPLES = """examples:
  robustprompt demo                          # about 2 minutes on an idle 2-core machine
  robustprompt demo --methods zeroshot,coop --out runs/quick-demo
  robustprompt demo --datasets fashion-mnist,shapes,colors --seeds 1,2,3

The numbers come from robustprompt's small embedded CLIP, pretrained here on offline data: a
testbed, not CLIP ViT-B/16 results.
"""


def register(sub) -> None:
    p = sub.add_parser("demo", help="offline demo: every method, base-to-novel, on the embedded model",
                       description=__doc__, epilog=EXAMPLES, formatter_class=formatter)
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo); reruns resume")
    p.add_argument("--methods", help="comma-separated presets (default: zero-shot and every prompt method)")
    p.add_argument("--datasets", help=f"comma-separated testbed datasets (default {','.join(DEMO_DATASETS)})")
    p.add_argument("--seeds", default="1", help="comma-separated seeds (default 1)")
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import list_presets
    from ..engine.protocols import ProtocolConfig, base_to_novel
    from .bench import B2N_PRESETS, print_report

    presets = split_list(args.methods, [p for p in B2N_PRESETS if p in list_presets()])
    pc = ProtocolConfig(presets=presets, datasets=split_list(args.datasets, DEMO_DATASETS),
                        seeds=[int(s) for s in split_list(args.seeds, ["1"])], out=Path(args.out), device=args.device)
    print(f"robustprompt demo: {', '.join(presets)} on {', '.join(pc.datasets)} "
          f"(embedded model, base-to-novel, seeds {args.seeds}) -> {pc.out}")
    base_to_novel(pc, DEMO_NOISES)
    return print_report(pc.out, ["b2n", "noise"])
