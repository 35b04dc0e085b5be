"""Loading a finished run and evaluating it again, on its own split or another."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..backbone import load_backbone
from ..config import RunConfig, from_dict
from ..data import prepare_dataset
from ..errors import CheckpointError
from ..methods.registry import create_method, method_config
from .evaluate import evaluate_accuracy
from .rundir import RunDir
from .train import Setup, run_header


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


def evaluate_run(path: str | Path, *, split: str | None = None, dataset: str | None = None,
                 root: str | None = None, device: str | torch.device = "cpu", batch_size: int | None = None,
                 write: bool = True) -> list[dict]:
    """Clean accuracy of a run on the test split of `split` classes of `dataset` (defaults: the run's)."""
    cfg, method = load_run(path, device)
    data_cfg = replace(cfg.data, dataset=dataset or cfg.data.dataset,
                       root=root if root is not None else (cfg.data.root if dataset in (None, cfg.data.dataset) else None),
                       split=split or cfg.data.split)
    data = prepare_dataset(data_cfg.dataset, data_cfg.root, shots=data_cfg.shots, seed=cfg.seed, split=data_cfg.split)
    acc = evaluate_accuracy(method, data.test, data.images, data.classnames,
                            batch_size=batch_size or cfg.train.eval_batch_size, device=device,
                            precision=cfg.train.precision)
    records = [{"dataset": data_cfg.dataset, "split": data_cfg.split, "metric": "clean_acc",
                "value": acc["accuracy"], "n": acc["n"]}]
    if write:
        run = RunDir(path)
        with run.lock():
            setup = Setup(cfg, method.backbone, data, method, torch.device(device))
            header = {k: v for k, v in run_header(setup).items() if k != "run"}
            run.add_records(header, records)
            run.log(f"eval {data_cfg.dataset}/{data_cfg.split}: accuracy {acc['accuracy']:.4f} on {acc['n']} images")
    return records
