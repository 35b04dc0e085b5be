"""What one model evaluation costs an attack: ms per image, by batch size, threads and compilation.

    .venv/bin/python bench/forward_cost.py [--model robustprompt-small] [--dataset emoji-animals]
        [--batches 5,45,200] [--threads 1,2] [--compile] [--repeats 5] [--json OUT]

The classifier is the one `bench/autoattack_reference.py` attacks (zero-shot, class features
computed once). For each thread count and batch size it times a forward pass (no gradient) and a
forward+backward to the input (what APGD and FAB run per iteration), median of `--repeats` calls
after one warm-up call. `--compile` adds `torch.compile` (inductor, static shapes) beside eager at
the largest thread count, with the largest logit difference from eager and each shape's compile
time. The attacks' cost on images that stay robust is a fixed number of these evaluations
(docs/performance.md, "Not 3x on robust images"), so this is the ceiling of what any scheduling of
the attacks can gain.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from autoattack_reference import classifier_and_data
from benchlib import append_jsonl, load


def forward(fn, x):
    with torch.no_grad():
        return fn(x)


def forward_backward(fn, x):
    x = x.clone().requires_grad_(True)
    fn(x).logsumexp(1).sum().backward()
    return x.grad


def ms_per_image(call, fn, x, repeats: int) -> tuple[float, float]:
    """(median ms per image, seconds of the first call: warm-up, or compilation)."""
    t = time.perf_counter()
    call(fn, x)
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call(fn, x)
        times.append(time.perf_counter() - t)
    return statistics.median(times) / len(x) * 1e3, first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="robustprompt-small")
    ap.add_argument("--dataset", default="emoji-animals")
    ap.add_argument("--batches", default="5,45,200", help="comma-separated batch sizes")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile at the largest thread count")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="append the result as one JSON line")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]

    torch.manual_seed(0)
    fn, x_one, _ = classifier_and_data(model=args.model, dataset=args.dataset, n=1)
    size = x_one.shape[-1]
    variants = [(t, "eager", fn) for t in threads]
    if args.compile:
        variants.append((max(threads), "compile", torch.compile(fn, dynamic=False)))
    print(f"{args.model}, {args.dataset}, load average {load()} (before)")
    print(f"{'threads':>7} {'mode':>8} {'batch':>5} {'fwd ms/img':>10} {'fwd+bwd ms/img':>14} {'first call s':>12}")
    rows = []
    for n_threads, mode, f in variants:
        torch.set_num_threads(n_threads)
        for bs in batches:
            x = torch.rand(bs, 3, size, size, generator=torch.Generator().manual_seed(bs))
            fwd, first = ms_per_image(forward, f, x, args.repeats)
            fwd_bwd, first_bwd = ms_per_image(forward_backward, f, x, args.repeats)
            row = {"threads": n_threads, "mode": mode, "batch": bs, "fwd_ms_per_image": round(fwd, 3),
                   "fwd_bwd_ms_per_image": round(fwd_bwd, 3), "first_call_s": round(first + first_bwd, 2)}
            if mode == "compile":
                row["max_abs_logit_diff"] = float((forward(f, x) - forward(fn, x)).abs().max())
            rows.append(row)
            print(f"{n_threads:>7} {mode:>8} {bs:>5} {fwd:>10.3f} {fwd_bwd:>14.3f} {first + first_bwd:>12.2f}"
                  + (f"   max |logit diff| {row['max_abs_logit_diff']:.1e}" if mode == "compile" else ""))
    machine_load = load()
    print(f"load average {machine_load} (after)")
    append_jsonl(args.json, {"model": args.model, "dataset": args.dataset, "load_avg": machine_load, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
