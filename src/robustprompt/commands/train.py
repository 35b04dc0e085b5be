"""`robustprompt train`: train one method on one dataset into a run directory."""

from __future__ import annotations

from ..config import build_run_config, list_presets
from ..methods.registry import list_methods
from ._common import add_device, formatter

EXAMPLES = """examples:
  robustprompt train --method coop --out runs/coop-fmnist-s1
  robustprompt train --method coop --dataset eurosat --data-root ~/data --shots 16 --split base \\
      --model ViT-B-16 --pretrained openai --out runs/coop-eurosat-s1
  robustprompt train --preset coop --set train.lr=0.01 --set method_cfg.n_ctx=4 --out runs/x
  robustprompt train --out runs/x --resume            # continue an interrupted run
"""


def register(sub) -> None:
    p = sub.add_parser("train", help="train a prompt method into a run directory",
                       description="Train one method on one dataset. The resolved config, learnable tensors, "
                       "metrics and a log are written to --out.", epilog=EXAMPLES, formatter_class=formatter)
    p.add_argument("--out", required=True, help="run directory to create (or to continue with --resume)")
    p.add_argument("--method", help="method or preset name, e.g. coop, anprompt, advivlp (`robustprompt list`)")
    p.add_argument("--preset", help="YAML preset name or file (default: the method's own preset if one exists)")
    p.add_argument("--dataset", help="dataset name (see `robustprompt list datasets`)")
    p.add_argument("--data-root", help="folder that holds the datasets (not needed for offline testbeds)")
    p.add_argument("--shots", type=int, help="training images per class (<= 0: all)")
    p.add_argument("--seed", type=int, help="seed for few-shot sampling, initialisation and data order")
    p.add_argument("--split", choices=["base", "novel", "all"], help="classes to train on")
    p.add_argument("--model", help="open_clip architecture or project model (default: the embedded model)")
    p.add_argument("--pretrained", help="open_clip pretrained tag, weights file, or 'random'")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--precision", choices=["fp32", "bf16"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set train.weight_decay=0 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_device(p)
    p.set_defaults(func=run)


def flag_values(args) -> dict:
    values: dict = {}

    def put(section, key, value):
        if value is not None:
            (values.setdefault(section, {}) if section else values)[key] = value

    put(None, "method", args.method)
    put(None, "seed", args.seed)
    put("data", "dataset", args.dataset)
    put("data", "root", args.data_root)
    put("data", "shots", args.shots)
    put("data", "split", args.split)
    put("model", "name", args.model)
    put("model", "pretrained", args.pretrained)
    put("train", "epochs", args.epochs)
    put("train", "batch_size", args.batch_size)
    put("train", "lr", args.lr)
    put("train", "precision", args.precision)
    return values


def resolve_config(args):
    from ..engine.rundir import RunDir

    values = flag_values(args)
    preset = args.preset
    if args.resume and not preset and not values and not args.set and RunDir(args.out).exists:
        from ..config import RunConfig, from_dict

        return from_dict(RunConfig, RunDir(args.out).read_config())
    if preset is None:
        method = values.get("method") or "coop"
        preset = method if method in list_presets() else None
        if preset and method not in list_methods():  # a preset name used as a method (advivlp, advmaple)
            values.pop("method")
    return build_run_config(preset, args.set, values)


def run(args) -> int:
    from ..engine import train
    from ..engine.distributed import main_process

    cfg = resolve_config(args)
    results = train(cfg, args.out, resume=args.resume, device=args.device)
    if not main_process():  # under torchrun every process trains; rank 0 reports
        return 0
    for r in results.get("evaluations", []):
        print(f"{r['dataset']} {r['split']} {r['metric']}: {r['value']:.4f} (n={r['n']})")
    print(f"run written to {args.out}")
    return 0
