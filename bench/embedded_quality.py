"""Quality bars of the embedded model, measured on CPU in about a minute.

    .venv/bin/python bench/embedded_quality.py [--weights PATH] [--fast] [--json OUT]

Zero-shot accuracy of the shipped robustprompt-tiny
  - on the Fashion-MNIST test split (t10k, 10000 images) drawn like the pretraining images
    (grey on black, 32 px): bar >= 80%;
  - on each testbed dataset's test split (testbed style: low contrast, noise, grey background):
    bar >= 3x chance.
Every row uses the dataset's templates[0], which is not a pretraining caption template (one extra row
gives "a photo of a {}."; rows "test, pretraining style" are diagnostics without the domain shift). Images are
normalised with the model's mean/std (open_clip's OpenAI values).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="a safetensors file (default: the shipped embedded weights)")
    ap.add_argument("--fast", action="store_true", help="first 1000 test images per dataset only")
    ap.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    ap.add_argument("--fashion-mnist", metavar="DIR", help="Fashion-MNIST folder (default $ROBUSTPROMPT_FASHION_MNIST)")
    args = ap.parse_args(argv)

    import torch

    from robustprompt.backbone.loading import image_normalisation
    from robustprompt.pretrain.evaluate import quality_report
    from robustprompt.pretrain.model import EMBEDDED_MODEL, create_model, embedded_weights_path, get_tokenizer, load_weights

    t0 = time.time()
    path = args.weights or embedded_weights_path()
    model = load_weights(create_model(EMBEDDED_MODEL), path).eval()
    tok = get_tokenizer(EMBEDDED_MODEL)
    with torch.no_grad():
        rows = quality_report(model, tok, args.fashion_mnist, fast=args.fast)
    mean, std = image_normalisation(model)
    print(f"embedded model {EMBEDDED_MODEL} ({path}), {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params")
    print(f"normalisation mean {mean} std {std}")
    print()
    print(f"| {'dataset':<22} | {'split':<26} | {'n':>5} | {'template':<32} | {'zero-shot':>9} | {'bar':>6} | pass |")
    print(f"|{'-' * 24}|{'-' * 28}|{'-' * 7}|{'-' * 34}|{'-' * 11}|{'-' * 8}|------|")
    ok = True
    for name, r in rows.items():
        bar = 0.80 if name == "fashion-mnist-clean" else 3.0 / r["classes"]
        passed = r["accuracy"] >= bar
        ok &= passed
        print(f"| {name:<22} | {r['split']:<26} | {r['n']:>5} | {r['template']:<32} | {100 * r['accuracy']:>8.1f}% "
              f"| {100 * bar:>5.1f}% | {'yes' if passed else 'NO':<4} |")
        if "accuracy_clean_style" in r:  # diagnostic: the same test images drawn in the pretraining style
            print(f"| {name:<22} | {'test, pretraining style':<26} | {r['n']:>5} | {r['template']:<32} "
                  f"| {100 * r['accuracy_clean_style']:>8.1f}% | {'':>6} | {'':<4} |")
        if "accuracy_photo_template" in r:
            print(f"| {name:<22} | {r['split']:<26} | {r['n']:>5} | {'a photo of a {}.':<32} "
                  f"| {100 * r['accuracy_photo_template']:>8.1f}% | {'':>6} | {'':<4} |")
    print(f"\n{'all bars met' if ok else 'SOME BARS MISSED'} ({time.time() - t0:.0f}s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
