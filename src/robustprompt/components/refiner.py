"""Token refiners (NAP-Tuning's Neural Augmentor): a residual MLP applied to chosen tokens.

R(h) = h + W_up act(W_down N(h)), hidden width round(ratio * width), N a layer norm or nothing. The
paper describes "token refiners that reconstruct purified features through residual connections,
one per modality and per layer". The first author's development code (jiamingzhang94/MAPT, commit
9a9bb04, checked by tests/test_fidelity.py) has `Linear(d, 2d) -> ReLU -> Linear(2d, d)`, PyTorch's
default initialisation, no norm: ratio 2, activation relu, norm off, init "default". This project's first
reading (a layer-normed bottleneck of ratio 0.25 with GELU, near-identity start) stays available.

init "normal": W_up starts at N(0, up_init_std) (bias 0). With up_init_std = 0 the refiner is exactly
the identity at initialisation, but then W_down and the layer norm receive no gradient until W_up
has moved (one optimiser step); a tiny non-zero std (1e-4) keeps R ~ identity and lets every
parameter learn from the first step. init "default": both layers keep nn.Linear's own initialisation.

`RefinerHook` binds a refiner to token positions so that it can be put into
`TowerEdits.refiners[layer]`: the tokens outside the selection pass through unchanged.
"""

from __future__ import annotations

from typing import Literal, Union

import torch
from torch import Tensor, nn

Selection = Literal["all", "prompts", "cls", "tokens", "none"]
SELECTIONS = ("all", "prompts", "cls", "tokens", "none")
INITS = ("default", "normal")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class TokenRefiner(nn.Module):
    """R(h) = h + W_up act(W_down N(h)) on the last dimension of any (..., width) tensor."""

    def __init__(self, width: int, ratio: float = 0.25, activation: str = "gelu", up_init_std: float = 0.0,
                 norm: bool = True, init: str = "normal"):
        super().__init__()
        if width < 1:
            raise ValueError(f"refiner width must be >= 1, got {width}")
        if ratio <= 0:
            raise ValueError(f"refiner ratio must be > 0, got {ratio}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown refiner activation {activation!r}; one of {', '.join(ACTIVATIONS)}")
        if up_init_std < 0:
            raise ValueError(f"up_init_std must be >= 0, got {up_init_std}")
        if init not in INITS:
            raise ValueError(f"unknown refiner init {init!r}; one of {', '.join(INITS)}")
        self.width = width
        self.hidden = max(1, int(round(width * ratio)))
        self.norm = nn.LayerNorm(width) if norm else nn.Identity()
        self.down = nn.Linear(width, self.hidden)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(self.hidden, width)
        if init == "normal":
            with torch.no_grad():
                if up_init_std > 0:
                    self.up.weight.normal_(0.0, up_init_std)
                else:
                    self.up.weight.zero_()
                self.up.bias.zero_()

    def forward(self, h: Tensor) -> Tensor:
        return h + self.up(self.act(self.down(self.norm(h)))).to(h.dtype)

    def extra_repr(self) -> str:
        return f"width={self.width}, hidden={self.hidden}"


Positions = Union[slice, Tensor]  # a slice of the sequence, or one index per row (N,)


def refine_positions(refiner: nn.Module, x: Tensor, positions: Positions) -> Tensor:
    """x (N, L, D) with `refiner` applied to the tokens at `positions`, every other token unchanged."""
    if isinstance(positions, slice):
        if positions == slice(None):
            return refiner(x)
        out = x.clone()
        out[:, positions] = refiner(x[:, positions])
        return out
    rows = torch.arange(x.shape[0], device=x.device)
    idx = positions.to(x.device)
    out = x.clone()
    out[rows, idx] = refiner(x[rows, idx])
    return out


class RefinerHook:
    """A refiner bound to token positions: the callable that `TowerEdits.refiners[layer]` expects."""

    def __init__(self, refiner: nn.Module, positions: Positions):
        self.refiner = refiner
        self.positions = positions

    def __call__(self, x: Tensor) -> Tensor:
        return refine_positions(self.refiner, x, self.positions)


def vision_positions(selection: str, n_prompts: int) -> Positions:
    """IVLP vision layout [CLS, patches..., prompts (appended, the last n)]; "tokens" is CLS and patches."""
    if selection == "all":
        return slice(None)
    if selection == "tokens":
        return slice(0, -n_prompts) if n_prompts else slice(None)
    if selection == "cls":
        return slice(0, 1)
    if selection == "prompts":
        return slice(-n_prompts, None)
    raise ValueError(f"unknown token selection {selection!r}; one of {', '.join(SELECTIONS)}")


def text_positions(selection: str, n_prompts: int, eot_index: Tensor | None = None) -> Positions:
    """IVLP text layout [SOS, prompts (positions 1..n), words..., EOT]; "cls" is the pooled EOT token."""
    if selection == "all":
        return slice(None)
    if selection == "prompts":
        return slice(1, 1 + n_prompts)
    if selection == "cls":
        if eot_index is None:
            raise ValueError("refining the text tower's pooled (EOT) token needs the EOT indices")
        return eot_index
    raise ValueError(f"unknown token selection {selection!r}; one of {', '.join(SELECTIONS)}")
