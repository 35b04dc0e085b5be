"""The pretraining recipe as data.

The defaults of `PretrainConfig` ARE the recipe of the shipped embedded model: `robustprompt pretrain
--out DIR` with no other option regenerates it. A YAML file (`--config`) or flags override fields.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from ..config import check, from_dict, load_yaml, to_dict


@dataclass(frozen=True)
class PretrainConfig:
    model: str = "robustprompt-tiny"  # an open_clip architecture name (project configs are registered)
    seed: int = 0
    steps: int = 2500
    batch_size: int = 128
    lr: float = 1.5e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    min_lr_ratio: float = 0.02  # cosine decays to lr * min_lr_ratio
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    grad_clip: float = 1.0  # max grad norm; 0 disables
    # data mix (see robustprompt.synthetic.generator.Mix)
    fashion: float = 0.72
    glyphs: float = 0.08
    two_objects: float = 0.15
    tint: float = 0.5
    shift: int = 3  # shapes move up to this many pixels off the 3x3 grid
    # Photometric variety. The testbeds' style stays outside these ranges (textured backgrounds,
    # contrast 0.35-0.55, noise std 0.04-0.08); bench/results/pretrain-sweep/ has the sweep behind them.
    # a fraction of images has its [0, 1] range remapped to [U(0, levels_low), U(levels_high, 1)]
    levels: float = 0.0
    levels_low: float = 0.15
    levels_high: float = 0.65
    # a fraction of images gets gaussian pixel noise of std ~ U(0, noise_std)
    noise: float = 0.8
    noise_std: float = 0.05
    # a fraction of images is composited onto a flat grey backdrop of level U(0, backdrop_max) at object
    # contrast U(backdrop_contrast, 1) (objects may come out darker than the backdrop)
    backdrop: float = 0.7
    backdrop_max: float = 0.3
    backdrop_contrast: float = 0.6
    # stage 2 (after `steps`): a short second cosine with hard-negative shape groups in every batch,
    # so that shape, not only colour/size/position, must be read to match captions
    stage2_steps: int = 300
    stage2_lr: float = 5e-4
    stage2_warmup_steps: int = 20
    stage2_fashion: float = 0.5
    stage2_glyphs: float = 0.05
    stage2_hard_shapes: float = 0.35
    # the emoji world (robustprompt.pretrain.world_stream): this fraction of every batch; the rest is the
    # little world above. 0 keeps the tiny model's recipe free of the world's sources.
    world: float = 0.0
    # bookkeeping
    checkpoint_every: int = 100
    log_every: int = 25

    def __post_init__(self):
        check(self.steps > 0, "steps must be positive")
        check(self.batch_size >= 2, "batch_size must be at least 2 (the contrastive loss needs negatives)")
        check(self.lr > 0, "lr must be positive")
        check(0 <= self.warmup_steps < self.steps, "warmup_steps must be in [0, steps)")
        check(0 <= self.fashion + self.glyphs <= 1, "fashion + glyphs must be in [0, 1]")
        check(self.stage2_steps >= 0 and (self.stage2_steps == 0 or 0 <= self.stage2_warmup_steps < self.stage2_steps),
              "stage2_steps must be >= 0 and stage2_warmup_steps in [0, stage2_steps)")
        check(0 <= self.stage2_hard_shapes + self.stage2_fashion + self.stage2_glyphs <= 1,
              "stage2_hard_shapes + stage2_fashion + stage2_glyphs must be in [0, 1]")
        check(0 <= self.world <= 1, "world must be in [0, 1]")
        self.mix(1), self.mix(2)  # Mix checks the photometric fields
        check(self.checkpoint_every > 0 and self.log_every > 0, "checkpoint_every and log_every must be positive")

    def mix(self, stage: int = 1):
        """The generator's Mix for stage 1 or 2: every Mix field this config has by name (the
        photometric ones), with the stage's own source fractions."""
        from ..synthetic.generator import Mix

        shared = {f.name: getattr(self, f.name) for f in fields(Mix) if hasattr(self, f.name)}
        if stage == 2:
            shared.update(fashion=self.stage2_fashion, glyphs=self.stage2_glyphs, hard_shapes=self.stage2_hard_shapes)
        return Mix(**shared)

    @property
    def total_steps(self) -> int:
        return self.steps + self.stage2_steps

    def to_dict(self) -> dict:
        return to_dict(self)


# Each shipped architecture's recipe: what differs from the defaults (the tiny model's recipe).
RECIPES: dict[str, dict] = {
    "robustprompt-tiny": {},
    # 12 + 12 layers; 90% of every batch from the emoji world's pretraining styles. Sized to run in
    # about 80 minutes on 2 CPU cores (bench/results/pretrain-small/).
    "robustprompt-small": dict(model="robustprompt-small", steps=6000, lr=1e-3, warmup_steps=200, world=0.9,
                               stage2_steps=0, checkpoint_every=100),
}


def load_config(path: str | Path | None = None, **overrides) -> PretrainConfig:
    """The recipe of `overrides["model"]` (default: the tiny model's), updated by the YAML at `path` and
    keyword overrides (None ignored)."""
    values = dict(RECIPES.get(overrides.get("model") or "robustprompt-tiny", {}))
    values.update(dict(load_yaml(path)) if path else {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(PretrainConfig, values)
