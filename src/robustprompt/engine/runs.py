"""Loading a finished run and evaluating it again, on its own split or another."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
import os
import shutil
from pathlib import Path

import torch

from ..backbone import load_backbone
from ..config import RunConfig, from_dict
from ..data import prepare_dataset
from ..errors import CheckpointError, RobustPromptError
from ..methods.registry import create_method, method_config
from .evaluate import EvalSpec, evaluate
from .rundir import CONFIG, LOG, PARTIAL, PROMPT, RESULTS, RunDir
from .train import versions


def load_run(path: str | Path, device: str | torch.device = "cpu", *, backbone=None) -> tuple[RunConfig, object]:
    """(config, method with its learnable tensors loaded strictly, backbone identity checked)."""
    run = RunDir(path).require()
    cfg = from_dict(RunConfig, run.read_config())
    tensors, meta = run.load_prompt()
    if meta.get("method") != cfg.method:
        raise CheckpointError(f"{run / 'prompt.safetensors'} holds a {meta.get('method')!r} prompt, "
                              f"the run's config says {cfg.method!r}")
    backbone = backbone or load_backbone(cfg.model.name, cfg.model.pretrained, quick_gelu=cfg.model.quick_gelu,
                                         device=device)
    backbone.share_text_prefix = cfg.train.share_text_prefix
    diff = backbone.identity.compatible_with(meta.get("backbone", {}))
    if diff:
        raise CheckpointError(f"{run.path} was trained on another backbone ({', '.join(diff)} differ: "
                              f"stored {meta.get('backbone', {}).get(diff[0])!r}, "
                              f"loaded {getattr(backbone.identity, diff[0])!r})")
    classnames = meta.get("classnames")
    if not isinstance(classnames, list) or not classnames:
        raise CheckpointError(f"{run / 'prompt.safetensors'} does not record its training classes")
    method = create_method(cfg.method, backbone, classnames, meta.get("template") or "a photo of a {}.",
                           method_config(cfg.method, cfg.method_cfg))
    method.load_learnable_state(tensors)
    return cfg, method.to(device)


def evaluate_run(path: str | Path, specs: list[EvalSpec] | None = None, *, device: str | torch.device = "cpu",
                 batch_size: int | None = None, write: bool = True, out: str | Path | None = None,
                 shard: tuple[int, int] | None = None, **spec_fields) -> list[dict]:
    """Evaluate a run under each spec (default: clean accuracy on its own split) and record the results.

    `evaluate_run(run, split="novel")` is shorthand for `evaluate_run(run, [EvalSpec(split="novel")])`.
    `out`: record into a copy of the run made there (a run in a read-only folder, or one to keep as it is).
    `shard` (k, N): attack only this process's share of the batches and keep them in RUN/.partial (no
    record; a later run without `shard` completes it). Clean and noise evaluations are not split.
    """
    specs = list(specs) if specs else [EvalSpec(**spec_fields)]
    run = RunDir(path).require()
    if write and out is not None:
        run = copy_run(run, RunDir(out))
    elif write and not run.writable():
        raise RobustPromptError(f"run directory {run.path} is not writable; pass --out DIR to record the "
                                "results in a copy of the run there, or --no-write to print them only")
    cfg, method = load_run(run.path, device)
    header = {"backbone": method.backbone.identity.to_dict(), "versions": versions()}
    prepared: dict[tuple, object] = {}
    records = []
    if shard is not None and (not write or out is not None):
        raise RobustPromptError("--shard records into the run itself; drop --no-write / --out")
    if shard is not None:
        specs = [s for s in specs if s.attack]
        if not specs:
            raise RobustPromptError("--shard splits attacked evaluations only; add --attack")
    # Writing: the run is locked for the whole evaluation (a second `eval` of it fails at once instead
    # of repeating the work), and each record is saved as soon as it is measured, so an interrupted
    # list of long attacks keeps the finished ones. Shards write only their own batch files.
    with run.lock() if write and shard is None else nullcontext():
        for spec in specs:
            dataset = spec.dataset or cfg.data.dataset
            root = spec.root if spec.root is not None else (cfg.data.root if dataset == cfg.data.dataset else None)
            same = dataset == cfg.data.dataset and _same_path(root, cfg.data.root)  # the data it trained on
            split = spec.split or cfg.data.split
            key = (dataset, root, split)
            if key not in prepared:
                prepared[key] = prepare_dataset(dataset, root, shots=cfg.data.shots if same else 0, seed=cfg.seed,
                                                split=split, eval_only=not same)
            record = evaluate(method, prepared[key], replace(spec, split=split), seed=cfg.seed,
                              batch_size=batch_size or cfg.train.eval_batch_size, device=device,
                              precision=cfg.train.precision, resume_dir=run / PARTIAL if write else None,
                              shard=shard)
            if record is None:  # this shard's batches are kept in RUN/.partial
                continue
            record["dataset"] = dataset
            records.append(record)
            if write:
                run.add_records(header, [record])
                run.log("eval " + describe(record))
    return records


def _same_path(a, b) -> bool:
    if a is None or b is None or str(a) == "" or str(b) == "":
        return (a or None) == (b or None)
    return os.path.abspath(os.path.expanduser(str(a))) == os.path.abspath(os.path.expanduser(str(b)))


def copy_run(src: RunDir, dst: RunDir) -> RunDir:
    """Copy a run's files (config, prompt, results, log; not its checkpoint) into a new or empty folder."""
    if dst.path.exists() and (not dst.path.is_dir() or any(dst.path.iterdir())):
        raise RobustPromptError(f"--out {dst.path} already exists and is not empty; choose another")
    try:
        dst.path.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG, PROMPT, RESULTS, LOG):
            if (src / name).is_file():
                shutil.copy2(src / name, dst / name)
    except OSError as e:
        shutil.rmtree(dst.path, ignore_errors=True)
        raise RobustPromptError(f"cannot write --out {dst.path}: {e.strerror}") from None
    return dst


def describe(r: dict) -> str:
    extra = "".join(f" {k}={r[k]}" for k in ("noise", "eps", "steps") if r.get(k) is not None
                    and (k != "steps" or r.get("attack")))
    return f"{r['dataset']} {r['split']} {r['metric']}{extra}: {r['value']:.4f} (n={r['n']})"
