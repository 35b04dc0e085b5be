"""Config as data: frozen dataclasses filled from YAML presets, CLI flags and `--set key=value`.

`from_dict(Cls, dict)` (dataclass_io.py, re-exported here) validates every key and value against
the dataclass's type hints and names the offending key in a ConfigError. Dataclasses may validate
further in `__post_init__`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import yaml

from .backbone.loading import DEFAULT_MODEL
from .dataclass_io import check, check_at_least, check_positive, from_dict, to_dict  # noqa: F401  (to_dict re-exported)
from .errors import ConfigError

PRESET_DIR = Path(__file__).parent / "configs"


# ------------------------------------------------------------------ run config


@dataclass(frozen=True)
class ModelConfig:
    name: str = field(default=DEFAULT_MODEL, metadata={"help": "open_clip architecture or project model"})
    pretrained: Optional[str] = field(default=None, metadata={"help": "tag, weights file, 'random'; None = shipped"})
    quick_gelu: Optional[bool] = field(default=None, metadata={"help": "None: decided from the pretrained tag"})


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fashion-mnist"
    root: Optional[str] = None
    shots: int = 16
    split: Literal["base", "novel", "all"] = "base"
    train_crop_scale: float = field(default=0.5, metadata={"help": "lower bound of RandomResizedCrop's scale"})
    train_augment: bool = field(default=True, metadata={
        "help": "random crop + flip on training images; false = the evaluation preprocessing (AdvPT's bank)"})
    num_workers: int = 0
    test_n_max: Optional[int] = field(default=None, metadata={
        "help": "test the trained run on a fixed seeded subset of this many test images (None: all of them)"})

    def __post_init__(self):
        check(0.0 < self.train_crop_scale <= 1.0, f"train_crop_scale must be in (0, 1], got {self.train_crop_scale}")
        check(self.test_n_max is None or self.test_n_max >= 1, f"test_n_max must be >= 1, got {self.test_n_max}")
        check_at_least(self, 0, "num_workers")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 32
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.002
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: int = field(default=1, metadata={
        "help": "constant-lr epochs before the cosine; a run of no more epochs than this warms up for "
                "epochs - 1 (so a 1-epoch smoke run trains at lr)"})
    warmup_lr: float = 1e-5
    precision: Literal["fp32", "bf16"] = "fp32"
    eval_batch_size: int = 256
    grad_clip: Optional[float] = None
    class_chunk: int = field(default=0, metadata={
        "help": "with more training classes than this, encode the class side in chunks of this many under "
                "activation checkpointing: memory of one chunk for one more text forward per step (1000 classes "
                "on ViT-B/16: 35-50% less memory, 11-34% more time; docs/performance.md); 0 = all classes at once"})
    share_text_prefix: bool = field(default=True, metadata={
        "help": "run the leading prompt tokens that every class shares (SOS, a class-independent context) "
                "through the text tower once instead of once per class: the same features to float rounding "
                "and 2-3x less text-tower work for CoOp-style prompts (docs/performance.md); false = every "
                "prompt in full, as runs made before 2026-12-02 were"})
    cache_image_features: Union[Literal["auto"], bool] = field(default="auto", metadata={
        "help": "text-only methods (CoOp, KgCoOp, AdvPT): compute the frozen image tower's training features "
                "once and reuse them every epoch. Valid only when every epoch sees the same images: "
                "data.train_augment false and adv.enabled false. auto = cache when valid; true = cache or fail "
                "(naming what prevents it); false = always run the image tower. Same results up to float "
                "rounding (docs/performance.md)"})

    def __post_init__(self):
        check_at_least(self, 1, "epochs", "batch_size", "eval_batch_size")
        check_positive(self, "lr", "warmup_lr")
        check_at_least(self, 0, "weight_decay")
        check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        check_at_least(self, 0, "warmup_epochs")
        check(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        check_at_least(self, 0, "class_chunk")

    @property
    def effective_warmup_epochs(self) -> int:
        return min(self.warmup_epochs, self.epochs - 1)


@dataclass(frozen=True)
class AdversarialConfig:
    """Adversarial training (METHODS.md, AdvIVLP/AdvMaPLe): PGD through the current prompts each step."""

    enabled: bool = False
    eps: str = field(default="1/255", metadata={"help": "L-inf radius, e.g. 1/255"})
    alpha: str = field(default="1/255", metadata={"help": "PGD step size"})
    steps: int = 2
    random_start: bool = True
    loss: Literal["half", "full", "mean", "trades"] = field(
        default="half", metadata={"help": "half: CE on half clean + half adversarial; full: all adversarial; "
                                          "mean: 0.5 CE(clean) + 0.5 CE(adversarial) on the whole batch; "
                                          "trades: CE(clean) + trades_beta * KL(p_adv || p_clean)"})
    trades_beta: float = 6.0
    box: Literal["each-step", "end"] = field(
        default="each-step", metadata={"help": "each-step: every PGD iterate is clipped to the image range [0, 1] "
                                               "(Madry et al., torchattacks); end: only the eps ball each step, the "
                                               "range once on the returned images (NAP-Tuning's code)"})

    def __post_init__(self):
        from .attacks._core import parse_eps

        for name in ("eps", "alpha"):
            try:
                _, value = parse_eps(getattr(self, name))
            except Exception:
                raise ValueError(f"adv.{name}: cannot read {getattr(self, name)!r} (write e.g. 1/255)") from None
            check(0 <= value <= 1, f"adv.{name} must be in [0, 1], got {getattr(self, name)}")
        check(self.steps >= 1, f"adv.steps must be >= 1, got {self.steps}")
        check(self.trades_beta >= 0, f"adv.trades_beta must be >= 0, got {self.trades_beta}")


@dataclass(frozen=True)
class RunConfig:
    method: str = "coop"
    label: str = field(default="", metadata={"help": "name in reports (e.g. the preset: advivlp); empty = method"})
    seed: int = 1
    method_cfg: dict = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adv: AdversarialConfig = field(default_factory=AdversarialConfig)

    def __post_init__(self):
        check_at_least(self, 0, "seed")


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"malformed YAML in {p}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return data


def load_preset(name_or_path: str) -> dict:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return load_yaml(p)
    path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name_or_path!r}; known: {', '.join(list_presets())}")
    return load_yaml(path)


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def parse_override(item: str) -> dict:
    """'train.lr=0.01' -> {'train': {'lr': 0.01}}; the value is parsed as YAML (numbers, bools, lists)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set has an empty key in {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from None
    if isinstance(value, str) and _EXPONENT_FLOAT.match(raw.strip()):
        value = float(raw)  # YAML 1.1 reads 1e-5 (no dot) as a string; users mean a number
    out: dict = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def model_overlay(model: str | None) -> dict:
    """Per-preset changes for a model whose size the papers' recipes do not fit (configs/overlays/<model>.yaml)."""
    path = PRESET_DIR / "overlays" / f"{model or DEFAULT_MODEL}.yaml"
    return load_yaml(path) if path.is_file() else {}


def build_run_config(preset: str | None = None, overrides: list[str] | None = None,
                     values: dict | None = None) -> RunConfig:
    """defaults <- preset <- the model's overlay of that preset <- values (CLI flags) <- --set overrides;
    method_cfg validated by the method. Every command builds its run config here."""
    given: dict = {}
    if values:
        given = deep_merge(given, values)
    for item in overrides or []:
        given = deep_merge(given, parse_override(item))
    merged: dict = {}
    if preset:
        merged = deep_merge(merged, load_preset(preset))
        model = deep_merge(merged, given).get("model")
        name = model.get("name") if isinstance(model, dict) else None  # a malformed one fails in from_dict below
        if name is None or isinstance(name, str):
            merged = deep_merge(merged, model_overlay(name).get(preset, {}))
    merged = deep_merge(merged, given)
    cfg = from_dict(RunConfig, merged)
    from .methods.registry import method_config

    method_config(cfg.method, cfg.method_cfg)  # validate now: unknown keys and bad values fail early
    return cfg
