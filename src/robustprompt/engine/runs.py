"""Loading a finished run and evaluating it again, on its own split or another."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from ..backbone import load_backbone
from ..config import RunConfig, from_dict
from ..data import prepare_dataset
from ..errors import CheckpointError
from ..methods.registry import create_method, method_config
from .evaluate import EvalSpec, evaluate
from .rundir import RunDir
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
                 batch_size: int | None = None, write: bool = True, **spec_fields) -> list[dict]:
    """Evaluate a run under each spec (default: clean accuracy on its own split) and record the results.

    `evaluate_run(run, split="novel")` is shorthand for `evaluate_run(run, [EvalSpec(split="novel")])`.
    """
    specs = list(specs) if specs else [EvalSpec(**spec_fields)]
    cfg, method = load_run(path, device)
    run = RunDir(path)
    header = {"backbone": method.backbone.identity.to_dict(), "versions": versions()}
    prepared: dict[tuple, object] = {}
    records = []
    # Writing: the run is locked for the whole evaluation (a second `eval` of it fails at once instead
    # of repeating the work), and each record is saved as soon as it is measured, so an interrupted
    # list of long attacks keeps the finished ones.
    with run.lock() if write else nullcontext():
        for spec in specs:
            dataset = spec.dataset or cfg.data.dataset
            same = dataset == cfg.data.dataset
            root = spec.root if spec.root is not None else (cfg.data.root if same else None)
            split = spec.split or cfg.data.split
            key = (dataset, root, split)
            if key not in prepared:
                prepared[key] = prepare_dataset(dataset, root, shots=cfg.data.shots if same else 0, seed=cfg.seed,
                                                split=split)
            record = evaluate(method, prepared[key], replace(spec, split=split), seed=cfg.seed,
                              batch_size=batch_size or cfg.train.eval_batch_size, device=device,
                              precision=cfg.train.precision)
            record["dataset"] = dataset
            records.append(record)
            if write:
                run.add_records(header, [record])
                run.log("eval " + describe(record))
    return records


def describe(r: dict) -> str:
    extra = "".join(f" {k}={r[k]}" for k in ("noise", "eps", "steps") if r.get(k) is not None
                    and (k != "steps" or r.get("attack")))
    return f"{r['dataset']} {r['split']} {r['metric']}{extra}: {r['value']:.4f} (n={r['n']})"
