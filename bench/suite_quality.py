"""Quality bars of a model on the emoji testbed suite (issue 13's "done when"), on CPU.

    .venv/bin/python bench/suite_quality.py --model robustprompt-small [--weights PATH] [--seeds 1,2,3]
        [--json bench/results/suite-quality/robustprompt-small.json]

Rows:
  - zero-shot top-1 on every suite dataset's test split (all classes, templates[0]): bar 5x chance;
  - zero-shot on each emoji-world shift variant: bar 3x chance;
  - zero-shot on the held-out-style probe (emoji-fxemoji, everyday concepts): bar 10x chance;
  - headroom: a 16-shot linear probe on the frozen image features (multinomial logistic regression,
    L2 strength picked on the val split, as CoOp's linear-probe baseline does) against zero-shot, on
    the base classes' test images, averaged over the suite and --seeds: bar +8 points.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import load  # noqa: E402


@torch.no_grad()
def features(model, images: np.ndarray, batch: int = 500) -> torch.Tensor:
    from robustprompt.pretrain.evaluate import to_model_input

    out = [torch.nn.functional.normalize(model.encode_image(to_model_input(images[i:i + batch], model)), dim=-1)
           for i in range(0, len(images), batch)]
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def text_features(model, tok, classnames, template) -> torch.Tensor:
    return torch.nn.functional.normalize(model.encode_text(tok([template.format(c) for c in classnames])), dim=-1)


def linear_probe(xtr, ytr, xva, yva, xte, n_classes: int, grid=(1e-4, 1e-3, 1e-2, 1e-1)) -> torch.Tensor:
    """Test predictions of the multinomial logistic regression whose L2 weight does best on val."""
    best = (-1.0, None)
    for wd in grid:
        torch.manual_seed(0)
        lin = torch.nn.Linear(xtr.shape[1], n_classes)
        opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=200, history_size=20, line_search_fn="strong_wolfe")
        scale = 10.0  # features are unit vectors; a fixed input scale keeps L-BFGS well conditioned

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(lin(scale * xtr), ytr) + wd * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            acc = float((lin(scale * xva).argmax(-1) == yva).float().mean())
            if acc > best[0]:
                best = (acc, lin(scale * xte).argmax(-1))
    return best[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="robustprompt-small")
    ap.add_argument("--weights", help="safetensors weights (default: the shipped ones)")
    ap.add_argument("--seeds", default="1,2,3", help="few-shot seeds of the linear probe")
    ap.add_argument("--shots", type=int, default=16)
    ap.add_argument("--datasets", help="comma-separated subset of the suite (default: all)")
    ap.add_argument("--no-shifts", action="store_true")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)

    from robustprompt.data import emoji_suite as E
    from robustprompt.data.fewshot import sample_shots
    from robustprompt.data.fewshot import base_novel_labels
    from robustprompt.pretrain.model import create_model, embedded_weights_path, get_tokenizer, load_weights

    t0 = time.time()
    torch.manual_seed(0)
    path = args.weights or embedded_weights_path(args.model)
    model = load_weights(create_model(args.model), path).eval()
    tok = get_tokenizer(args.model)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    names = args.datasets.split(",") if args.datasets else [s.name for s in E.SUITE]
    rows = []

    def zero_shot(ds, keys=None, labels=None, classnames=None):
        test = ds.test
        keys = np.array([d.key for d in test]) if keys is None else keys
        labels = torch.tensor([d.label for d in test]) if labels is None else labels
        f = features(model, ds.images[keys])
        t = text_features(model, tok, classnames or ds.classnames, ds.templates[0])
        return float(((f @ t.T).argmax(-1) == labels).float().mean()), f

    for name in names:
        ds = E.build_suite_dataset(name)
        acc, f_test = zero_shot(ds)
        row = {"dataset": name, "kind": "suite", "classes": ds.num_classes, "n_test": len(ds.test),
               "pictures": E.source_pictures(ds), "zero_shot": acc, "chance": 1 / ds.num_classes,
               "bar": 5 / ds.num_classes}
        base, _ = base_novel_labels(ds.num_classes)
        base_set = set(base)
        y_test = torch.tensor([d.label for d in ds.test])
        in_base = torch.tensor([d.label in base_set for d in ds.test])
        t_base = text_features(model, tok, [ds.classnames[k] for k in base], ds.templates[0])
        zs_base = float(((f_test[in_base] @ t_base.T).argmax(-1) == y_test[in_base]).float().mean())
        probes = []
        for seed in seeds:
            fs = sample_shots(ds, args.shots, seed)
            tr = [d for d in fs.train if d.label in base_set]
            va = [d for d in fs.val if d.label in base_set]
            xtr = features(model, ds.images[[d.key for d in tr]])
            xva = features(model, ds.images[[d.key for d in va]])
            pred = linear_probe(xtr, torch.tensor([d.label for d in tr]), xva, torch.tensor([d.label for d in va]),
                                f_test[in_base], ds.num_classes)
            probes.append(float((pred == y_test[in_base]).float().mean()))
        row.update(zero_shot_base=zs_base, linear_probe_base=float(np.mean(probes)), linear_probe_seeds=probes)
        rows.append(row)
        print(f"{name:16} {ds.num_classes:4} classes  zero-shot {100 * acc:5.1f}% ({acc * ds.num_classes:4.1f}x chance)  "
              f"base: zero-shot {100 * zs_base:5.1f}%  {args.shots}-shot probe {100 * np.mean(probes):5.1f}%  "
              f"[{time.time() - t0:.0f}s]", flush=True)
    extra = [] if args.no_shifts else ["emoji-world", *E.SHIFTS, E.PROBE]
    for name in extra:
        if name == E.PROBE:
            ds = E.build_probe()
        else:
            variant = name[len("emoji-world-"):] if name != "emoji-world" else ""
            ds = E.build_world(variant)
        acc, _ = zero_shot(ds)
        mult = 10 if name == E.PROBE else (3 if name != "emoji-world" else 5)
        rows.append({"dataset": name, "kind": "probe" if name == E.PROBE else "shift", "classes": ds.num_classes,
                     "n_test": len(ds.test), "zero_shot": acc, "chance": 1 / ds.num_classes,
                     "bar": mult / ds.num_classes})
        print(f"{name:20} {ds.num_classes:5} classes  zero-shot {100 * acc:5.1f}% ({acc * ds.num_classes:5.1f}x chance, "
              f"bar {mult}x)  [{time.time() - t0:.0f}s]", flush=True)
    suite = [r for r in rows if r["kind"] == "suite"]
    gain = float(np.mean([r["linear_probe_base"] - r["zero_shot_base"] for r in suite])) if suite else float("nan")
    ok = all(r["zero_shot"] >= r["bar"] for r in rows) and gain >= 0.08
    print(f"\nheadroom ({args.shots}-shot linear probe minus zero-shot, base classes, mean over {len(suite)} datasets "
          f"and seeds {args.seeds}): {100 * gain:+.1f} points (bar +8.0)")
    print(f"{'all bars met' if ok else 'SOME BARS MISSED'}; {time.time() - t0:.0f}s, load {load()}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": args.model, "weights": str(path), "seeds": seeds,
                                               "headroom": gain, "rows": rows, "load": load()}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
