"""`robustprompt predict`: classify images with a trained run (top-k names and probabilities)."""

from __future__ import annotations

from ._common import add_device, formatter

EXAMPLES = """examples:
  robustprompt predict runs/coop-eurosat-s1 photo.jpg
  robustprompt predict runs/coop-eurosat-s1 a.png b.png --top-k 3 --json
  robustprompt predict runs/coop-eurosat-s1 photo.jpg --classes "forest,river,highway,sea or lake"

With --classes the learned prompts are applied to other class names (prompts transfer to new
classes); names are separated by commas and must be distinct.
"""


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(sub) -> None:
    p = sub.add_parser("predict", help="top-k class names with probabilities for images",
                       description="Classify images with a trained run: the softmax over the run's classes "
                       "(or --classes) and the top-k names.", epilog=EXAMPLES, formatter_class=formatter)
    p.add_argument("run", help="run directory written by `robustprompt train`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top-k", type=_positive_int, default=5, metavar="K", help="names per image (default: 5)")
    p.add_argument("--classes", metavar="NAMES", help='other class names, comma-separated: "cat,dog,car"')
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="images per forward pass (default: 32)")
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from ..inference import predict

    results = predict(args.run, args.images, classes=args.classes, top_k=args.top_k, device=args.device,
                      batch_size=args.batch_size)
    if args.json:
        print(json.dumps([{"image": img, "predictions": [{"class": c, "prob": p} for c, p in top]}
                          for img, top in zip(args.images, results)], indent=2))
        return 0
    for img, top in zip(args.images, results):
        print(img)
        for name, prob in top:
            print(f"  {prob:.4f}  {name}")
    return 0
