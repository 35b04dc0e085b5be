"""The one evaluation loop: clean, weak-noise and adversarial accuracy of a method.

Class features are computed once per evaluation (`method.class_context`) and closed over by the
classifier that attacks see, so no attack step ever recomputes them. Attacks run in fp32.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from ..data import ImageDataset
from ..data.transforms import eval_transform
from ..errors import ConfigError
from .seeding import derive_seed, generator

ATTACKS = ("pgd", "autoattack")


@dataclass(frozen=True)
class EvalSpec:
    """One evaluation: which classes, and under which perturbation (none, one noise, or one attack)."""

    split: Optional[str] = None  # base | novel | all; None = the run's own
    dataset: Optional[str] = None  # None = the run's own
    root: Optional[str] = None
    noise: Optional[str] = None  # e.g. "gaussian:0.02", "typo:0.1"
    attack: Optional[str] = None  # pgd | autoattack
    eps: Optional[str] = None  # "1/255"
    steps: int = 100  # PGD steps / APGD iterations
    n_max: Optional[int] = None  # evaluate on the first n_max test images of a seeded permutation

    def __post_init__(self):
        if self.attack is not None:
            if self.attack not in ATTACKS:
                raise ConfigError(f"unknown attack {self.attack!r}; choose from {', '.join(ATTACKS)}")
            if self.eps is None:
                raise ConfigError(f"attack {self.attack} needs --eps")
            if self.noise is not None:
                raise ConfigError("an evaluation takes a noise or an attack, not both")
        if self.eps is not None:
            from ..attacks import parse_eps

            name, value = parse_eps(self.eps)
            if not 0 <= value <= 1:
                raise ConfigError(f"eps must be in [0, 1], got {self.eps}")
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")
        if self.n_max is not None and self.n_max < 1:
            raise ConfigError(f"n_max must be >= 1, got {self.n_max}")
        if self.noise is not None:
            from ..attacks.noise import TextNoise, parse_noise

            spec = parse_noise(self.noise)
            if isinstance(spec, TextNoise) and spec.kind != "typo":
                raise ConfigError(f"text noise {spec.name!r} is not supported in evaluation; use typo:RATE")

    @property
    def metric(self) -> str:
        return f"{self.attack}_acc" if self.attack else ("noise_acc" if self.noise else "clean_acc")


def eval_loader(items, images, resolution: int, batch_size: int, num_workers: int = 0,
                batches: list[int] | None = None) -> DataLoader:
    """Batches of `batch_size` items in order; `batches`: only these batch indices (their images alone are read)."""
    dataset = ImageDataset(items, eval_transform(resolution), images)
    if batches is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    sampler = [list(range(i * batch_size, min((i + 1) * batch_size, len(items)))) for i in batches]
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers)


def subset(items, n_max: int | None, seed: int):
    if n_max is None or n_max >= len(items):
        return list(items)
    g = generator(derive_seed(seed, "eval-subset"))
    keep = sorted(torch.randperm(len(items), generator=g)[:n_max].tolist())
    return [items[i] for i in keep]


def items_digest(items) -> str:
    """sha256 naming a list of test images (label and the last two path parts, or the in-memory row), so
    that two records can be paired image by image only when they were measured on the same images."""
    import hashlib

    lines = [f"{d.label}\t{'/'.join(d.path.replace(os.sep, '/').split('/')[-2:]) if d.path else f'#{d.key}'}"
             for d in items]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def evaluate(method, data, spec: EvalSpec = EvalSpec(), *, seed: int = 1, batch_size: int = 256,
             device="cpu", precision: str = "fp32", dist=None, resume_dir: Path | None = None,
             shard: tuple[int, int] | None = None) -> dict | None:
    """A results.json record for `spec` on the test split of `data` (a DatasetSplits).

    `resume_dir`: an attacked evaluation keeps each finished batch there (its per-image results,
    AutoAttack counts, sanity checks), so that a rerun after an interruption attacks only the batches
    not done yet; a batch's attack is seeded by its index, so the record is the same as an
    uninterrupted run's. Inside a batch, AutoAttack keeps its state after each finished attack, so an
    interruption costs at most the attack that was running. The files are removed once the record is
    complete.
    `shard` (k, N) with `resume_dir`: attack only the batches i with i % N == k and keep them there;
    returns None. N processes (or devices) with k = 0 .. N-1 split an evaluation this way, and a run
    without `shard` then finds every batch done and makes the record.

    With `dist` (engine.distributed.Dist, several processes) each process evaluates every N-th test
    image and the counts are summed: the same clean/noise accuracy as one process; attacks draw their
    random starts per local batch, so attacked accuracy is the same attack with other random starts.
    """
    from ..attacks.noise import ImageNoise, TextNoise, apply_image_noise, parse_noise
    from .progress import progress
    from .precision import autocast

    device = torch.device(device)
    method.eval()
    noise = parse_noise(spec.noise) if spec.noise else None
    classnames = list(data.classnames)
    if isinstance(noise, TextNoise):
        classnames = noise.names(classnames, seed=seed)
    with torch.no_grad(), autocast(precision, device):
        ctx = method.class_context(classnames)
    items = subset(data.test, spec.n_max, seed)
    all_items = items
    if dist is not None and dist.enabled:
        items = dist.shard(items)
    noise_gen = generator(derive_seed(seed, "noise", spec.noise))

    def classifier(x):
        return method(x, ctx)

    batch_flags: dict[int, str] = {}  # per batch, per test image in `items` order: "1" correct, "0" not
    extra: dict = {}
    sanity = None
    store = None
    if resume_dir is not None and spec.attack and not (dist is not None and dist.enabled):
        # the data is named by data.name and the items digest, so a spec naming the run's own dataset
        # (eval --dataset D) shares its batches with one that leaves it implicit (bench)
        key_spec = replace(spec, dataset=None, root=None)
        store = BatchStore(resume_dir, {"spec": repr(key_spec), "items": items_digest(all_items), "seed": seed,
                                        "batch_size": batch_size, "dataset": data.name})
    if shard is not None and store is None:
        raise ConfigError("splitting an evaluation (shard) needs an attack and a writable run directory")
    todo = []
    for i in range(-(-len(items) // batch_size)):
        if shard is not None and i % shard[1] != shard[0]:
            continue  # another process's batch
        done = store.get(i) if store is not None else None
        if done is None:
            todo.append(i)
            continue
        batch_flags[i] = done["flags"]  # measured before an interruption
        if done.get("aa"):
            _merge_aa_report(extra, done["aa"])
        sanity = done.get("sanity", sanity)
    if batch_flags:
        print(f"robustprompt: {spec.metric}: {len(batch_flags)} of {len(batch_flags) + len(todo)} batches done before "
              f"(kept in {resume_dir}), {len(todo)} to attack", file=sys.stderr, flush=True)
    loader = eval_loader(items, data.images, method.backbone.image_size, batch_size, batches=todo)
    bar = progress(loader, desc=spec.metric)
    for i, (x, y) in zip(todo, bar):
        x, y = x.to(device), y.to(device)
        if isinstance(noise, ImageNoise):
            x = apply_image_noise(x, noise, generator=noise_gen)
        x_clean = x
        aa_report = None
        if spec.attack == "pgd":
            from ..attacks import pgd

            # keep="worst": per image the most damaging iterate, so more steps never raise accuracy
            x = pgd(classifier, x, y, spec.eps, steps=spec.steps, keep="worst",
                    generator=generator(derive_seed(seed, "pgd", spec.eps, i)))
        elif spec.attack == "autoattack":
            from ..attacks import autoattack

            result = autoattack(classifier, x, y, spec.eps, n_iter=spec.steps, seed=derive_seed(seed, "aa", i),
                                on_stage=lambda text: bar.set_postfix(attack=text),
                                checkpoint=store.stages(i) if store is not None else None)
            x = result.adv
            aa_report = result.report
            _merge_aa_report(extra, result.report)
        if spec.attack and i == 0 and (dist is None or dist.is_main):  # once, by the process that writes
            sanity = _sanity(classifier, x_clean, y, spec.eps, aa_report, seed, _zero_shot_surrogate(method, classnames))
        with torch.no_grad(), autocast(precision if spec.attack is None else "fp32", device):
            pred = classifier(x).argmax(-1)
        batch_flags[i] = "".join("1" if h else "0" for h in (pred == y).cpu().tolist())
        if store is not None:
            store.put(i, {"flags": batch_flags[i], "aa": aa_report and {"broken_by": aa_report.get("broken_by"),
                                                                         "settings": aa_report.get("settings")},
                          **({"sanity": sanity} if i == 0 and sanity is not None else {})})
    if shard is not None:
        return None
    per_image = "".join(batch_flags[i] for i in sorted(batch_flags))
    correct, n = per_image.count("1"), len(per_image)
    if dist is not None and dist.enabled:
        correct, n = (int(v) for v in dist.sum(correct, n))
        merged = [""] * len(all_items)
        for rank, part in enumerate(dist.gather_objects(per_image)):  # rank r holds items r, r+W, ...
            merged[rank :: dist.world_size] = list(part)
        per_image = "".join(merged)
        if spec.attack == "autoattack":
            extra = _gather_aa_reports(dist, extra)
    record = {"dataset": data.name, "split": spec.split, "metric": spec.metric, "value": correct / max(n, 1), "n": n,
              "correct": per_image, "items_sha256": items_digest(all_items)}
    if noise is not None:
        record["noise"] = noise.name
    if spec.attack:
        from ..attacks import IMPLEMENTATION, parse_eps

        name, value = parse_eps(spec.eps)
        record.update({"attack": spec.attack, "eps": name, "eps_value": value, "steps": spec.steps,
                       "norm": "Linf", "implementation": IMPLEMENTATION})
        if extra:
            record["autoattack"] = extra
        if sanity is not None:
            record["sanity"] = sanity
    if store is not None:
        store.clear()
    return record


class BatchStore:
    """Finished batches of one attacked evaluation: RESUME_DIR/<key>/<batch>.json, one file per batch
    (written atomically), so that several processes working on one evaluation never write one file."""

    def __init__(self, folder: Path, identity: dict):
        import hashlib
        import json

        self.root = Path(folder)
        self.path = self.root / hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]

    def get(self, i: int) -> dict | None:
        import json

        try:
            return json.loads((self.path / f"{i}.json").read_text())
        except (OSError, ValueError):
            return None  # not done (or torn: done again)

    def put(self, i: int, entry: dict) -> None:
        import json

        from ..atomic import atomic_write_text

        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / f"{i}.json", json.dumps(entry))
        (self.path / f"{i}.stages.safetensors").unlink(missing_ok=True)

    def stages(self, i: int) -> "_BatchStages":
        """Where batch i's AutoAttack keeps its state after each finished attack."""
        return _BatchStages(self.path / f"{i}.stages.safetensors")

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)
        try:
            self.root.rmdir()  # when no other evaluation is pending
        except OSError:
            pass


class _BatchStages:
    """One batch's AutoAttack state after its last finished attack (attacks.StageCheckpoint), as safetensors
    with JSON metadata, so that a batch interrupted during a later attack resumes there."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> tuple[dict, dict] | None:
        import json

        from ..errors import CheckpointError
        from .rundir import load_tensors

        if not self.path.is_file():
            return None
        try:
            tensors, meta = load_tensors(self.path)
            return tensors, json.loads(meta["state"])
        except (CheckpointError, KeyError, ValueError):
            return None  # torn or foreign: the batch's attacks run again

    def save(self, tensors: dict, meta: dict) -> None:
        import json

        from .rundir import atomic_save_tensors

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_tensors(self.path, tensors, {"state": json.dumps(meta)})


SANITY_IMAGES = 32


def _zero_shot_surrogate(method, classnames):
    """Zero-shot CLIP on the method's own backbone and template: the source of the transfer check
    (None when the method is zero-shot CLIP itself)."""
    from ..methods.registry import create_method
    from ..methods.zeroshot import ZeroShotCLIP

    if isinstance(method, ZeroShotCLIP):
        return None
    zs = create_method("zeroshot", method.backbone, list(classnames), method.template).eval()
    with torch.no_grad():
        ctx = zs.class_context(list(classnames))
    return lambda x: zs(x, ctx)


def _sanity(classifier, x, y, eps, aa_report, seed: int, surrogate=None) -> dict:
    """The attack sanity checks (attacks.sanity_checks: logits, determinism, non-zero gradients, eps 0 =
    clean, accuracy non-increasing in eps and in steps with PGD-10, zero at a large eps, transfer from
    `surrogate` not better than white-box, Square not better than the white-box attacks) on the first
    SANITY_IMAGES images of the first batch."""
    from ..attacks import sanity_checks

    n = min(SANITY_IMAGES, len(y))
    rep = sanity_checks(classifier, x[:n], y[:n], eps, steps=10, autoattack_report=aa_report,
                        seed=derive_seed(seed, "sanity"), surrogate=surrogate)
    return {"passed": rep["passed"], "checks": rep["checks"], "n_images": n, "details": rep["details"]}


def _gather_aa_reports(dist, extra: dict) -> dict:
    """Sum every process's AutoAttack summary into one."""
    merged: dict = {}
    for part in dist.gather_objects(extra):
        if part:
            _merge_aa_report(merged, part)
    return merged


def _merge_aa_report(acc: dict, report: dict) -> None:
    """Sum AutoAttack's per-batch counts into one per-evaluation summary."""
    acc.setdefault("broken_by", {})
    for k, v in (report.get("broken_by") or {}).items():
        acc["broken_by"][k] = acc["broken_by"].get(k, 0) + int(v)
    acc["settings"] = report.get("settings")
