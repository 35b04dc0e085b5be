"""CoOp-style learnable text context: [SOS] ctx_1 .. ctx_n <fixed words> <class name>. [EOT]."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..backbone import PromptableCLIP, TowerEdits, TowerOutput


def shared_positions(ids: Tensor, eot: Tensor) -> int:
    """How many leading tokens every prompt of `ids` (N, L) has in common, up to the first EOT: the
    `shared_prefix` that `PromptableCLIP.text` may compute once (valid for frozen embeddings and for a
    context shared by all rows, not for per-row learnable tokens)."""
    same = (ids == ids[:1]).all(dim=0)
    return min(int(same.long().cumprod(0).sum()), int(eot.min()))


class TemplateTokens:
    """Frozen token embeddings and EOT indices of `template.format(c)` for a list of class names,
    made once per class list (not at every training step) and kept on the device asked for."""

    def __init__(self, template: str):
        self.template = template
        self._cache: dict[tuple[str, ...], tuple[Tensor, Tensor, int]] = {}

    def _entry(self, backbone: PromptableCLIP, classnames) -> tuple[Tensor, Tensor, int]:
        key = tuple(classnames)
        if key not in self._cache:
            ids = backbone.tokenize([self.template.format(c) for c in key])
            eot = backbone.eot_index(ids)
            with torch.no_grad():
                self._cache[key] = (backbone.embed_tokens(ids), eot, shared_positions(ids, eot))
        return self._cache[key]

    def get(self, backbone: PromptableCLIP, classnames, device: torch.device) -> tuple[Tensor, Tensor]:
        emb, eot, shared = self._entry(backbone, classnames)
        if emb.device != device:
            emb, eot = emb.to(device), eot.to(device)
            self._cache[tuple(classnames)] = (emb, eot, shared)
        return emb, eot

    def encode(self, backbone: PromptableCLIP, classnames, device: torch.device,
               edits: TowerEdits | None = None) -> TowerOutput:
        """The text tower on the class prompts, their shared prefix computed once."""
        emb, eot = self.get(backbone, classnames, device)
        return backbone.text(emb, eot, edits, shared_prefix=self._entry(backbone, classnames)[2])


class TextContextPrompt(nn.Module):
    """n_ctx learnable vectors at text positions 1..n_ctx (right after SOS).

    With `init` (e.g. "a photo of a") the prompt reads "<init> <class>." and the first n_ctx tokens
    of init become the learnable vectors, initialised from their word embeddings; any remaining
    init words stay fixed text (MaPLe: 2 learnable tokens replacing "a photo" in "a photo of a").
    Without init, the prompt is "X X ... X <class>." and the vectors are drawn from N(0, init_std).
    `class_specific` gives every class its own context (CoOp's CSC).
    """

    def __init__(self, backbone: PromptableCLIP, n_ctx: int, init: str = "", class_specific: bool = False,
                 n_classes: int = 0, init_std: float = 0.02, generator: torch.Generator | None = None):
        super().__init__()
        self.backbone = [backbone]  # a list so the frozen backbone is not registered twice
        self.n_ctx = n_ctx
        self.class_specific = class_specific
        width = backbone.text_width
        if init:
            init_ids = backbone.tokenize([init])[0]
            n_words = int(backbone.eot_index(init_ids[None])[0]) - 1
            if n_words < n_ctx:
                raise ValueError(f"ctx_init {init!r} has {n_words} tokens, fewer than n_ctx={n_ctx}")
            with torch.no_grad():
                vectors = backbone.embed_tokens(init_ids[None])[0, 1 : 1 + n_ctx].clone()
            self.prefix_text = init
        else:
            vectors = torch.randn(n_ctx, width, generator=generator) * init_std
            self.prefix_text = " ".join(["X"] * n_ctx)
        if class_specific:
            if n_classes < 1:
                raise ValueError("class-specific context needs n_classes")
            vectors = vectors.unsqueeze(0).repeat(n_classes, 1, 1)
        self.ctx = nn.Parameter(vectors.float())
        self._cache: dict[tuple[str, ...], tuple[Tensor, Tensor, int]] = {}

    def shared_positions(self, classnames: tuple[str, ...]) -> int:
        """Leading positions that are one tensor in every class's prompt (SOS, the context, fixed init
        words, and any first words all class names share); 0 with class-specific context."""
        return 0 if self.class_specific else self._frozen(tuple(classnames))[2]

    def eot_index(self, classnames: tuple[str, ...]) -> Tensor:
        """EOT indices (C,) of the class prompts, on the context's device."""
        return self._frozen(tuple(classnames))[1].to(self.ctx.device)

    def encode(self, classnames: tuple[str, ...], edits: TowerEdits | None = None,
               shift: Tensor | None = None) -> TowerOutput:
        """The text tower on the prompted class names (`shift`: as in `embeddings`), the shared prefix
        computed once (once per shifted copy)."""
        emb, eot = self.embeddings(classnames, shift=shift)
        return self.backbone[0].text(emb, eot, edits, shared_prefix=self.shared_positions(classnames),
                                     prefix_groups=1 if shift is None else shift.shape[0])

    def _frozen(self, classnames: tuple[str, ...]) -> tuple[Tensor, Tensor, int]:
        """(token embeddings, EOT indices, shared leading positions) of the class prompts, made once."""
        if classnames not in self._cache:
            bb = self.backbone[0]
            prompts = [f"{self.prefix_text} {c}." for c in classnames]
            ids = bb.tokenize(prompts)
            eot = bb.eot_index(ids)
            # the tokenizer truncates silently; a prompt must keep its class name and EOT
            lengths = [len(bb.tokenizer.encode(p)) + 2 for p in prompts] if hasattr(bb.tokenizer, "encode") \
                else [int(e) + 1 for e in eot]
            too_long = [p for p, n in zip(prompts, lengths) if n > bb.context_length]
            if too_long or (eot <= self.n_ctx).any():
                worst = too_long[0] if too_long else prompts[int(eot.argmin())]
                raise ValueError(f"prompt {worst!r} does not fit the text context of "
                                 f"{bb.context_length} tokens; use fewer context tokens (n_ctx={self.n_ctx})")
            with torch.no_grad():
                self._cache[classnames] = (bb.embed_tokens(ids).detach(), eot, shared_positions(ids, eot))
        return self._cache[classnames]

    def embeddings(self, classnames: tuple[str, ...], shift: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Token embeddings (C, L, D) with the context in place, and EOT indices (C,).

        `shift` (S, D): S shifted copies of the context, ctx + shift[s] (CoCoOp's image-conditioned
        context); the result is then (S * C, L, D), image-major, with EOT indices (S * C,)."""
        emb, eot, _ = self._frozen(tuple(classnames))
        emb = emb.to(self.ctx.device)
        C = emb.shape[0]
        if self.class_specific:
            if C != self.ctx.shape[0]:
                raise ValueError(f"class-specific context was trained for {self.ctx.shape[0]} classes, "
                                 f"cannot prompt {C} others")
            ctx = self.ctx
        else:
            ctx = self.ctx.unsqueeze(0).expand(C, -1, -1)
        if shift is not None:
            S = shift.shape[0]
            ctx = (ctx.unsqueeze(0) + shift[:, None, None, :]).reshape(S * C, self.n_ctx, -1)
            emb = emb.repeat(S, 1, 1)
            eot = eot.repeat(S)
        emb = torch.cat([emb[:, :1], ctx.to(emb.dtype), emb[:, 1 + self.n_ctx :]], dim=1)
        return emb, eot.to(self.ctx.device)
