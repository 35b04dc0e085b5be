"""CoOp (Zhou et al., IJCV 2022): learnable text context, class name at the end."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from ..components.context import TextContextPrompt
from ..dataclass_io import check_at_least, check_positive
from .base import Method
from .registry import register_method


@dataclass(frozen=True)
class CoOpConfig:
    n_ctx: int = field(default=16, metadata={"help": "number of learnable context vectors"})
    ctx_init: str = field(default="", metadata={"help": "initial words, e.g. 'a photo of a' (n_ctx <= its tokens)"})
    class_specific: bool = field(default=False, metadata={"help": "one context per class (CSC)"})
    init_std: float = 0.02

    def __post_init__(self):
        check_at_least(self, 1, "n_ctx")
        check_positive(self, "init_std")


@register_method("coop", CoOpConfig)
class CoOp(Method):
    """CoOp: n_ctx learnable context vectors in front of the class name (text tower only)."""

    frozen_image_side = True

    def __init__(self, backbone, classnames, template, config: CoOpConfig):
        super().__init__(backbone, classnames, template, config)
        self.prompt = TextContextPrompt(backbone, config.n_ctx, config.ctx_init, config.class_specific,
                                        len(classnames), config.init_std)

    @property
    def classes_independent(self) -> bool:
        return not self.config.class_specific  # CSC: class i's context is found by its position in the list

    def class_features(self, classnames: tuple[str, ...]) -> Tensor:
        return self.prompt.encode(classnames).features
