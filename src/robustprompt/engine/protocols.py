"""The field's protocols as loops over the engine: base-to-novel, cross-dataset transfer and
adversarial robustness (on the training dataset and, with targets, across datasets).

Every (dataset, preset, seed) is one run directory `OUT/<dataset>/<preset>/seed<seed>`; a run that
is complete is not trained again and an evaluation already recorded is not repeated, so an
interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import build_run_config, list_presets
from ..errors import ConfigError
from .evaluate import EvalSpec
from .rundir import CHECKPOINT, RunDir, record_key
from .runs import evaluate_run
from .train import train


@dataclass
class ProtocolConfig:
    presets: list[str]
    datasets: list[str]
    seeds: list[int]
    out: Path
    shots: int = 16
    root: str | None = None
    model: str | None = None
    pretrained: str | None = None
    overrides: list[str] = field(default_factory=list)  # --set for every run
    device: str = "cpu"
    n_max: int | None = None  # every evaluation on a fixed seeded subset of this many test images


def run_dir(pc: ProtocolConfig, dataset: str, preset: str, seed: int) -> Path:
    return pc.out / dataset / preset / f"seed{seed}"


def _train_one(pc: ProtocolConfig, dataset: str, preset: str, seed: int, split: str, log: Callable) -> Path:
    if preset not in list_presets():
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(list_presets())}")
    values: dict = {"seed": seed, "label": preset, "data": {"dataset": dataset, "shots": pc.shots, "split": split,
                                                             "test_n_max": pc.n_max}}
    if pc.root:
        values["data"]["root"] = pc.root
    if pc.model:
        values["model"] = {"name": pc.model}
    if pc.pretrained:
        values.setdefault("model", {})["pretrained"] = pc.pretrained
    cfg = build_run_config(preset, pc.overrides, values)
    path = run_dir(pc, dataset, preset, seed)
    if not RunDir(path).complete:
        log(f"train {preset} on {dataset} ({split}), seed {seed} -> {path}")
        train(cfg, path, resume=(path / CHECKPOINT).is_dir(), device=pc.device)
    return path


def _evaluate_missing(path: Path, specs: list[EvalSpec], pc: ProtocolConfig, log: Callable) -> None:
    run = RunDir(path)
    done = {record_key(r) for r in run.read_results().get("evaluations", [])}
    data_cfg = run.read_config()["data"]
    todo = [s for s in specs if _spec_key(s, data_cfg) not in done]
    if todo:
        log(f"evaluate {path}: {len(todo)} evaluation(s)")
        evaluate_run(path, todo, device=pc.device)


def _spec_key(spec: EvalSpec, data_cfg: dict) -> tuple:
    """The results.json key the record of `spec` will have on a run with this data config."""
    from ..attacks import parse_eps
    from ..attacks.noise import parse_noise

    record = {"dataset": spec.dataset or data_cfg["dataset"], "split": spec.split or data_cfg["split"],
              "metric": spec.metric}
    if spec.attack:
        record.update(attack=spec.attack, eps=parse_eps(spec.eps)[0], steps=spec.steps)
    if spec.noise:
        record["noise"] = parse_noise(spec.noise).name
    return record_key(record)


def base_to_novel(pc: ProtocolConfig, noises: list[str] = (), log: Callable = print) -> list[Path]:
    """Train on base classes (K shots), test base and novel, clean and under each weak noise."""
    paths = []
    for dataset in pc.datasets:
        for preset in pc.presets:
            for seed in pc.seeds:
                path = _train_one(pc, dataset, preset, seed, "base", log)
                specs = [EvalSpec(split="novel", n_max=pc.n_max)] + [
                    EvalSpec(split=s, noise=n, n_max=pc.n_max) for n in noises for s in ("base", "novel")]
                _evaluate_missing(path, specs, pc, log)
                paths.append(path)
    return paths


def cross_dataset(pc: ProtocolConfig, targets: list[str], log: Callable = print) -> list[Path]:
    """Train on all classes of each source dataset (K shots); clean accuracy on every target's test
    split, all classes (the CoCoOp/MaPLe cross-dataset protocol; the source's own test split too)."""
    paths = []
    for dataset in pc.datasets:
        for preset in pc.presets:
            for seed in pc.seeds:
                path = _train_one(pc, dataset, preset, seed, "all", log)
                specs = [EvalSpec(dataset=t, split="all", n_max=pc.n_max) for t in targets if t != dataset]
                _evaluate_missing(path, specs, pc, log)
                paths.append(path)
    return paths


def robustness(pc: ProtocolConfig, eps: list[str], *, pgd_steps: int = 100, pgd_n_max: int | None = None,
               autoattack: bool = True, aa_steps: int = 100, aa_n_max: int | None = 500,
               targets: list[str] = (), log: Callable = print) -> list[Path]:
    """Train on all classes (K shots); clean, PGD and AutoAttack accuracy at each eps on the test split,
    and with `targets` the same on every target dataset's test split (robustness across datasets, as
    the NAP-Tuning journal paper and AdvMaPLe's repository evaluate it)."""
    paths = []
    for dataset in pc.datasets:
        for preset in pc.presets:
            for seed in pc.seeds:
                path = _train_one(pc, dataset, preset, seed, "all", log)
                specs = []
                for t in [None, *(t for t in targets if t != dataset)]:
                    split = "all" if t else None
                    if t:
                        specs.append(EvalSpec(dataset=t, split=split, n_max=pc.n_max))
                    specs += [EvalSpec(dataset=t, split=split, attack="pgd", eps=e, steps=pgd_steps,
                                       n_max=pgd_n_max or pc.n_max) for e in eps]
                    if autoattack:
                        specs += [EvalSpec(dataset=t, split=split, attack="autoattack", eps=e, steps=aa_steps,
                                           n_max=aa_n_max) for e in eps]
                _evaluate_missing(path, specs, pc, log)
                paths.append(path)
    return paths
