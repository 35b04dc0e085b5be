"""Deep prompts: learnable tokens for a chosen set of layers of a tower, and how they become edits.

Pieces (METHODS.md, "Deep prompts"), meant to be combined by methods:
- `resolve_depth`: a prompt depth stated for a 12-layer ViT-B (the papers' model) -> the number of
  prompted layers of the model at hand.
- `LayerPrompts`: one (n_tokens, width) parameter per prompted layer, N(0, init_std) (VPT/IVLP/MaPLe).
- `layer_edits`: {layer: tokens} -> {layer: LayerEdit}; the first prompted layer may insert (the
  sequence grows), later layers replace or blend the same places.
- `vision_prompt_edits` / `text_prompt_edits`: the IVLP/MaPLe placement (vision: appended after
  CLS+patches at the first layer, then the last n tokens are replaced; text: positions 1..n after SOS).
- `PromptCoupling`: one Linear(in_width -> out_width) per layer (MaPLe's text -> vision coupling).
- `DeepTextPrompt`: the text side of IVLP/MaPLe: a CoOp-style context in the token embeddings at
  layer 0, and LayerPrompts replacing positions 1..n at layers 1..depth-1.
"""

from __future__ import annotations

import copy
from typing import Iterable, Literal, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from ..backbone import LayerEdit, PromptableCLIP, TowerEdits, TowerOutput
from ..errors import ConfigError
from .context import TextContextPrompt

REFERENCE_LAYERS = 12  # depths in the papers and presets are stated for ViT-B (12 blocks per tower)
DepthRule = Literal["scale", "clamp", "exact"]
DEPTH_RULES = ("scale", "clamp", "exact")
DEPTH_RULE_HELP = ("how `depth` (stated for a 12-layer ViT-B) maps onto the model: 'scale' = "
                   "round(depth * layers / 12), at least 1 (9 of 12 stays 9 on ViT-B, is 5 of 6 on the "
                   "embedded model); 'clamp' = min(depth, layers); 'exact' = depth, an error if the tower is shallower")


def resolve_depth(depth: int, n_layers: int, rule: str = "scale", *, reference_layers: int = REFERENCE_LAYERS,
                  what: str = "depth") -> int:
    """Number of prompted layers (counted from layer 0) for a tower of `n_layers` blocks.

    depth 0 stays 0 (tower not prompted) under every rule. See DEPTH_RULE_HELP.
    """
    if depth < 0:
        raise ConfigError(f"{what} must be >= 0, got {depth}")
    if rule not in DEPTH_RULES:
        raise ConfigError(f"unknown depth rule {rule!r}; one of {', '.join(DEPTH_RULES)}")
    if depth == 0:
        return 0
    if rule == "exact":
        if depth > n_layers:
            raise ConfigError(f"{what} {depth} exceeds the {n_layers} layers of this model's tower; "
                              "lower it or use depth_rule 'scale' or 'clamp'")
        return depth
    if rule == "clamp":
        return min(depth, n_layers)
    if depth > reference_layers:
        raise ConfigError(f"{what} {depth} is more than the {reference_layers} reference layers that "
                          "depth_rule 'scale' is stated for; use depth_rule 'exact'")
    return max(1, min(n_layers, int(depth * n_layers / reference_layers + 0.5)))


class LayerPrompts(nn.Module):
    """Learnable prompt tokens (n_tokens, width) for each layer in `layers`, drawn from N(0, init_std).

    Parameters are named `tokens.<layer>`; `prompts()` returns {layer: tensor} in layer order.
    """

    def __init__(self, layers: Iterable[int], n_tokens: int, width: int, init_std: float = 0.02,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.layers = tuple(sorted(set(int(l) for l in layers)))
        if any(l < 0 for l in self.layers):
            raise ValueError(f"prompt layers must be >= 0, got {self.layers}")
        if n_tokens < 1:
            raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
        self.n_tokens = n_tokens
        self.width = width
        self.tokens = nn.ParameterDict({
            str(l): nn.Parameter(torch.randn(n_tokens, width, generator=generator) * init_std) for l in self.layers})

    def prompts(self) -> dict[int, Tensor]:
        return {l: self.tokens[str(l)] for l in self.layers}

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, n_tokens={self.n_tokens}, width={self.width}"


EditMode = Literal["insert", "replace", "blend"]


def layer_edits(prompts: Mapping[int, Tensor], start: Union[int, Literal["end"]], *, first: EditMode = "replace",
                later: EditMode = "replace", beta: float = 1.0) -> dict[int, LayerEdit]:
    """{layer: tokens} -> {layer: LayerEdit}: the lowest layer gets mode `first`, the others `later`.

    With first="insert" the tokens join the sequence at the first prompted layer and every later
    layer overwrites the same places (replace) or mixes into them (blend, with `beta`).
    """
    out: dict[int, LayerEdit] = {}
    for i, l in enumerate(sorted(prompts)):
        mode = first if i == 0 else later
        out[l] = LayerEdit(mode, prompts[l], start=start, beta=beta if mode == "blend" else 1.0)
    return out


def vision_prompt_edits(prompts: Mapping[int, Tensor]) -> dict[int, LayerEdit]:
    """IVLP/MaPLe vision placement: append after CLS+patches at the first prompted layer (layer 0:
    after the positional embedding, before ln_pre, no positional embedding of their own), then
    replace the last n tokens at every later prompted layer."""
    return layer_edits(prompts, "end", first="insert", later="replace")


def text_prompt_edits(prompts: Mapping[int, Tensor], start: int = 1) -> dict[int, LayerEdit]:
    """IVLP/MaPLe deep text placement: replace positions start..start+n-1 (after SOS) before each layer."""
    return layer_edits(prompts, start, first="replace", later="replace")


class PromptCoupling(nn.Module):
    """One Linear(in_width -> out_width) per layer: maps one tower's prompts onto the other's (MaPLe).

    `tie_init=True` follows MaPLe's code: the first layer's projection is initialised on its own and
    every deeper projection starts as a copy of one shared initialisation (they then train apart).
    """

    def __init__(self, layers: Iterable[int], in_width: int, out_width: int, tie_init: bool = True):
        super().__init__()
        self.layers = tuple(sorted(set(int(l) for l in layers)))
        self.in_width, self.out_width = in_width, out_width
        proj: dict[str, nn.Module] = {}
        template = nn.Linear(in_width, out_width) if tie_init and len(self.layers) > 1 else None
        for i, l in enumerate(self.layers):
            proj[str(l)] = copy.deepcopy(template) if (template is not None and i > 0) else nn.Linear(in_width, out_width)
        self.proj = nn.ModuleDict(proj)

    def forward(self, prompts: Mapping[int, Tensor]) -> dict[int, Tensor]:
        missing = sorted(set(self.layers) - set(prompts))
        if missing:
            raise ValueError(f"coupling has projections for layers {missing} with no prompts")
        return {l: self.proj[str(l)](prompts[l]) for l in self.layers}


class DeepTextPrompt(nn.Module):
    """Text side of IVLP / MaPLe: "<ctx_1..ctx_n> <rest of ctx_init> <class>." with deep prompts.

    Layer 0: the n_ctx context vectors sit in the token embeddings at positions 1..n (before the
    positional embedding, as CoOp), initialised from the first n words of `ctx_init` (random
    N(0, init_std) and "X X .." without it). Layers 1..depth-1: LayerPrompts N(0, init_std) replace
    positions 1..n of that block's input. `prompts()` gives {layer: (n, width)} for all depth layers
    (layer 0 = the context vectors), which MaPLe projects onto the vision tower.
    """

    def __init__(self, backbone: PromptableCLIP, n_ctx: int, depth: int, ctx_init: str = "", init_std: float = 0.02):
        super().__init__()
        if depth < 1:
            raise ValueError(f"text prompt depth must be >= 1 (layer 0 is the context), got {depth}")
        self.backbone = [backbone]  # not registered: the frozen backbone belongs to the method
        self.n_ctx = n_ctx
        self.depth = depth
        self.context = TextContextPrompt(backbone, n_ctx, ctx_init, init_std=init_std)
        self.deep = LayerPrompts(range(1, depth), n_ctx, backbone.text_width, init_std)

    def prompts(self) -> dict[int, Tensor]:
        return {0: self.context.ctx, **self.deep.prompts()}

    def edits(self) -> dict[int, LayerEdit]:
        return text_prompt_edits(self.deep.prompts(), start=1)

    def encode(self, classnames: Sequence[str], edits: TowerEdits | None = None) -> TowerOutput:
        """Run the text tower on the prompted class names; `edits` defaults to `TowerEdits(self.edits())`
        (a method adding refiners or collecting hidden states passes its own)."""
        return self.context.encode(tuple(classnames), edits if edits is not None else TowerEdits(layers=self.edits()))
