"""Cost against class count: time per training step and peak memory for 10, 100 and 1000 classes.

    .venv/bin/python bench/class_count.py [--methods coop,maple,anprompt,naptuning] [--classes 10,100,1000]
                                          [--model ViT-B-16] [--batch 4] [--device cpu] [--threads N]
                                          [--chunk 0] [--json OUT]

Each (method, class count) runs in its own process, so that its peak memory is its own: peak RSS
(ru_maxrss, which includes the ~0.6 GB of ViT-B/16 weights) on a CPU, torch.cuda.max_memory_allocated
on a GPU. A step is the engine's own training step (`engine.train.step_loss` + backward + SGD step)
at the method's preset, on random weights (speed and memory do not depend on the values) and random
images, class names of two to three words ("class 17 object"). NAP-Tuning's step includes its
adversarial training (PGD-2, as its preset). The median of the timed steps after one warm-up step is
reported, with the load average of the machine beside it. `--chunk 256` measures the class side
encoded 256 classes at a time under activation checkpointing (train.class_chunk).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from benchlib import append_jsonl, load, read_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))


def one(method: str, n_classes: int, model: str, batch: int, device: str, chunk: int, steps: int) -> dict:
    """Measure in this process; returns the row."""
    from robustprompt.backbone import load_backbone
    from robustprompt.config import build_run_config
    from robustprompt.engine.train import step_loss
    from robustprompt.engine.schedule import build_optimizer
    from robustprompt.methods.registry import create_method, method_config

    dev = torch.device(device)
    cfg = build_run_config(method, overrides=[f"model.name={model}", "model.pretrained=random",
                                              f"train.batch_size={batch}", f"train.class_chunk={chunk}"])
    backbone = load_backbone(model, "random", device=dev)
    names = [f"class {i} object" for i in range(n_classes)]
    torch.manual_seed(0)
    m = create_method(cfg.method, backbone, names, "a photo of a {}.", method_config(cfg.method, cfg.method_cfg))
    m.train()
    params = list(m.learnable_parameters().values())
    opt = build_optimizer(cfg.train, params)
    size = backbone.image_size
    x = torch.rand(batch, 3, size, size, device=dev)
    y = torch.arange(batch, device=dev) % n_classes
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(steps + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        loss, _ = step_loss(m, cfg, False, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i > 0:
            times.append(time.perf_counter() - t)
    peak_gb = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30
    return {"method": method, "classes": n_classes, "model": model, "batch": batch, "device": device,
            "class_chunk": chunk, "step_s": round(statistics.median(times), 3), "steps_timed": len(times),
            "peak_gb": round(peak_gb, 2), "peak_kind": "cuda allocated" if dev.type == "cuda" else "process RSS",
            "load_avg": load(), "threads": torch.get_num_threads()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default="coop,maple,anprompt,naptuning")
    ap.add_argument("--classes", default="10,100,1000")
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--chunk", type=int, default=0, help="train.class_chunk (0: all classes at once, the default)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (0: 3, or 1 from 1000 classes up)")
    ap.add_argument("--json", help="append each row to this JSON-lines file (and skip rows already there)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # METHOD:CLASSES:CHUNK, run in a child process
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        method, n, chunk = args.one.split(":")
        steps = args.steps or (1 if int(n) >= 1000 else 3)
        print(json.dumps(one(method, int(n), args.model, args.batch, args.device, int(chunk), steps)))
        return 0

    done = {(r["method"], r["classes"], r["class_chunk"], r["model"], r["device"], r["batch"])
            for r in read_jsonl(args.json)}
    plan = [(m, int(c), args.chunk) for m in args.methods.split(",") for c in args.classes.split(",")]
    print(f"{'method':10} {'classes':>7} {'chunk':>5} {'step s':>8} {'peak GB':>8}  load")
    for method, n, chunk in plan:
        if (method, n, chunk, args.model, args.device, args.batch) in done:
            continue
        cmd = [sys.executable, __file__, "--one", f"{method}:{n}:{chunk}", "--model", args.model, "--batch",
               str(args.batch), "--device", args.device, "--steps", str(args.steps)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            tail = (p.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{method:10} {n:>7} {chunk:>5}  failed: {tail}")
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"{method:10} {n:>7} {chunk:>5} {r['step_s']:>8.2f} {r['peak_gb']:>8.2f}  {r['load_avg']}", flush=True)
        append_jsonl(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
