"""Per-layer token edits on a transformer tower (METHODS.md, "Deep prompts").

An edit at layer l acts on the input of block l:
- replace: x[:, s:s+n] = tokens
- insert:  x = cat(x[:, :s], tokens, x[:, s:]); the sequence grows by n
- blend:   x[:, s:s+n] = beta * tokens + (1 - beta) * x[:, s:s+n]
`start` is a position from the front, or "end" (the last n tokens; for insert, append).
A refiner at layer l is applied to the output of block l.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Union

import torch
from torch import Tensor

EditMode = Literal["replace", "insert", "blend"]


@dataclass
class LayerEdit:
    mode: EditMode
    tokens: Tensor  # (n, width) shared by the batch, or (batch, n, width)
    start: Union[int, Literal["end"]] = 1
    beta: float = 1.0

    def __post_init__(self):
        if self.mode not in ("replace", "insert", "blend"):
            raise ValueError(f"unknown edit mode {self.mode!r}")
        if self.tokens.dim() not in (2, 3):
            raise ValueError(f"edit tokens must be (n, width) or (batch, n, width), got {tuple(self.tokens.shape)}")

    @property
    def n(self) -> int:
        return self.tokens.shape[-2]

    def position(self, seq_len: int) -> int:
        """Index of the first edited token in a sequence of seq_len tokens (before the edit)."""
        if self.start == "end":
            return seq_len if self.mode == "insert" else seq_len - self.n
        return int(self.start)

    def apply(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        tok = self.tokens.to(x.dtype)
        if tok.dim() == 2:
            tok = tok.unsqueeze(0).expand(B, -1, -1)
        s = self.position(L)
        if self.mode == "insert":
            if not 0 <= s <= L:
                raise ValueError(f"insert position {s} outside a sequence of {L}")
            return torch.cat([x[:, :s], tok, x[:, s:]], dim=1)
        if not (0 <= s and s + self.n <= L):
            raise ValueError(f"{self.mode} of {self.n} tokens at {s} outside a sequence of {L}")
        if self.mode == "blend":
            tok = self.beta * tok + (1.0 - self.beta) * x[:, s : s + self.n]
        return torch.cat([x[:, :s], tok, x[:, s + self.n :]], dim=1)


@dataclass
class TowerEdits:
    """Everything a method changes in one tower for one forward pass."""

    layers: dict[int, LayerEdit] = field(default_factory=dict)
    refiners: dict[int, Callable[[Tensor], Tensor]] = field(default_factory=dict)
    collect: tuple[int, ...] = ()  # block outputs (after refiners) to return in TowerOutput.hidden

    def check_depth(self, depth: int, tower: str) -> None:
        bad = [l for l in list(self.layers) + list(self.refiners) + list(self.collect) if not 0 <= l < depth]
        if bad:
            raise ValueError(f"{tower} tower has {depth} blocks; edits name layers {sorted(set(bad))}")


@dataclass
class TowerOutput:
    features: Tensor  # projected, unnormalised (batch, embed_dim)
    tokens: Tensor | None  # final normalised token states (batch, seq, width): ln_post / ln_final output; None for a ResNet image tower
    hidden: dict[int, Tensor] = field(default_factory=dict)
    eot_index: Tensor | None = None  # text tower: where the pooled token sits after all inserts
