"""Where IVLP / MaPLe put their prompts, MaPLe's coupling, the depth rule, KgCoOp's loss."""

import pytest
import torch
import torch.nn.functional as F

from robustprompt.components.deep_prompts import (LayerPrompts, PromptCoupling, layer_edits, resolve_depth,
                                                  vision_prompt_edits)
from robustprompt.errors import ConfigError
from robustprompt.methods.registry import create_method, method_config

SEEN = ["cat", "dog", "airplane"]
TEMPLATE = "a photo of a {}."
N_PATCH_TOKENS = 1 + (16 // 4) ** 2  # CLS + patches of the 16 px test model


def make(name, backbone, **cfg):
    torch.manual_seed(0)
    return create_method(name, backbone, SEEN, TEMPLATE, cfg)


class Recorder:
    """Inputs and outputs of every block of a tower (forward hooks, as in tests/test_backbone.py)."""

    def __init__(self, blocks, ln_pre=None):
        self.inputs, self.outputs, self.ln_pre = {}, {}, None
        self.handles = []
        for i, b in enumerate(blocks):
            self.handles.append(b.register_forward_pre_hook(self._save(self.inputs, i), with_kwargs=True))
            self.handles.append(b.register_forward_hook(self._save_out(i)))
        if ln_pre is not None:
            self.handles.append(ln_pre.register_forward_pre_hook(lambda m, args: setattr(self, "ln_pre", args[0].detach())))

    @staticmethod
    def _save(store, i):
        def hook(module, args, kwargs):
            store[i] = args[0].detach().clone()
        return hook

    def _save_out(self, i):
        def hook(module, args, out):
            self.outputs[i] = out.detach().clone()
        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def run_towers(method, backbone, images):
    with Recorder(backbone.clip.transformer.resblocks) as text, \
            Recorder(backbone.visual.transformer.resblocks, backbone.visual.ln_pre) as vision, torch.no_grad():
        method(images, method.class_context())
    return text, vision


def check_text_positions(method, backbone, text, depth, n):
    C = len(SEEN)
    pos = backbone.clip.positional_embedding
    ctx = method.text_prompt.context.ctx
    emb, _ = method.text_prompt.context.embeddings(tuple(SEEN))
    # layer 0: the context vectors sit after SOS in the token embeddings (positional embedding added);
    # the tower drops the padding after the last EOT
    L = text.inputs[0].shape[1]
    assert L == int(method.text_prompt.context.embeddings(tuple(SEEN))[1].max()) + 1
    assert torch.allclose(text.inputs[0], emb[:, :L] + pos[:L])
    assert torch.allclose(text.inputs[0][:, 1:1 + n], (ctx + pos[1:1 + n]).expand(C, -1, -1))
    deep = method.text_prompt.deep.prompts()
    assert sorted(deep) == list(range(1, depth))
    for l in range(1, depth):  # positions 1..n replaced, the rest is the previous block's output
        x, prev = text.inputs[l], text.outputs[l - 1]
        assert torch.equal(x[:, 1:1 + n], deep[l].expand(C, -1, -1))
        assert torch.equal(x[:, :1], prev[:, :1]) and torch.equal(x[:, 1 + n:], prev[:, 1 + n:])
    for l in range(depth, backbone.text_layers):  # nothing at layers >= depth
        assert torch.equal(text.inputs[l], text.outputs[l - 1])


def check_vision_positions(backbone, vision, prompts, depth, n):
    B = vision.inputs[0].shape[0]
    assert vision.ln_pre.shape[1] == N_PATCH_TOKENS + n
    assert torch.allclose(vision.ln_pre[:, -n:], prompts[0].expand(B, -1, -1))  # appended, no positional emb
    for l in range(1, depth):  # the last n tokens replaced, CLS + patches from the previous block
        x, prev = vision.inputs[l], vision.outputs[l - 1]
        assert x.shape[1] == N_PATCH_TOKENS + n
        assert torch.allclose(x[:, -n:], prompts[l].expand(B, -1, -1))
        assert torch.equal(x[:, :-n], prev[:, :-n])
    for l in range(depth, backbone.vision_layers):
        assert torch.equal(vision.inputs[l], vision.outputs[l - 1])


# ------------------------------------------------------------------ depth rule
def test_depth_rule():
    assert resolve_depth(9, 12) == 9 and resolve_depth(12, 12) == 9 + 3
    assert resolve_depth(9, 6) == 5 and resolve_depth(9, 3) == 2 and resolve_depth(1, 3) == 1
    assert resolve_depth(9, 24) == 18
    assert resolve_depth(9, 6, "clamp") == 6 and resolve_depth(9, 24, "clamp") == 9
    assert resolve_depth(3, 6, "exact") == 3
    assert resolve_depth(0, 6) == resolve_depth(0, 6, "exact") == 0
    with pytest.raises(ConfigError, match="exceeds the 3 layers"):
        resolve_depth(9, 3, "exact")
    with pytest.raises(ConfigError, match="reference"):
        resolve_depth(13, 24, "scale")


def test_depth_out_of_range_fails_when_the_method_is_built(tiny_backbone):
    with pytest.raises(ConfigError, match="depth_text 9 exceeds the 3 layers"):
        make("ivlp", tiny_backbone, depth_text=9, depth_rule="exact")
    with pytest.raises(ConfigError, match="depth 4 exceeds"):
        make("maple", tiny_backbone, depth=4, depth_rule="exact")


@pytest.mark.parametrize("name, values, match", [
    ("ivlp", {"depth_text": 0}, "depth_text must be >= 1"),
    ("ivlp", {"n_ctx_vision": 0}, "n_ctx_vision"),
    ("ivlp", {"depth_vision": 13}, "depth_rule 'scale'"),
    ("ivlp", {"n_ctx_text": 5}, "fewer words"),
    ("maple", {"depth": 0}, "depth must be >= 1"),
    ("maple", {"depth_rule": "deep"}, "depth_rule"),
    ("kgcoop", {"kg_weight": -1.0}, "kg_weight"),
    ("kgcoop", {"kg_template": "a photo"}, "kg_template"),
    ("coop", {"init_std": 0.0}, r"init_std must be > 0, got 0.0"),
    ("cocoop", {"text_batch": 0}, r"text_batch must be >= 1, got 0"),
    ("promptsrc", {"gpa_std": -1.0}, r"gpa_std must be >= 0, got -1.0"),
    ("mmrl", {"alpha": 1.5}, r"alpha must be in \[0, 1\], got 1.5"),
    ("mmrl", {"first_layer": 13}, r"first_layer must be in 1..layer_ref_depth \(12\), got 13"),
    ("anprompt", {"layer_ref_depth": 0}, r"layer_ref_depth must be >= 1, got 0"),
    ("anprompt", {"s": -0.1}, r"s must be in \[0, 1\], got -0.1"),
    ("anprompt", {"aux_weight": -1.0}, r"aux_weight must be >= 0, got -1.0"),
    ("naptuning", {"refiner_ratio": 0.0}, r"refiner_ratio must be > 0, got 0.0"),
])
def test_config_validation(name, values, match):
    with pytest.raises(ConfigError, match=match):
        method_config(name, values)


def test_defaults_scale_depth_9_to_the_tiny_model(tiny_backbone):
    ivlp, maple = make("ivlp", tiny_backbone), make("maple", tiny_backbone)
    assert ivlp.depth_text == ivlp.depth_vision == maple.depth == 2  # round(9 * 3 / 12)
    assert set(ivlp.learnable_parameters()) == {
        "text_prompt.context.ctx", "text_prompt.deep.tokens.1", "vision_prompt.tokens.0", "vision_prompt.tokens.1"}
    assert set(maple.learnable_parameters()) == {
        "text_prompt.context.ctx", "text_prompt.deep.tokens.1", "coupling.proj.0.weight", "coupling.proj.0.bias",
        "coupling.proj.1.weight", "coupling.proj.1.bias"}


# ------------------------------------------------------------------ IVLP
@pytest.mark.parametrize("depth", [1, 2])
def test_ivlp_prompt_positions(full_text_path, depth):
    bb = full_text_path  # the hooks see each block's whole input (the shared-prefix path splits it)
    m = make("ivlp", bb, depth_text=depth, depth_vision=depth, depth_rule="exact")
    text, vision = run_towers(m, bb, torch.rand(2, 3, 16, 16))
    check_text_positions(m, bb, text, depth, 2)
    check_vision_positions(bb, vision, m.vision_prompt.prompts(), depth, 2)


def test_ivlp_initialisation_follows_the_authors(tiny_backbone):
    bb = tiny_backbone
    m = make("ivlp", bb, n_ctx_text=2, n_ctx_vision=3, depth_text=3, depth_vision=3, depth_rule="exact")
    ids = bb.tokenize(["a photo of a"])
    assert torch.equal(m.text_prompt.context.ctx.detach(), bb.embed_tokens(ids)[0, 1:3])  # "a photo"
    assert m.text_prompt.context.prefix_text == "a photo of a"
    vis = torch.stack([p.detach() for p in m.vision_prompt.prompts().values()])
    assert vis.shape == (3, 3, bb.vision_width)
    deep = torch.cat([p.detach() for p in m.text_prompt.deep.prompts().values()])
    for t in (vis, deep):  # N(0, 0.02)
        assert abs(t.mean().item()) < 0.01 and 0.012 < t.std().item() < 0.03


def test_ivlp_language_only(tiny_backbone):
    bb = tiny_backbone
    m = make("ivlp", bb, depth_vision=0)
    assert m.frozen_image_side and m.vision_prompt is None
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(m.image_features(x), bb.encode_image(x))


# ------------------------------------------------------------------ MaPLe
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_maple_prompt_positions_and_coupling(full_text_path, depth):
    bb = full_text_path  # the hooks see each block's whole input (the shared-prefix path splits it)
    m = make("maple", bb, depth=depth, depth_rule="exact")
    text, vision = run_towers(m, bb, torch.rand(2, 3, 16, 16))
    check_text_positions(m, bb, text, depth, 2)
    text_prompts = m.text_prompt.prompts()
    assert sorted(text_prompts) == list(range(depth)) and text_prompts[0] is m.text_prompt.context.ctx
    with torch.no_grad():  # vision prompts are Linear_l(text prompts of layer l), at every prompted layer
        coupled = {l: m.coupling.proj[str(l)](text_prompts[l]) for l in range(depth)}
    check_vision_positions(bb, vision, coupled, depth, 2)


def test_maple_text_context_replaces_a_photo(tiny_backbone):
    bb = tiny_backbone
    m = make("maple", bb)
    emb, eot = m.text_prompt.context.embeddings(("cat",))
    ref = bb.embed_tokens(bb.tokenize(["a photo of a cat."]))
    assert torch.equal(emb[0, 3:], ref[0, 3:])  # "of a cat." stays fixed text
    assert torch.equal(emb[0, 1:3], m.text_prompt.context.ctx.detach())
    assert torch.equal(emb[0, 1:3], ref[0, 1:3])  # initialised from "a photo"


def test_maple_coupling_init_is_tied_for_deeper_layers(tiny_backbone):
    m = make("maple", tiny_backbone, depth=3, depth_rule="exact")
    p = m.coupling.proj
    assert torch.equal(p["1"].weight, p["2"].weight) and torch.equal(p["1"].bias, p["2"].bias)
    assert p["1"].weight is not p["2"].weight and not torch.equal(p["0"].weight, p["1"].weight)
    untied = make("maple", tiny_backbone, depth=3, depth_rule="exact", tie_init=False).coupling.proj
    assert not torch.equal(untied["1"].weight, untied["2"].weight)


def test_maple_vision_gradient_reaches_text_prompts(tiny_backbone):
    # coupled: a loss on the image features alone trains the text prompts through the projections
    m = make("maple", tiny_backbone)
    m.image_features(torch.rand(2, 3, 16, 16)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.text_prompt.prompts().values())


# ------------------------------------------------------------------ components
def test_layer_edits_modes():
    toks = {4: torch.ones(2, 8), 2: torch.zeros(2, 8), 3: torch.full((2, 8), 2.0)}
    e = layer_edits(toks, 1, first="insert", later="blend", beta=0.9)
    assert [(l, e[l].mode, e[l].beta) for l in sorted(e)] == [(2, "insert", 1.0), (3, "blend", 0.9), (4, "blend", 0.9)]
    v = vision_prompt_edits(toks)
    assert [(v[l].mode, v[l].start) for l in sorted(v)] == [("insert", "end"), ("replace", "end"), ("replace", "end")]


def test_layer_prompts_and_coupling_shapes():
    lp = LayerPrompts([5, 3], 4, 16)
    assert lp.layers == (3, 5) and [tuple(t.shape) for t in lp.prompts().values()] == [(4, 16), (4, 16)]
    assert sorted(n for n, _ in lp.named_parameters()) == ["tokens.3", "tokens.5"]
    c = PromptCoupling(lp.layers, 16, 24)
    out = c(lp.prompts())
    assert sorted(out) == [3, 5] and out[3].shape == (4, 24)
    with pytest.raises(ValueError, match="no prompts"):
        c({3: torch.zeros(4, 16)})


# ------------------------------------------------------------------ KgCoOp
def test_kgcoop_defaults_reuse_coop(tiny_backbone):
    from robustprompt.methods.coop import CoOp

    m = make("kgcoop", tiny_backbone)
    assert isinstance(m, CoOp) and m.frozen_image_side
    assert list(m.learnable_parameters()) == ["prompt.ctx"] and m.prompt.ctx.shape == (4, tiny_backbone.text_width)
    assert m.config.kg_weight == 8.0 and m.prompt.prefix_text == "a photo of a"


def test_kgcoop_loss_is_ce_plus_lambda_times_one_minus_mean_cos(tiny_backbone, monkeypatch):
    bb = tiny_backbone
    m = make("kgcoop", bb, kg_weight=3.0, kg_template="itap of a {}.")
    with torch.no_grad():
        m.prompt.ctx.add_(0.5 * torch.randn_like(m.prompt.ctx))  # move away from the hand-crafted prompt
    zs = bb.text_features([f"itap of a {c}." for c in SEEN])
    calls = []
    original = bb.text_features
    monkeypatch.setattr(bb, "text_features", lambda texts, *a, **k: calls.append(list(texts)) or original(texts, *a, **k))
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 1])
    ctx = m.class_context()
    loss, stats = m.loss(x, y, ctx)
    expected_ce = F.cross_entropy(m(x, ctx), y)
    expected_kg = 1 - (ctx.features * zs).sum(-1).mean()
    assert torch.allclose(loss, expected_ce + 3.0 * expected_kg, atol=1e-5)
    assert stats["kg"].item() == pytest.approx(expected_kg.item(), abs=1e-5) and stats["kg"].item() > 0.01
    assert stats["ce"].item() == pytest.approx(expected_ce.item(), abs=1e-5)
    for _ in range(2):  # zero-shot features are computed once, not per step
        m.loss(x, y, m.class_context())
    assert calls == [[f"itap of a {c}." for c in SEEN]]
    loss_ff, _ = m.loss_from_features(m.image_features(x), y, ctx)
    assert torch.allclose(loss_ff, loss)


def test_kgcoop_uses_the_dataset_template_by_default(tiny_backbone):
    m = make("kgcoop", tiny_backbone)
    ref = tiny_backbone.text_features([TEMPLATE.format(c) for c in SEEN])
    assert torch.allclose(m.zeroshot_features(tuple(SEEN)), ref)
    assert not m.zeroshot_features(tuple(SEEN)).requires_grad


def test_kgcoop_dtd_template_is_kgcoops_own(tiny_backbone):
    """KgCoOp's code (htyao89/KgCoOp@c43ccc3) uses "a photo of a {}, a type of texture." for DTD, where
    CoOp's template (the dataset's) is "{} texture."."""
    from robustprompt.data.benchmarks import TEMPLATES
    from robustprompt.methods.registry import create_method

    torch.manual_seed(0)
    m = create_method("kgcoop", tiny_backbone, ["banded", "woven"], TEMPLATES["dtd"], {"n_ctx": 4})
    ref = tiny_backbone.text_features(["a photo of a banded, a type of texture.", "a photo of a woven, a type of texture."])
    assert torch.allclose(m.zeroshot_features(("banded", "woven")), ref)
