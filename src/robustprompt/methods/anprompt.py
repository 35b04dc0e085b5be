"""ANPrompt: anti-noise prompt tuning (METHODS.md, "ANPrompt"; user guide: docs/anprompt.md).

Pipeline (everything before "per step" runs once, at construction, under no_grad):
1. Weak-noise text features: for each training class c, the frozen feature t_c of the clean
   template and M perturbed features t~_c,m (Gaussian noise on the class-name token embeddings,
   relative to their norm, optionally on a typo'd class name or another template), fused as
   f_c,m = normalize(t_c + alpha * normalize(t~_c,m)).
2. Noise prompts: deterministic k-means over all f_c,m -> K centroids P_noise (K, embed_dim).
Per step:
3. Anti-noise prompts A = R + P_noise (R learnable), projected by one Linear per prompted layer and
   tower; inserted at the first prompted layer (after CLS / after SOS: the text EOT index shifts by
   K), at later prompted layers text tokens 1..K are replaced and vision tokens 1..K blended (beta).
4. NRVPP v_rep = mean_k ln_post(x)[1+k] @ (proj + low-rank update); v_cls the usual CLS feature.
5. z_cls, z_rep against the prompted class features; z_noise of v_rep against WALoss's frozen target:
   the class descriptions' CuPL-style feature (+ aux_weight x a second description set) when the
   dataset or `descriptions` provides them (the authors' trainer), else mean_m f_c,m (`wa_target`).
6. Loss s*CE(z_cls) + (1-s)*CE(z_rep) + w_sim*sim + w_wa*WALoss.
7. Inference: s*z_cls + (1-s)*z_rep on the training classes, z_cls on any other class set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbone import LayerEdit, TowerEdits
from ..components.context import TemplateTokens, TextContextPrompt
from ..components.kmeans import kmeans
from ..components.lora import LowRankUpdate
from ..components.two_branch import TwoBranchHead, check_layer_range, prompted_layers
from ..dataclass_io import check, check_at_least, check_unit_interval
from ..errors import ConfigError
from .base import Method, TextContext
from .registry import register_method

TextNoise = Literal["embed", "typo", "template", "all"]


@dataclass(frozen=True)
class ANPromptConfig:
    # ---- anti-noise prompts and where they go
    n_tokens: int = field(default=6, metadata={"help": "K: noise prompts (k-means clusters) = anti-noise tokens [ours]"})
    first_layer: int = field(default=6, metadata={
        "help": "first prompted layer, 1-based, on a tower of layer_ref_depth blocks; prompts run to the last "
                "layer. Other depths scale: first block index = floor((first_layer-1) * depth / layer_ref_depth) "
                "[code: layers 6..12 of 12]"})
    layer_ref_depth: int = field(default=12, metadata={"help": "the depth first_layer is counted on"})
    beta: float = field(default=0.9, metadata={"help": "vision blend weight at later prompted layers [ours]"})
    init_std: float = field(default=0.02, metadata={"help": "std of the learnable residual R [code]"})
    use_noise_prompts: bool = field(default=True, metadata={
        "help": "anti-noise prompts A = R + P_noise; false = A = R alone, the ablation without noise prompts [ours]"})
    # ---- weak-noise text features
    n_noise_views: int = field(default=8, metadata={"help": "M perturbed views per class [ours]"})
    embed_noise_std: float = field(default=0.02, metadata={
        "help": "Gaussian noise on class-name token embeddings; the noise norm is this fraction of the "
                "token embedding's norm [ours]"})
    text_noise: TextNoise = field(default="all", metadata={
        "help": "textual perturbations on top of embedding noise: embed (none), typo (character swaps/drops in "
                "the class name), template (alternative templates), all (views cycle embed, typo, template) [ours]"})
    typo_rate: float = field(default=0.1, metadata={"help": "per-character swap/drop probability of typo views [ours]"})
    fuse_alpha: float = field(default=0.1, metadata={"help": "f = normalize(t + alpha * normalize(t~)) [ours]"})
    noise_seed: int = field(default=0, metadata={
        "help": "seed of the noise views and k-means (fixed, so a saved run rebuilds the same noise prompts) [ours]"})
    kmeans_iters: int = field(default=100, metadata={"help": "maximum Lloyd iterations [ours]"})
    # ---- NRVPP
    rep_lora_rank: int = field(default=64, metadata={"help": "rank of the trainable update of the NRVPP projection [ours]"})
    rep_lora_init_std: float = field(default=1e-4, metadata={
        "help": "std of the update's up factor at init; 0 = standard LoRA (exactly the frozen projection at "
                "init, but the down factor gets no gradient on the first step) [ours]"})
    # ---- loss and inference
    s: float = field(default=0.5, metadata={
        "help": "weight of z_cls vs z_rep in the loss and at inference [code: the authors' train.py, s_rl 0.5; "
                "MMRL's is 0.7]"})
    w_sim: float = field(default=10.0, metadata={"help": "weight of the sim loss [code: the authors' train.py, sim_w 10]"})
    w_wa: float = field(default=1.0, metadata={"help": "weight of WALoss [ours]"})
    wa_scale_grad: bool = field(default=False, metadata={
        "help": "let gradients flow through WALoss's 1/std(z_cls) scale (default: the scale is a constant) [ours]"})
    wa_target: Literal["auto", "descriptions", "noise"] = field(default="auto", metadata={
        "help": "WALoss's frozen text target: descriptions (class descriptions, CuPL-style [code]), noise (the "
                "mean fused weak-noise view of each class [ours, the first reading]), auto (descriptions when the "
                "dataset or `descriptions` has them, else noise)"})
    descriptions: str = field(default="", metadata={
        "help": "JSON file of class name -> list of sentences (CuPL's format); empty = the dataset's own"})
    descriptions_aux: str = field(default="", metadata={
        "help": "a second description file (HPT's set in the authors' code), added with weight aux_weight"})
    aux_weight: float = field(default=0.001, metadata={"help": "weight of the second description feature [code]"})
    train_noise: str = field(default="", metadata={
        "help": "weak image noise on training images, e.g. gaussian:0.02 (empty: none) [paper: some settings]"})
    # ---- class prompt
    template: str = field(default="a photo of a {}.", metadata={"help": "class prompt; empty = the dataset's template"})
    learn_template: bool = field(default=False, metadata={
        "help": "make the template's words before the class name learnable context vectors (CoOp-style); "
                "the template must read '<words> {}.' [ours]"})

    def __post_init__(self):
        check_at_least(self, 1, "n_tokens")
        check_layer_range(self)
        check_unit_interval(self, "beta", "typo_rate", "s")
        check_at_least(self, 1, "n_noise_views", "kmeans_iters", "rep_lora_rank")
        check_at_least(self, 0, "init_std", "embed_noise_std", "fuse_alpha", "noise_seed", "rep_lora_init_std",
                       "w_sim", "w_wa", "aux_weight")
        if self.train_noise:
            from ..attacks.noise import ImageNoise, parse_noise

            check(isinstance(parse_noise(self.train_noise), ImageNoise),
                  f"train_noise must be an image noise (gaussian, blur, jpeg), got {self.train_noise!r}")
        check(not self.template or self.template.count("{}") == 1,
              f"template must contain {{}} exactly once, got {self.template!r}")
        if self.learn_template and self.template:
            check(self.template.endswith(" {}.") and self.template[:-4].strip() != "",
                  f"learn_template needs a template of the form '<words> {{}}.', got {self.template!r}")


def fuse(t: Tensor, t_noisy: Tensor, alpha: float) -> Tensor:
    """Weak-noise fusion f = normalize(t + alpha * normalize(t~)) along the last dimension."""
    return F.normalize(t + alpha * F.normalize(t_noisy, dim=-1), dim=-1)


def embedding_noise(emb: Tensor, mask: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """emb (N, L, D) + Gaussian noise on the tokens where mask (N, L, 1) is 1, relative to each token's norm:
    noise = std * ||e|| / sqrt(D) * N(0, I), so the noise norm is about std * ||e||. Drawn on the CPU."""
    D = emb.shape[-1]
    eps = torch.randn(emb.shape, generator=generator).to(emb.device, emb.dtype)
    return emb + mask * (std * emb.norm(dim=-1, keepdim=True) / math.sqrt(D)) * eps


def wa_loss(z_noise: Tensor, z_cls: Tensor, scale_grad: bool = False) -> Tensor:
    """WALoss = KL(softmax(z_noise) || softmax(z_cls)), summed, / (std(z_cls) * numel(z_cls)).

    std is over all entries of z_cls (Bessel-corrected, torch's default); with `scale_grad=False`
    the scale 1 / (std * numel) is treated as a constant.
    """
    z_noise, z_cls = z_noise.float(), z_cls.float()
    kl = F.kl_div(F.log_softmax(z_cls, dim=-1), F.log_softmax(z_noise, dim=-1), reduction="sum", log_target=True)
    std = z_cls.std() if z_cls.numel() > 1 else z_cls.new_zeros(())
    if not scale_grad:
        std = std.detach()
    return kl / (std.clamp_min(1e-6) * z_cls.numel())


@register_method("anprompt", ANPromptConfig)
class ANPrompt(TwoBranchHead, Method):
    """ANPrompt: k-means noise prompts + learnable tokens in the deep layers of both towers, NRVPP, WALoss."""

    image_towers = ("vit",)  # prompts enter the image transformer's layers

    def __init__(self, backbone, classnames, template, config: ANPromptConfig):
        super().__init__(backbone, classnames, template, config)
        bb = backbone
        cfg = config
        self.class_template = cfg.template or template
        if "{}" not in self.class_template:
            raise ConfigError(f"ANPrompt needs a template with {{}}, got {self.class_template!r}")
        K, E = cfg.n_tokens, bb.embed_dim
        self.text_layers = prompted_layers(bb.text_layers, cfg.first_layer, cfg.layer_ref_depth)
        self.vision_layers = prompted_layers(bb.vision_layers, cfg.first_layer, cfg.layer_ref_depth)

        # ---- frozen, once: clean features, weak-noise features, noise prompts
        t_clean, f_views = self._weak_noise_features(self.classnames)  # (C, E), (C, M, E)
        C, M = f_views.shape[:2]
        if C * M < K:
            raise ConfigError(f"k-means needs at least n_tokens={K} points; {C} classes x {M} noise views give "
                             f"{C * M}: raise n_noise_views or lower n_tokens")
        km = kmeans(f_views.reshape(C * M, E).double(), K, seed=cfg.noise_seed, max_iter=cfg.kmeans_iters)
        self.register_buffer("text_frozen", t_clean.float(), persistent=False)
        self.register_buffer("noise_features", F.normalize(f_views.mean(1), dim=-1).float(), persistent=False)
        self.register_buffer("noise_prompts", km.centroids.float(), persistent=False)
        self.wa_features: Tensor | None = None  # the description target, set by prepare()
        self.wa_target_used = "noise"

        # ---- learnable
        self.residual = nn.Parameter(torch.randn(K, E) * cfg.init_std)  # R
        self.text_proj = nn.ModuleDict({str(l): nn.Linear(E, bb.text_width) for l in self.text_layers})
        self.vision_proj = nn.ModuleDict({str(l): nn.Linear(E, bb.vision_width) for l in self.vision_layers})
        self.rep_proj = LowRankUpdate(bb.vision_width, E, cfg.rep_lora_rank, up_init_std=cfg.rep_lora_init_std)
        self.context = None
        if cfg.learn_template:
            if not (self.class_template.endswith(" {}.") and self.class_template[:-4].strip()):
                raise ConfigError(f"learn_template needs a template of the form '<words> {{}}.', "
                                  f"got {self.class_template!r}")
            prefix = self.class_template[:-4].strip()
            n_ctx = int(bb.eot_index(bb.tokenize([prefix]))[0]) - 1
            self.context = TextContextPrompt(bb, n_ctx, prefix)
        self._template_tokens = TemplateTokens(self.class_template)

    # ------------------------------------------------------------------ weak-noise text features
    def _texts_and_name_spans(self, pairs: list[tuple[str, str]]) -> tuple[list[str], list[tuple[int, int]]]:
        """For (template, name) pairs: the prompt texts and the token span [a, b) of the name."""
        bb = self.backbone
        prefixes = sorted({tpl.split("{}")[0].strip() for tpl, _ in pairs})
        names = sorted({n for _, n in pairs})
        n_pre = dict(zip(prefixes, (bb.eot_index(bb.tokenize(prefixes)) - 1).tolist()))
        n_name = dict(zip(names, (bb.eot_index(bb.tokenize(names)) - 1).tolist()))
        texts, spans = [], []
        for tpl, name in pairs:
            texts.append(tpl.format(name))
            a = 1 + n_pre[tpl.split("{}")[0].strip()]
            spans.append((a, a + n_name[name]))
        return texts, spans

    @torch.no_grad()
    def _encode_frozen(self, texts: list[str], spans: list[tuple[int, int]] | None = None,
                       generator: torch.Generator | None = None, batch_size: int = 256) -> Tensor:
        """Normalised frozen text features; with spans, Gaussian noise on those token embeddings."""
        bb = self.backbone
        out = []
        for i in range(0, len(texts), batch_size):
            ids = bb.tokenize(texts[i : i + batch_size])
            emb, eot = (bb.embed_tokens(ids), bb.eot_index(ids))
            if spans is not None and self.config.embed_noise_std > 0:
                N, L, _ = emb.shape
                mask = torch.zeros(N, L, 1, dtype=emb.dtype, device=emb.device)
                for j, (a, b) in enumerate(spans[i : i + batch_size]):
                    b = min(b, int(eot[j]))  # a name cut by the context length
                    mask[j, a:b] = 1.0
                emb = embedding_noise(emb, mask, self.config.embed_noise_std, generator)
            out.append(F.normalize(bb.text(emb, eot).features, dim=-1))
        return torch.cat(out)

    def noise_view_prompts(self, classnames: tuple[str, ...]) -> list[tuple[str, str]]:
        """(template, class name) of each noise view, class-major (C * M); view m of a class is of kind
        kinds[m % len(kinds)] with kinds = [embed] / [typo] / [template] / [embed, typo, template] ("all")."""
        cfg = self.config
        kinds = {"embed": ["embed"], "typo": ["typo"], "template": ["template"],
                 "all": ["embed", "typo", "template"]}[cfg.text_noise]
        return [_perturb_text(kinds[m % len(kinds)], self.class_template, c, _view_seed(cfg.noise_seed, m),
                              cfg.typo_rate)
                for c in classnames for m in range(cfg.n_noise_views)]

    def _weak_noise_features(self, classnames: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        """(t_c (C, E), fused views f_c,m (C, M, E)), deterministic for noise_seed."""
        cfg = self.config
        C, M = len(classnames), cfg.n_noise_views
        t_clean = self._encode_frozen([self.class_template.format(c) for c in classnames])
        texts, spans = self._texts_and_name_spans(self.noise_view_prompts(classnames))
        g = torch.Generator().manual_seed(cfg.noise_seed)
        t_noisy = self._encode_frozen(texts, spans, generator=g).view(C, M, -1)
        return t_clean, fuse(t_clean[:, None], t_noisy, cfg.fuse_alpha)

    # ------------------------------------------------------------------ WALoss target from descriptions
    def prepare(self, data) -> None:
        """Build the WALoss target from class descriptions (`descriptions` file, else the dataset's)."""
        cfg = self.config
        if cfg.wa_target == "noise":
            return
        sets = load_descriptions(cfg.descriptions) if cfg.descriptions else getattr(data, "descriptions", None)
        if not sets:
            if cfg.wa_target == "descriptions":
                raise ValueError(f"wa_target=descriptions needs class descriptions: dataset {data.name!r} has none; "
                                 "pass method_cfg.descriptions=FILE.json (class -> list of sentences)")
            return
        target = self.description_features(sets)
        if cfg.descriptions_aux and cfg.aux_weight > 0:
            target = target + cfg.aux_weight * self.description_features(load_descriptions(cfg.descriptions_aux))
        self.wa_features = F.normalize(target, dim=-1).float().to(self.noise_features.device)
        self.wa_target_used = "descriptions"

    def run_info(self) -> dict:
        return {"wa_target": self.wa_target_used}

    @torch.no_grad()
    def description_features(self, sets: dict[str, list[str]]) -> Tensor:
        """(C, E): per training class, the normalised mean of its descriptions' normalised frozen features
        (CuPL's ensemble)."""
        missing = [c for c in self.classnames if not sets.get(c)]
        if missing:
            raise ValueError(f"no descriptions for {len(missing)} class(es), e.g. {missing[0]!r}")
        texts = [t for c in self.classnames for t in sets[c]]
        feats = self._encode_frozen(texts)
        out, i = [], 0
        for c in self.classnames:
            n = len(sets[c])
            out.append(F.normalize(feats[i:i + n].mean(0), dim=-1))
            i += n
        return torch.stack(out)

    # ------------------------------------------------------------------ prompts and edits
    def anti_noise_prompts(self) -> Tensor:
        """A = R + P_noise, (K, embed_dim); R alone without noise prompts (the ablation)."""
        return self.residual + self.noise_prompts if self.config.use_noise_prompts else self.residual

    def text_edits(self) -> TowerEdits:
        A = self.anti_noise_prompts()
        return TowerEdits(layers={l: LayerEdit("insert" if i == 0 else "replace", self.text_proj[str(l)](A), start=1)
                                  for i, l in enumerate(self.text_layers)})

    def vision_edits(self) -> TowerEdits:
        A = self.anti_noise_prompts()
        return TowerEdits(layers={l: LayerEdit("insert", self.vision_proj[str(l)](A), start=1) if i == 0 else
                                  LayerEdit("blend", self.vision_proj[str(l)](A), start=1, beta=self.config.beta)
                                  for i, l in enumerate(self.vision_layers)})

    # ------------------------------------------------------------------ class side
    def _class_tokens(self, classnames: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        """Token embeddings (C, L, D) of the class prompts (learnable context in place) and EOT indices."""
        if self.context is not None:
            return self.context.embeddings(classnames)
        return self._template_tokens.get(self.backbone, classnames, self.residual.device)

    def class_features(self, classnames: tuple[str, ...]) -> Tensor:
        if self.context is not None:
            return self.context.encode(tuple(classnames), self.text_edits()).features
        return self._template_tokens.encode(self.backbone, classnames, self.residual.device, self.text_edits()).features

    # ------------------------------------------------------------------ image side
    def vision_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(v_cls, v_rep), unnormalised: the CLS feature and the NRVPP of the prompted vision tower."""
        out = self.backbone.vision(images, self.vision_edits())
        K = self.config.n_tokens
        prompts = out.tokens[:, 1 : 1 + K]  # ln_post output at the anti-noise tokens
        v_rep = self.rep_proj(prompts.mean(dim=1), self.backbone.visual.proj)
        return out.features, v_rep

    @property
    def fusion_weight(self) -> float:
        return self.config.s

    # ------------------------------------------------------------------ training objective
    def loss(self, images: Tensor, labels: Tensor, ctx: TextContext) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        if cfg.train_noise and self.training:
            from ..attacks.noise import apply_image_noise

            images = apply_image_noise(images, cfg.train_noise)
        t = self.branch_terms(images, labels, ctx)
        v_rep = t["v_rep"]
        target = self.wa_features if self.wa_features is not None else self.noise_features
        z_noise = self.backbone.logit_scale * F.normalize(v_rep, dim=-1) @ target.t().to(v_rep.dtype)
        wa = wa_loss(z_noise, t["z_cls"], cfg.wa_scale_grad)
        loss = t["ce"] + cfg.w_sim * (t["img"] + t["txt"]) + cfg.w_wa * wa
        stats = {"loss": loss.detach(), "ce_cls": t["ce_cls"].detach(), "ce_rep": t["ce_rep"].detach(),
                 "sim_img": t["img"].detach(), "sim_txt": t["txt"].detach(), "wa": wa.detach()}
        return loss, stats


def load_descriptions(path: str) -> dict[str, list[str]]:
    """A CuPL / HPT description file: JSON object of class name -> list of sentences (one-line errors)."""
    import json
    from pathlib import Path

    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"description file not found: {p}") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"description file {p} does not read as JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                             for v in data.values()):
        raise ValueError(f"description file {p} must be a JSON object of class name -> list of sentences")
    return {str(k): [x for x in v if x.strip()] for k, v in data.items()}


def _view_seed(noise_seed: int, view: int) -> int:
    # offset so that the training views never reuse the evaluation's text-noise seeds (0, 1, 2, ...)
    return (noise_seed + 1) * 1_000_000 + view


def _perturb_text(kind: str, template: str, classname: str, seed: int, typo_rate: float) -> tuple[str, str]:
    """(template, class name) of one noise view; embedding noise is added later for every kind.

    typo / template reuse the library's weak text noise (robustprompt.attacks.noise)."""
    from ..attacks.noise import pick_template, typo

    if kind == "typo":
        return template, typo(classname, rate=typo_rate, seed=seed)
    if kind == "template":
        return pick_template(classname, seed=seed), classname
    return template, classname
