"""A trainable low-rank update of a frozen projection matrix (LoRA, Hu et al. 2021).

`LowRankUpdate(in_features, out_features, rank)` holds `down` (in, r) and `up` (r, out) and applies
    x @ (W + scale * down @ up)
to a frozen W (in, out) that it does not own: the caller passes W at call time, so the frozen
backbone's tensor is neither copied nor registered a second time. `down` starts like peft's
lora_A (Kaiming-uniform with a = sqrt(5)); `up` starts at zero as peft's lora_B (the update is zero
at initialisation, training starts from the frozen projection, and `down` gets a zero gradient until
`up` has moved), or with `up_init_std > 0` at N(0, up_init_std) (a tiny update, both factors get a
gradient from the first step). With rank >= min(in, out) the update is full-rank.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LowRankUpdate(nn.Module):
    def __init__(self, in_features: int, out_features: int, rank: int, scale: float = 1.0, up_init_std: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"low-rank update needs rank >= 1, got {rank}")
        if up_init_std < 0:
            raise ValueError(f"up_init_std must be >= 0, got {up_init_std}")
        self.in_features, self.out_features, self.rank, self.scale = in_features, out_features, rank, float(scale)
        self.down = nn.Parameter(torch.empty(in_features, rank))
        self.up = nn.Parameter(torch.zeros(rank, out_features))
        # kaiming_uniform_ on the (rank, in) view, as peft initialises lora_A.weight
        bound = 1.0 / math.sqrt(in_features)  # = gain(a=sqrt(5)) * sqrt(3 / fan_in)
        with torch.no_grad():
            self.down.uniform_(-bound, bound)
            if up_init_std > 0:
                self.up.normal_(0.0, up_init_std)

    def delta(self) -> Tensor:
        """The (in, out) update scale * down @ up."""
        return self.scale * (self.down @ self.up)

    def weight(self, base: Tensor) -> Tensor:
        """The effective (in, out) matrix base + delta."""
        self._check(base)
        return base + self.delta().to(base.dtype)

    def forward(self, x: Tensor, base: Tensor) -> Tensor:
        """x (..., in) @ (base + delta); computed without forming the full update."""
        self._check(base)
        return x @ base + self.scale * ((x @ self.down.to(x.dtype)) @ self.up.to(x.dtype))

    def _check(self, base: Tensor) -> None:
        if tuple(base.shape) != (self.in_features, self.out_features):
            raise ValueError(f"low-rank update is for a ({self.in_features}, {self.out_features}) matrix, "
                             f"got {tuple(base.shape)}")

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, scale={self.scale}"
