"""A frozen open_clip CLIP whose two towers accept per-layer token edits and refiners.

With no edits and no refiners, `encode_image` / `encode_text` equal open_clip's on normalised
images exactly (tests/test_backbone.py). Images enter in [0, 1]; normalisation happens here.
The image tower is a ViT (token edits allowed) or OpenAI's ModifiedResNet (RN50, RN101, RN50x4...:
no token layers, so only the text tower takes edits; `image_tower` says which).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .edits import TowerEdits, TowerOutput


def run_block(block: nn.Module, x: Tensor, attn_mask: Tensor | None) -> Tensor:
    """One open_clip residual block; under CPU bf16 autocast through `block_contiguous`.

    open_clip's batch-first nn.MultiheadAttention gives its in-projection a transposed input; under
    CPU autocast that becomes a bmm over a weight expanded to every token and copied (more than half
    of a bf16 step, slower than fp32: docs/performance.md). Elsewhere (fp32, CUDA) open_clip's own
    forward runs, so that fp32 features stay bitwise open_clip's.
    """
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and _contiguous_ok(block):
        return block_contiguous(block, x, attn_mask)
    return block(x, attn_mask=attn_mask)


def _contiguous_ok(block: nn.Module) -> bool:
    from open_clip.transformer import ResidualAttentionBlock

    a = getattr(block, "attn", None)
    return (type(block) is ResidualAttentionBlock and not hasattr(block, "ln_1_kv")
            and isinstance(a, nn.MultiheadAttention) and a.batch_first and a._qkv_same_embed_dim
            and a.bias_k is None and not a.add_zero_attn and (a.dropout == 0.0 or not a.training))


def block_contiguous(block: nn.Module, x: Tensor, attn_mask: Tensor | None) -> Tensor:
    """The same computation as open_clip's ResidualAttentionBlock.forward on (B, N, D) tokens: one
    F.linear for q, k, v, scaled_dot_product_attention, the out-projection, then the MLP."""
    q, k, v = _qkv(block, x)
    mask = attn_mask.to(q.dtype) if attn_mask is not None else None
    return _finish(block, x, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def block_shared_prefix(block: nn.Module, prefix: Tensor, rows: Tensor, prefix_mask: Tensor,
                        rows_mask: Tensor) -> tuple[Tensor, Tensor]:
    """One block on sequences that start with shared tokens: `prefix` (G, P, D), the tokens that
    follow it in each row `rows` (B, M, D), B a multiple of G, consecutive blocks of B / G rows sharing
    one prefix. The prefix attends to itself (causal); each row's tokens attend to its prefix's keys
    and values and to their own (causal), as in the full (B, P + M, D) sequence."""
    qp, kp, vp = _qkv(block, prefix)
    qr, kr, vr = _qkv(block, rows)
    B = rows.shape[0]
    k = torch.cat([per_row(kp, B), kr], dim=2)
    v = torch.cat([per_row(vp, B), vr], dim=2)
    out_p = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=prefix_mask.to(qp.dtype))
    out_r = F.scaled_dot_product_attention(qr, k, v, attn_mask=rows_mask.to(qr.dtype))
    return _finish(block, prefix, out_p), _finish(block, rows, out_r)


def per_row(shared: Tensor, rows: int) -> Tensor:
    """(G, ...) -> (rows, ...): each of the G entries for its consecutive rows / G rows (a view for G = 1)."""
    G = shared.shape[0]
    return shared.expand(rows, *shared.shape[1:]) if G == 1 else shared.repeat_interleave(rows // G, dim=0)


def _qkv(block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v of (B, N, D) tokens, each (B, heads, N, D / heads)."""
    a = block.attn
    B, N, D = x.shape
    qkv = F.linear(block.ln_1(x), a.in_proj_weight, a.in_proj_bias)
    return qkv.view(B, N, 3, a.num_heads, D // a.num_heads).permute(2, 0, 3, 1, 4).unbind(0)


def _finish(block: nn.Module, x: Tensor, attended: Tensor) -> Tensor:
    """The out-projection of the attention output (B, heads, N, D / heads), the residual, then the MLP."""
    a = block.attn
    B, N, D = x.shape
    o = F.linear(attended.transpose(1, 2).reshape(B, N, D), a.out_proj.weight, a.out_proj.bias)
    x = x + block.ls_1(o)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


@dataclass(frozen=True)
class BackboneIdentity:
    """What was loaded; stored in every run directory and checked when a run is loaded."""

    model: str
    pretrained: str  # tag, file path, "embedded" or "random"
    weights_sha256: str  # of the weights file, "" for a tag resolved by open_clip or random init
    quick_gelu: bool
    open_clip_version: str
    embed_dim: int
    vision_width: int
    vision_layers: int
    text_width: int
    text_layers: int
    image_size: int
    image_tower: str = "vit"  # "vit" or "resnet"

    def to_dict(self) -> dict:
        return asdict(self)

    def compatible_with(self, other: dict) -> list[str]:
        """Names of the fields that differ from a stored identity (empty when compatible)."""
        keys = ("model", "pretrained", "weights_sha256", "quick_gelu", "embed_dim", "vision_width",
                "vision_layers", "text_width", "text_layers", "image_size")
        stored = {"image_tower": "vit", **other}  # runs recorded before ResNet support are all ViT
        return [k for k in keys + ("image_tower",) if str(stored.get(k)) != str(getattr(self, k))]


def causal_mask(n: int, device, dtype=torch.float32) -> Tensor:
    return torch.full((n, n), float("-inf"), device=device, dtype=dtype).triu_(1)


class PromptableCLIP(nn.Module):
    def __init__(self, clip: nn.Module, identity: BackboneIdentity | None, mean: Sequence[float], std: Sequence[float],
                 tokenizer=None):
        super().__init__()
        _check_supported(clip)
        self.clip = clip
        self.identity = identity
        self.tokenizer = tokenizer
        self.register_buffer("image_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()
        # text(shared_prefix=P) computes the shared prefix once (same features; gradients to float
        # rounding). False runs every row in full, as before 2026-12-02 (train.share_text_prefix).
        self.share_text_prefix = True

    def train(self, mode: bool = True):
        # The backbone is frozen: it stays in eval mode (no dropout, no patch dropout) always.
        return super().train(False)

    # ---- facts read from the model, never hard-coded
    @property
    def visual(self):
        return self.clip.visual

    @property
    def image_tower(self) -> str:
        return image_tower_kind(self.visual)

    @property
    def vision_width(self) -> int:
        """Token width of a ViT tower (0 for a ResNet: it has no tokens to prompt)."""
        return self.visual.conv1.out_channels if self.image_tower == "vit" else 0

    @property
    def vision_layers(self) -> int:
        """Transformer blocks of a ViT tower (0 for a ResNet)."""
        return len(self.visual.transformer.resblocks) if self.image_tower == "vit" else 0

    @property
    def text_width(self) -> int:
        return self.clip.token_embedding.embedding_dim

    @property
    def text_layers(self) -> int:
        return len(self.clip.transformer.resblocks)

    @property
    def embed_dim(self) -> int:
        return self.visual.output_dim

    @property
    def context_length(self) -> int:
        return self.clip.context_length

    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def logit_scale(self) -> Tensor:
        return self.clip.logit_scale.exp()

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    # ---- vision tower
    def normalize(self, images: Tensor) -> Tensor:
        return (images - self.image_mean) / self.image_std

    def vision(self, images: Tensor, edits: TowerEdits | None = None) -> TowerOutput:
        """images: (B, 3, H, W) in [0, 1]. Layer-0 edits act before ln_pre, as MaPLe/IVLP append prompts."""
        v = self.visual
        edits = edits or TowerEdits()
        edits.check_depth(self.vision_layers, "vision")
        if self.image_tower == "resnet":  # check_depth has refused any edit: a ResNet has 0 blocks
            return TowerOutput(features=v(self.normalize(images).to(v.conv1.weight.dtype)), tokens=None)
        x = v.conv1(self.normalize(images).to(v.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        if 0 in edits.layers:
            x = edits.layers[0].apply(x)
        x = v.ln_pre(x)
        hidden = {}
        for i, block in enumerate(v.transformer.resblocks):
            if i > 0 and i in edits.layers:
                x = edits.layers[i].apply(x)
            x = run_block(block, x, None)
            if i in edits.refiners:
                x = edits.refiners[i](x)
            if i in edits.collect:
                hidden[i] = x
        tokens = v.ln_post(x)
        features = tokens[:, 0] @ v.proj
        return TowerOutput(features=features, tokens=tokens, hidden=hidden)

    def encode_image(self, images: Tensor, edits: TowerEdits | None = None) -> Tensor:
        return self.vision(images, edits).features

    # ---- text tower
    def tokenize(self, texts: Sequence[str]) -> Tensor:
        if self.tokenizer is None:
            raise RuntimeError("this backbone was built without a tokenizer")
        return self.tokenizer(list(texts)).to(self.device)

    def embed_tokens(self, token_ids: Tensor) -> Tensor:
        return self.clip.token_embedding(token_ids)

    @staticmethod
    def eot_index(token_ids: Tensor) -> Tensor:
        return token_ids.argmax(dim=-1)  # the EOT token has the largest id (open_clip's "argmax" pool)

    def text(self, embeddings: Tensor, eot_index: Tensor, edits: TowerEdits | None = None,
             shared_prefix: int = 0, prefix_groups: int = 1) -> TowerOutput:
        """embeddings: (N, L, D) token embeddings (before positional embedding), eot_index: (N,).

        `shared_prefix` P > 0 is the caller's promise that positions 0..P-1 are one tensor repeated in
        every row (a class-independent context after SOS, as CoOp's), or with `prefix_groups` G, in
        each of G consecutive blocks of rows (CoCoOp: one image's context for all classes). Under the causal mask those
        positions then hold the same states in every row at every layer, so they are computed once
        and each row runs only its own tokens (`block_shared_prefix`); see `_can_share` for when this
        applies and `share_text_prefix` to turn it off."""
        c = self.clip
        edits = edits or TowerEdits()
        edits.check_depth(self.text_layers, "text")
        # Under the causal mask nothing after the last EOT reaches a pooled token: drop the padding.
        # (tokens beyond it then do not appear in TowerOutput.tokens)
        keep = int(eot_index.max()) + 1
        embeddings = embeddings[:, :keep]
        if self.share_text_prefix and shared_prefix > 0 and self._can_share(edits, shared_prefix, eot_index,
                                                                             prefix_groups):
            return self._text_shared(embeddings, eot_index, edits, shared_prefix, prefix_groups)
        x = embeddings + c.positional_embedding[:keep].to(embeddings.dtype)
        eot = eot_index.clone()
        mask = c.attn_mask if x.shape[1] == c.attn_mask.shape[0] else causal_mask(x.shape[1], x.device)
        hidden = {}
        for i, block in enumerate(c.transformer.resblocks):
            if i in edits.layers:
                edit = edits.layers[i]
                L = x.shape[1]
                x = edit.apply(x)
                if edit.mode == "insert":
                    eot = torch.where(eot >= edit.position(L), eot + edit.n, eot)
                    mask = causal_mask(x.shape[1], x.device)
            x = run_block(block, x, mask)
            if i in edits.refiners:
                x = edits.refiners[i](x)
            if i in edits.collect:
                hidden[i] = x
        tokens = c.ln_final(x)
        pooled = tokens[torch.arange(tokens.shape[0], device=tokens.device), eot]
        return TowerOutput(features=self._project_text(pooled), tokens=tokens, hidden=hidden, eot_index=eot)

    def _project_text(self, pooled: Tensor) -> Tensor:
        p = self.clip.text_projection
        return p(pooled) if isinstance(p, nn.Linear) else pooled @ p

    def _can_share(self, edits: TowerEdits, P: int, eot_index: Tensor, groups: int) -> bool:
        """The shared-prefix path computes the same thing when the rows split into `groups` equal blocks,
        every EOT lies after the prefix, each layer edit puts class-independent tokens inside the prefix
        (an insert grows it), nothing asks for per-layer states or refiners, and every block is
        open_clip's standard one."""
        if eot_index.shape[0] % groups or int(eot_index.min()) < P or edits.refiners or edits.collect:
            return False
        for layer in sorted(edits.layers):
            edit = edits.layers[layer]
            if edit.tokens.dim() != 2 or edit.start == "end":
                return False
            if edit.mode == "insert":
                if int(edit.start) > P:
                    return False
                P += edit.n
            elif int(edit.start) + edit.n > P:
                return False
        return all(_contiguous_ok(block) for block in self.clip.transformer.resblocks)

    def _text_shared(self, embeddings: Tensor, eot_index: Tensor, edits: TowerEdits, P: int,
                     groups: int) -> TowerOutput:
        c = self.clip
        N, keep, _ = embeddings.shape
        pos = c.positional_embedding[:keep].to(embeddings.dtype)
        prefix, rows = embeddings[:: N // groups, :P] + pos[:P], embeddings[:, P:] + pos[P:]
        eot = eot_index.clone()

        def masks(P: int, M: int) -> tuple[Tensor, Tensor]:
            return causal_mask(P, rows.device), torch.cat([torch.zeros(M, P, device=rows.device),
                                                           causal_mask(M, rows.device)], dim=1)

        prefix_mask, rows_mask = masks(P, rows.shape[1])
        for i, block in enumerate(c.transformer.resblocks):
            if i in edits.layers:
                prefix = edits.layers[i].apply(prefix)
                if prefix.shape[1] != P:  # an insert: every EOT lies after the prefix and moves with it
                    eot += prefix.shape[1] - P
                    P = prefix.shape[1]
                    prefix_mask, rows_mask = masks(P, rows.shape[1])
            prefix, rows = block_shared_prefix(block, prefix, rows, prefix_mask, rows_mask)
        rows = c.ln_final(rows)
        pooled = rows[torch.arange(N, device=rows.device), eot - P]
        tokens = torch.cat([per_row(c.ln_final(prefix), N), rows], dim=1)
        return TowerOutput(features=self._project_text(pooled), tokens=tokens, hidden={}, eot_index=eot)

    def encode_text(self, token_ids: Tensor, edits: TowerEdits | None = None) -> Tensor:
        return self.text(self.embed_tokens(token_ids), self.eot_index(token_ids), edits).features

    @torch.no_grad()
    def text_features(self, texts: Sequence[str], batch_size: int = 256) -> Tensor:
        """L2-normalised features of plain prompts (zero-shot classifier weights)."""
        out = [F.normalize(self.encode_text(self.tokenize(texts[i : i + batch_size])), dim=-1)
               for i in range(0, len(texts), batch_size)]
        return torch.cat(out)


def image_tower_kind(visual: nn.Module) -> str:
    from open_clip.modified_resnet import ModifiedResNet

    return "resnet" if isinstance(visual, ModifiedResNet) else "vit"


def _check_supported(clip: nn.Module) -> None:
    from open_clip.model import CLIP

    if not isinstance(clip, CLIP):
        raise TypeError(f"robustprompt supports open_clip CLIP models with a ViT or ResNet image tower; "
                        f"got {type(clip).__name__}")
    if clip.text_pool_type != "argmax":
        raise TypeError(f"robustprompt needs argmax (EOT) text pooling; got {clip.text_pool_type!r}")
    if not clip.transformer.batch_first:
        raise TypeError("robustprompt needs batch-first transformers (open_clip >= 2.23)")
    v = clip.visual
    if image_tower_kind(v) == "resnet":
        return
    if not hasattr(v, "conv1") or not hasattr(v, "transformer") or getattr(v, "attn_pool", None) is not None or v.pool_type != "tok" \
            or v.final_ln_after_pool:
        raise TypeError("robustprompt needs a ViT image tower with CLS-token pooling (no attentional pool) "
                        "or OpenAI's ResNet image tower")
    if not v.transformer.batch_first:
        raise TypeError("robustprompt needs batch-first transformers (open_clip >= 2.23)")
