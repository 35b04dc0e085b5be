"""Speed of robustprompt against plain open_clip and against the machine's own limit.

    .venv/bin/python bench/speed.py [--models ViT-B-32,ViT-B-16,robustprompt-tiny] [--quick]
                                    [--tiny-pretrained PATH|random] [--device cpu] [--threads N]
                                    [--batch N] [--profile] [--json OUT]

Everything is measured in this one run: each timing is the median of repeated runs after warm-up,
and the two sides of a ratio are timed in alternation, so that load from other processes hits both
alike (the load average is printed with the numbers; compare runs only at similar load).
ViT-B/32 and ViT-B/16 use random weights (speed does not depend on the values); the embedded
robustprompt-tiny uses its shipped weights, or random ones while they are missing.

  a  prompted encode_image / open_clip `clip.encode_image` (on pre-normalised images), same batch,
     no grad, fp32 and bf16 autocast. Prompted = IVLP's vision prompts: 2 tokens appended at layer 0
     and replaced at the next prompted layers (9 of 12 on ViT-B). target <= 1.10.
  b  one PGD step through IVLP (class features computed once, outside the step) / one plain
     forward+backward of open_clip's image tower to its input, fp32. target <= 1.05.
  c  bf16 / fp32 throughput (speed-up) of the prompted forward and of a training step: target >= 2;
     and clean accuracy of IVLP trained on the embedded model's testbeds in fp32 and in bf16
     (the fp32-trained prompts also evaluated in bf16): within 0.5 points.
  d  CoOp epoch time without / with the image-feature cache (train.cache_image_features), through
     the engine's own `train`: shapes testbed, 16 shots x 10 classes, batch 32, no augmentation;
     target >= 10, same prompts (to float rounding) and the same accuracy.
  e  achieved FLOP/s of an IVLP training step (class features + loss + backward + SGD step; FLOPs
     counted by torch.utils.flop_counter.FlopCounterMode) as a fraction of the measured matmul peak
     (the best of square fp32 / bf16 products) of the same precision.
  f  data loading: images/s served by the training loader (in-memory testbed, augmentation on, no
     workers) against the images/s of the training step of row e: > 1 means loading is not the
     bottleneck even without workers.

  g  an adversarial training step with the half objective (IVLP, PGD-2, the AdvIVLP preset): attacking
     the whole batch (before) / only the half the objective uses (the engine now); same images.
  h  a CoCoOp training step at its preset's batch of 1, with the text forward its class context used to
     run (unused: CoCoOp's class features are built per image) / without it, as now.

`--quick` shrinks batches, repeats and epochs (for development, not for reporting).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from benchlib import load

CLASSES = ["apple", "bicycle", "cat", "dog", "house", "lamp", "mountain", "river", "ship", "tree"]
MODELS = ["ViT-B-32", "ViT-B-16", "robustprompt-tiny"]
# per model: (batch for a/b/c/e, epochs for d, test images for d's accuracy; None = all)
FULL = {"ViT-B-32": (16, 3, 160), "ViT-B-16": (4, 2, 80), "robustprompt-tiny": (64, 5, None),
        "robustprompt-test": (64, 5, None)}
QUICK = {"ViT-B-32": (8, 1, 40), "ViT-B-16": (2, 1, 20), "robustprompt-tiny": (32, 2, None),
         "robustprompt-test": (32, 2, None)}


# ---------------------------------------------------------------- timing
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(fns: dict, device, warmup: int, repeats: int, min_time: float = 0.0) -> dict:
    """Median seconds of each function, timed round-robin (A B A B ...) after `warmup` calls of each;
    at least `repeats` timings each, more (up to 100) until each function has run about `min_time` s."""
    last = 0.0
    for i in range(warmup):
        for f in fns.values():
            sync(device)
            t = time.perf_counter()
            f()
            sync(device)
            last = max(last, time.perf_counter() - t)
        if last > 1.0:  # slow calls (ViT-B on a CPU): one warm-up is enough
            break
    if min_time and last > 0:
        repeats = max(repeats, min(100, int(min_time / last) + 1))
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            sync(device)
            t = time.perf_counter()
            f()
            sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def autocast(precision, device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def profile(title, fn, device, rows=12):
    from torch.profiler import ProfilerActivity, profile as torch_profile

    fn()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        fn()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n--- profile: {title}")
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


# ---------------------------------------------------------------- machine
def machine(device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": str(device)}
    try:
        import open_clip

        info["open_clip"] = open_clip.__version__
    except ImportError:
        pass
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")), "?")
        flags = set(next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), []))
        info["cpu"] = name
        info["isa"] = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags)
    except OSError:
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info



def matmul_peak(device, precision, quick) -> float:
    """Best FLOP/s of square products (2 n^3 FLOPs each)."""
    best = 0.0
    sizes = (1024, 2048) if quick else (2048, 4096)
    for n in sizes:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        t = alternate({"mm": lambda: torch.mm(a, b)}, device, 1, 3 if quick else 5)["mm"]
        best = max(best, 2 * n**3 / t)
    return best


# ---------------------------------------------------------------- rows
class Table:
    def __init__(self):
        self.rows = []

    def add(self, model, key, what, value, unit="", target="", ok=None, note=""):
        row = {"model": model, "row": key, "measure": what, "value": value, "unit": unit, "target": target,
               "met": ok, "note": note}
        self.rows.append(row)
        print(f"  {key:2s} {what:58s} {fmt(value):>9s} {unit:7s} {target:8s} "
              f"{'' if ok is None else ('MET' if ok else 'MISSED'):6s} {note}", flush=True)

    def print(self):
        print("\n" + "=" * 120)
        print(f"{'model':18s} {'':2s} {'measure':58s} {'value':>9s} {'unit':7s} {'target':8s} status")
        print("-" * 120)
        for r in self.rows:
            status = "" if r["met"] is None else ("MET" if r["met"] else "MISSED")
            print(f"{r['model']:18s} {r['row']:2s} {r['measure']:58s} {fmt(r['value']):>9s} {r['unit']:7s} "
                  f"{r['target']:8s} {status:6s} {r['note']}")
        print("=" * 120)


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


# ---------------------------------------------------------------- measurements
def tower_rows(t: Table, name, pretrained, device, batch, quick, do_profile, peaks, rows, repeats=None):
    from robustprompt.attacks import pgd
    from robustprompt.backbone import load_backbone
    from robustprompt.config import build_run_config
    from robustprompt.engine.train import step_loss
    from robustprompt.methods.registry import create_method

    warm, reps, min_time = (1, 3, 0.5) if quick else (2, 5, 3.0)
    reps = repeats or reps
    torch.manual_seed(0)
    backbone = load_backbone(name, pretrained, device=device)
    clip = backbone.clip
    method = create_method("ivlp", backbone, CLASSES, "a photo of a {}.", {}).to(device)
    g = torch.Generator().manual_seed(0)
    S = backbone.image_size
    x = torch.rand(batch, 3, S, S, generator=g).to(device)
    y = torch.randint(0, len(CLASSES), (batch,), generator=g).to(device)
    xn = backbone.normalize(x)
    edits = method.vision_edits()
    depth = len(edits.layers)
    n_tok = (S // backbone.visual.conv1.stride[0]) ** 2 + 1
    tokens = f"tokens {n_tok + method.config.n_ctx_vision}/{n_tok} = {(n_tok + method.config.n_ctx_vision) / n_tok:.3f}"
    print(f"  batch {batch}, {S}px, vision tower {backbone.vision_layers} layers x {backbone.vision_width}; "
          f"IVLP vision prompts: {method.config.n_ctx_vision} tokens at {depth} layers; load {load()}", flush=True)

    # a: prompted encode_image / plain open_clip encode_image
    fwd = {}
    if "a" in rows:
        for precision in ("fp32", "bf16"):
            def plain():
                with torch.no_grad(), autocast(precision, device):
                    return clip.encode_image(xn)

            def ours():
                with torch.no_grad(), autocast(precision, device):
                    return backbone.encode_image(x)

            def prompted():
                with torch.no_grad(), autocast(precision, device):
                    return method.image_features(x)

            r = alternate({"plain": plain, "ours": ours, "prompted": prompted}, device, warm, reps, min_time)
            fwd[precision] = r
            t.add(name, "a", f"prompted / open_clip encode_image, {precision}", r["prompted"] / r["plain"], "x",
                  "<= 1.10", r["prompted"] / r["plain"] <= 1.10,
                  f"{batch / r['prompted']:.1f} vs {batch / r['plain']:.1f} img/s; {tokens}")
            t.add(name, "a", f"  unprompted PromptableCLIP / open_clip, {precision}", r["ours"] / r["plain"], "x",
                  note="(normalisation inside; no extra tokens)")
            if do_profile and precision == "fp32":
                profile(f"{name} a: prompted forward fp32", prompted, device)
                profile(f"{name} a: open_clip forward fp32", plain, device)

    # b: one PGD step through the prompted method / plain forward+backward of the image tower
    if "b" in rows:
        with torch.no_grad():
            ctx = method.class_context()

        def pgd_step():
            return pgd(lambda z: method(z, ctx), x, y, "1/255", alpha=1 / 255, steps=1, random_start=False)

        def plain_fb():
            z = xn.detach().requires_grad_(True)
            (gz,) = torch.autograd.grad(clip.encode_image(z).sum(), [z])
            return gz

        def prompted_fb():
            z = x.detach().requires_grad_(True)
            (gz,) = torch.autograd.grad(method.image_features(z).sum(), [z])
            return gz

        r = alternate({"pgd": pgd_step, "plain": plain_fb, "prompted": prompted_fb}, device, warm, reps, min_time)
        t.add(name, "b", "one PGD step (IVLP, cached ctx) / open_clip fwd+bwd, fp32", r["pgd"] / r["plain"], "x",
              "<= 1.05", r["pgd"] / r["plain"] <= 1.05, f"{r['pgd'] * 1e3:.0f} vs {r['plain'] * 1e3:.0f} ms; {tokens}")
        t.add(name, "b", "  one PGD step / prompted tower fwd+bwd (the attack's own cost)", r["pgd"] / r["prompted"],
              "x", note="logits, loss, sign step, projection")
        if do_profile:
            profile(f"{name} b: one PGD step fp32", pgd_step, device)
            profile(f"{name} b: open_clip fwd+bwd fp32", plain_fb, device)

    # g: adversarial training with the half objective (AdvIVLP's preset: PGD-2): the engine attacks only
    # the half it uses, where it used to attack the whole batch
    if "g" in rows:
        from robustprompt.config import AdversarialConfig
        from robustprompt.engine.adversarial import adversarial_images, adversarial_loss

        adv_cfg = AdversarialConfig(enabled=True, eps="1/255", alpha="1/255", steps=2, loss="half")

        def whole_batch():
            ctx = method.class_context()
            adv = pgd(lambda z: method(z, ctx), x, y, "1/255", alpha=1 / 255, steps=2)
            loss, _ = adversarial_loss(method, x, adv, y, ctx, "half")
            loss.backward()

        def half_batch():
            ctx = method.class_context()
            adv = adversarial_images(method, x, y, ctx, adv_cfg)
            loss, _ = adversarial_loss(method, x, adv, y, ctx, "half")
            loss.backward()

        r = alternate({"whole": whole_batch, "half": half_batch}, device, warm, reps, min_time)
        t.add(name, "g", "adversarial training step, half objective: attack the whole batch / only its "
              "adversarial half", r["whole"] / r["half"], "x", note=f"{r['whole'] * 1e3:.0f} vs {r['half'] * 1e3:.0f} "
              f"ms; IVLP, PGD-2, batch {x.shape[0]}, fp32; same images (tests/test_adversarial_methods.py)")

    # h: a CoCoOp training step at its preset's batch of 1: the class context used to run a text forward
    # over every class that nothing read (CoCoOp builds class features per image)
    if "h" in rows:
        cocoop = create_method("cocoop", backbone, CLASSES, "a photo of a {}.", {}).to(device).train()
        x1, y1 = x[:1], y[:1]

        def cocoop_step(with_unused_text_forward):
            def step():
                ctx = cocoop.class_context()
                if with_unused_text_forward:  # what the class context used to run
                    cocoop.backbone.text(*cocoop.prompt.embeddings(ctx.classnames))
                loss, _ = cocoop.loss(x1, y1, ctx)
                loss.backward()
            return step

        r = alternate({"before": cocoop_step(True), "now": cocoop_step(False)}, device, warm, reps, min_time)
        t.add(name, "h", "CoCoOp training step, batch 1: with the unused class-context text forward / without",
              r["before"] / r["now"], "x", note=f"{r['before'] * 1e3:.0f} vs {r['now'] * 1e3:.0f} ms; {len(CLASSES)} classes, fp32")

    # e (and c): an engine training step of IVLP, fp32 and bf16
    steps, flops = {}, {}
    if "e" in rows:
        params = list(method.learnable_parameters().values())
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        for precision in ("fp32", "bf16"):
            cfg = build_run_config("ivlp", values={"train": {"precision": precision}})

            def train_step():
                loss, _ = step_loss(method, cfg, False, x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as fc:
                train_step()
            flops[precision] = fc.get_total_flops()
            steps[precision] = alternate({"step": train_step}, device, warm, reps, min_time)["step"]
            achieved = flops[precision] / steps[precision]
            t.add(name, "e", f"training step FLOP/s / matmul peak, {precision}", achieved / peaks[precision], "of peak",
                  note=f"{flops[precision] / 1e9:.1f} GFLOP in {steps[precision] * 1e3:.0f} ms = "
                       f"{achieved / 1e9:.0f} GFLOP/s; peak {peaks[precision] / 1e9:.0f}")
            if do_profile:
                profile(f"{name} e: training step {precision}", train_step, device)

    # c: bf16 / fp32 throughput
    if fwd and len(steps) == 2:
        sp_fwd = fwd["fp32"]["prompted"] / fwd["bf16"]["prompted"]
        sp_step = steps["fp32"] / steps["bf16"]
        t.add(name, "c", "bf16 / fp32 throughput, prompted forward", sp_fwd, "x", ">= 2", sp_fwd >= 2)
        t.add(name, "c", "bf16 / fp32 throughput, IVLP training step", sp_step, "x", ">= 2", sp_step >= 2)

    # f: data loading: images/s the training loader serves (in-memory testbed, main process, with the
    # training augmentation) against the images/s of the training step above
    if "f" in rows and "fp32" in steps:
        from robustprompt.data import ImageDataset, prepare_dataset
        from robustprompt.data.transforms import train_transform
        from torch.utils.data import DataLoader

        data = prepare_dataset("shapes", None, shots=16, seed=1, split="all")
        loader = DataLoader(ImageDataset(data.train, train_transform(S, (0.5, 1.0)), data.images), batch_size=32,
                            shuffle=True, num_workers=0)
        t0 = time.perf_counter()
        n = sum(len(yb) for _, yb in loader)
        served = n / (time.perf_counter() - t0)
        used = batch / steps["fp32"]
        t.add(name, "f", "data: loader img/s (0 workers) / training-step img/s", served / used, "x", "> 1",
              served > used, f"{served:.0f} vs {used:.1f} img/s")

    print(f"  load {load()}", flush=True)


def accuracy_rows(t: Table, name, pretrained, device, quick):
    """c: clean accuracy of IVLP trained in fp32 and in bf16 on the testbeds (embedded model)."""
    from robustprompt.config import build_run_config
    from robustprompt.engine import EvalSpec, build, evaluate, train

    datasets = ["shapes"] if quick else ["shapes", "colors"]
    for ds in datasets:
        accs = {}
        with tempfile.TemporaryDirectory() as tmp:
            for precision, seed in (("fp32", 1), ("bf16", 1), ("fp32 seed 2", 2)):
                cfg = build_run_config("ivlp", values={
                    "seed": seed, "model": {"name": name, "pretrained": pretrained},
                    "data": {"dataset": ds, "shots": 16, "split": "all"},
                    "train": {"precision": precision.split()[0], "epochs": 2 if quick else 5}})
                s = build(cfg, device)
                res = train(cfg, Path(tmp) / precision.replace(" ", "-"), setup=s, device=device)
                accs[precision] = res["evaluations"][0]["value"]
                if precision == "fp32":
                    accs["fp32->bf16"] = evaluate(s.method, s.data, EvalSpec(split="all"), seed=cfg.seed,
                                                  device=device, precision="bf16")["value"]
                n = res["evaluations"][0]["n"]
        for key, label in (("fp32->bf16", "fp32 prompts evaluated in bf16"), ("bf16", "trained and evaluated in bf16"),
                           ("fp32 seed 2", "(noise floor) fp32 trained with seed 2")):
            diff = 100 * (accs[key] - accs["fp32"])
            target = "" if "seed" in key else "|d|<=0.5"
            t.add(name, "c", f"clean acc, {ds}: {label} - fp32", diff, "points", target,
                  None if "seed" in key else abs(diff) <= 0.5,
                  f"{100 * accs[key]:.2f} vs {100 * accs['fp32']:.2f} % of {n}")


def cache_rows(t: Table, name, pretrained, device, epochs, n_test, quick):
    """d: CoOp epoch time with / without the image-feature cache, through the engine's `train`.

    Epoch times are read from the moments the engine logs each epoch (RunDir.log is wrapped here to
    note the clock), so the one-off feature pass is measured inside the same run, not subtracted."""
    from robustprompt.config import build_run_config
    from robustprompt.engine import EvalSpec, RunDir, build, evaluate, train

    marks: list = []
    original_log = RunDir.log

    def timed_log(self, line):
        marks.append((time.perf_counter(), line))
        return original_log(self, line)

    out = {}
    RunDir.log = timed_log
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for cache in (False, True):
                cfg = build_run_config("coop", values={
                    "model": {"name": name, "pretrained": pretrained},
                    "data": {"dataset": "shapes", "shots": 16, "split": "all", "train_augment": False},
                    "train": {"epochs": epochs + 1, "batch_size": 32, "cache_image_features": cache}})
                s = build(cfg, device)
                marks.clear()
                t0 = time.perf_counter()
                train(cfg, Path(tmp) / str(cache), setup=s, device=device, stop_after_epochs=epochs)
                wall = time.perf_counter() - t0
                starts = [m for m, line in marks if line.startswith(("train ", "cached "))]
                ends = [m for m, line in marks if line.startswith("epoch ")]
                bounds = [starts[-1]] + ends
                per_epoch = [b - a for a, b in zip(bounds, bounds[1:])]
                feature_pass = starts[-1] - starts[0] if cache else 0.0
                acc = evaluate(s.method, s.data, EvalSpec(split="all", n_max=n_test), seed=1, device=device)
                out[cache] = {"wall": wall, "epoch": statistics.median(per_epoch), "pass": feature_pass,
                              "state": s.method.learnable_state(), "acc": acc}
    finally:
        RunDir.log = original_log
    plain, cached = out[False]["epoch"], out[True]["epoch"]
    diff = max((out[True]["state"][k] - out[False]["state"][k]).abs().max().item() for k in out[True]["state"])
    same_acc = out[True]["acc"]["value"] == out[False]["acc"]["value"]
    t.add(name, "d", "CoOp epoch: uncached / cached", plain / cached, "x", ">= 10", plain / cached >= 10,
          f"{plain:.2f} s vs {cached:.3f} s per epoch (160 images, 10 classes, batch 32; median of {epochs})")
    t.add(name, "d", f"  {epochs}-epoch training incl. the one-off feature pass", out[False]["wall"] / out[True]["wall"],
          "x", note=f"feature pass {out[True]['pass']:.2f} s")
    t.add(name, "d", "  same results: max |prompt diff|, accuracy equal", diff, "", "<=1e-5",
          diff <= 1e-5 and same_acc,
          f"acc {100 * out[True]['acc']['value']:.2f} vs {100 * out[False]['acc']['value']:.2f} % "
          f"(n={out[True]['acc']['n']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated (default {','.join(MODELS)})")
    ap.add_argument("--quick", action="store_true", help="small batches, few repeats (development only)")
    ap.add_argument("--tiny-pretrained", help="robustprompt-tiny weights: a file, or 'random' "
                                              "(default: shipped weights, else random)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    ap.add_argument("--skip", default="", help="comma-separated rows to skip: a,b,c,d,e,f,g,h")
    ap.add_argument("--batch", type=int, help="batch of rows a, b, e for every model (default: per model, "
                                              "sized for a CPU)")
    ap.add_argument("--repeats", type=int, help="at least this many timings per measurement (default 5; quick 3)")
    ap.add_argument("--profile", action="store_true", help="print torch.profiler top ops for rows a, b, e")
    ap.add_argument("--json", metavar="OUT", help="also write rows and machine info as JSON")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = torch.device(args.device)
    skip = set(filter(None, args.skip.split(",")))
    sizes = QUICK if args.quick else FULL
    info = machine(device)
    t_start = time.time()
    print("robustprompt speed benchmark" + (" (--quick)" if args.quick else ""))
    print("  " + "; ".join(f"{k} {v}" for k, v in info.items()))
    print(f"  load average (1/5/15 min) at start: {load()}")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5:
        print("  WARNING: other processes are using the CPU; timings are noisy (and slow if threads are "
              "oversubscribed: pass --threads)")
    if device.type == "cpu":
        print(f"  mkldnn bf16 supported: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")

    peaks = {p: matmul_peak(device, p, args.quick) for p in ("fp32", "bf16")}
    print(f"  matmul peak: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s "
          f"(bf16/fp32 {peaks['bf16'] / peaks['fp32']:.2f}x: the ceiling of row c)", flush=True)

    t = Table()
    t.add("machine", "e", "matmul peak bf16 / fp32", peaks["bf16"] / peaks["fp32"], "x",
          note=f"fp32 {peaks['fp32'] / 1e9:.0f}, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    from robustprompt.backbone.loading import shipped_weights

    for name in filter(None, args.models.split(",")):
        batch, epochs, n_test = sizes.get(name, sizes["ViT-B-32"])
        batch = args.batch or batch
        pretrained = "random"
        if name == "robustprompt-tiny":
            pretrained = args.tiny_pretrained or (None if shipped_weights(name) else "random")
        shown = pretrained or "embedded"
        print(f"\n[{name}] weights: {shown}", flush=True)
        rows = {"a", "b", "e", "f", "g", "h"} - skip
        if rows - {"f"}:  # f needs the training step of e
            tower_rows(t, name, pretrained, device, batch, args.quick, args.profile, peaks, rows, args.repeats)
        if "c" not in skip and name.startswith("robustprompt-"):
            accuracy_rows(t, name, pretrained, device, args.quick)
        if "d" not in skip:
            cache_rows(t, name, pretrained, device, epochs, n_test, args.quick)
        if name == "robustprompt-tiny" and shown == "random":
            for r in t.rows:
                if r["model"] == name and r["row"] == "c" and "acc" in r["measure"]:
                    r["note"] += " [random weights]"

    t.print()
    print(f"load average at end: {load()}; wall {time.time() - t_start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "peaks": peaks, "rows": t.rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
