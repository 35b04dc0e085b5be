"""`robustprompt pretrain`: CLIP contrastive pretraining of the embedded small model on offline data."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ._common import add_device

HELP = "pretrain a small CLIP on offline captioned data (regenerates the embedded model)"

DESCRIPTION = """\
Pretrain an open_clip architecture (default: robustprompt-tiny, the embedded model) with CLIP's
contrastive loss on offline captioned images: Fashion-MNIST's 60000 training images (never its test
split) with varied caption templates, synonyms and colour tints named in the captions, plus a
deterministic generator of shapes x colours x patterns x sizes x positions and letters/digits
rendered in DejaVu fonts; most images sit on a flat grey backdrop and carry mild pixel noise. Nothing
is downloaded. Two stages: --steps of warm-up + cosine, then --stage2-steps of a short second cosine
whose batches also hold groups of images that differ only in shape (hard negatives). The recipe takes
about 35-40 minutes on 2 CPU cores, a few minutes with --device cuda on one H100.

With no options this regenerates the shipped weights (the recipe is the default of
robustprompt.pretrain.config.PretrainConfig). The output directory receives checkpoint.safetensors
+ checkpoint.json (every --checkpoint-every steps; --resume continues them exactly), log.txt, and at
the end <model>.safetensors (fp16 state_dict, open_clip keys) with <model>.json (config, seed,
command, wall time, data sources, measured zero-shot quality)."""

EPILOG = """\
examples:
  robustprompt pretrain --out runs/pretrain                 # regenerate the embedded model
  robustprompt pretrain --out runs/pretrain --resume        # continue after an interruption
  robustprompt pretrain --out /tmp/p --steps 20 --warmup-steps 2 --stage2-steps 0 --batch-size 32 --no-eval
  ROBUSTPROMPT_FASHION_MNIST=~/fmnist robustprompt pretrain --out runs/p
  cp runs/pretrain/robustprompt-tiny.* src/robustprompt/weights/           # ship the result
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (checkpoints, log, final export)")
    p.add_argument("--config", metavar="YAML", help="YAML file of PretrainConfig fields overriding the default recipe")
    p.add_argument("--model", help="open_clip architecture name (default robustprompt-tiny)")
    p.add_argument("--steps", type=int, help="optimizer steps of stage 1 (default: the recipe's)")
    p.add_argument("--stage2-steps", type=int, help="optimizer steps of stage 2 (0: none)")
    p.add_argument("--batch-size", type=int, help="images (and captions) per step")
    p.add_argument("--lr", type=float, help="peak learning rate of AdamW (warm-up then cosine)")
    p.add_argument("--warmup-steps", type=int, help="linear warm-up steps")
    p.add_argument("--seed", type=int, help="seed of the initialisation and of the data stream")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default: torch's choice); on a CPU shared with other jobs, 1 is often "
                        "much faster than 2 (no OpenMP barriers waiting on descheduled threads)")
    add_device(p)
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--fashion-mnist", metavar="DIR",
                   help="Fashion-MNIST folder (default $ROBUSTPROMPT_FASHION_MNIST, else /usr/share/datasets/fashion-mnist)")
    p.add_argument("--world", metavar="DIR",
                   help="the emoji world's folder (default $ROBUSTPROMPT_WORLD, else ~/.cache/robustprompt/world; "
                        "`robustprompt world fetch` fills it)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out (same config required)")
    p.add_argument("--no-eval", action="store_true", help="skip the final zero-shot quality measurement")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log.txt still gets a line per log step)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.set_defaults(func=handler)


def handler(args) -> int:
    from ..pretrain.config import load_config
    from ..synthetic.sources import fashion_mnist_dir

    cfg = load_config(args.config, model=args.model, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      warmup_steps=args.warmup_steps, stage2_steps=args.stage2_steps, seed=args.seed,
                      checkpoint_every=args.checkpoint_every)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if cfg.fashion > 0:
        fashion_mnist_dir(args.fashion_mnist)  # fail early with one line if it is missing
    if cfg.world > 0:
        from ..world.sources import require

        require(args.world)
    from ..pretrain.train import pretrain

    command = "robustprompt pretrain " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 1 \
        else "robustprompt pretrain"
    meta = pretrain(cfg, Path(args.out), resume=args.resume, fashion_mnist_root=args.fashion_mnist, world_root=args.world,
                    progress=not args.no_progress, evaluate=not args.no_eval, command=command,
                    threads=args.threads, device=args.device)
    out = Path(args.out) / f"{cfg.model}.safetensors"
    print(f"pretrained {cfg.model}: {meta['steps']} steps, {meta['wall_time_s']:.0f}s, final loss {meta['final_loss']:.3f}")
    for name, row in (meta.get("quality") or {}).items():
        print(f"  zero-shot {name}: {100 * row['accuracy']:.1f}% ({row['n']} images, {row['classes']} classes)")
    print(f"weights: {out}")
    return 0
