import pytest
import torch
import torch.nn.functional as F

from robustprompt.backbone import LayerEdit, TowerEdits, load_backbone
from robustprompt.errors import ModelError


@pytest.mark.parametrize("name", ["robustprompt-test", pytest.param("ViT-B-32", marks=pytest.mark.slow),
                                  pytest.param("ViT-B-16", marks=pytest.mark.slow)])
def test_no_edits_equals_open_clip(name):
    torch.manual_seed(0)
    bb = load_backbone(name, "random")
    x = torch.rand(2, 3, bb.image_size, bb.image_size)
    ids = bb.tokenize(["a photo of a cat.", "a sketch of a very small dog on a sofa."])
    with torch.no_grad():
        ours_img, ref_img = bb.encode_image(x), bb.clip.encode_image(bb.normalize(x))
        ours_txt, ref_txt = bb.encode_text(ids), bb.clip.encode_text(ids)
    assert (ours_img - ref_img).abs().max().item() <= 1e-5
    assert (ours_txt - ref_txt).abs().max().item() <= 1e-5


def test_widths_and_depths_read_from_model(tiny_backbone):
    bb = tiny_backbone
    assert (bb.vision_width, bb.vision_layers, bb.text_width, bb.text_layers) == (32, 3, 32, 3)
    assert bb.embed_dim == 32 and bb.image_size == 16 and bb.context_length == 16


def test_backbone_is_frozen_and_stays_in_eval(tiny_backbone):
    assert not any(p.requires_grad for p in tiny_backbone.parameters())
    tiny_backbone.train()
    assert not tiny_backbone.training and not tiny_backbone.clip.training


def _hook_inputs(tower_blocks):
    seen = {}

    def make(i):
        def hook(module, args, kwargs):
            seen[i] = (args[0].detach().clone(), kwargs.get("attn_mask"))
        return hook

    handles = [b.register_forward_pre_hook(make(i), with_kwargs=True) for i, b in enumerate(tower_blocks)]
    return seen, handles


def test_vision_replace_and_insert_shapes(tiny_backbone):
    bb = tiny_backbone
    x = torch.rand(2, 3, 16, 16)
    n_patches = (16 // 4) ** 2
    tok = torch.randn(2, bb.vision_width)
    seen, handles = _hook_inputs(bb.visual.transformer.resblocks)
    try:
        bb.vision(x, TowerEdits(layers={0: LayerEdit("insert", tok, start="end"),
                                        1: LayerEdit("replace", tok * 2, start="end")}))
    finally:
        for h in handles:
            h.remove()
    assert seen[0][0].shape == (2, 1 + n_patches + 2, bb.vision_width)
    assert seen[1][0].shape == (2, 1 + n_patches + 2, bb.vision_width)
    assert torch.allclose(seen[1][0][:, -2:], (tok * 2).expand(2, -1, -1))


def test_vision_insert_after_cls_then_blend(tiny_backbone):
    bb = tiny_backbone
    x = torch.rand(3, 3, 16, 16)
    tok = torch.randn(4, bb.vision_width)
    seen, handles = _hook_inputs(bb.visual.transformer.resblocks)
    edits = TowerEdits(layers={1: LayerEdit("insert", tok, start=1), 2: LayerEdit("blend", tok, start=1, beta=0.9)})
    try:
        out = bb.vision(x, edits)
    finally:
        for h in handles:
            h.remove()
    assert seen[1][0].shape[1] == 17 + 4
    assert torch.allclose(seen[1][0][:, 1:5], tok.expand(3, -1, -1))
    assert out.tokens.shape == (3, 21, bb.vision_width)
    # blend: the input of block 2 mixes the new tokens with block 1's output at those places
    x1 = bb.visual.transformer.resblocks[1](seen[1][0], attn_mask=None)
    expected = 0.9 * tok + 0.1 * x1[:, 1:5]
    assert torch.allclose(seen[2][0][:, 1:5], expected, atol=1e-6)


def test_text_insert_rebuilds_mask_and_shifts_eot(tiny_backbone):
    bb = tiny_backbone
    ids = bb.tokenize(["a photo of a cat.", "dog"])
    emb, eot = bb.embed_tokens(ids), bb.eot_index(ids)
    K = 3
    tok = torch.randn(K, bb.text_width)
    seen, handles = _hook_inputs(bb.clip.transformer.resblocks)
    try:
        out = bb.text(emb, eot, TowerEdits(layers={1: LayerEdit("insert", tok, start=1)}))
    finally:
        for h in handles:
            h.remove()
    L = int(eot.max()) + 1  # the tower drops the padding after the last EOT
    x1, mask1 = seen[1]
    assert x1.shape == (2, L + K, bb.text_width)
    assert torch.allclose(x1[:, 1:1 + K], tok.expand(2, -1, -1))
    assert mask1.shape == (L + K, L + K)
    assert torch.isinf(mask1[0, 1]) and mask1[1, 0] == 0 and torch.isinf(mask1.triu(1)[mask1.triu(1) != 0]).all()
    assert torch.equal(out.eot_index, eot + K)
    # the pooled feature is the projected EOT token of the grown sequence
    pooled = out.tokens[torch.arange(2), eot + K] @ bb.clip.text_projection
    assert torch.allclose(out.features, pooled)


def test_text_replace_keeps_length_and_eot(tiny_backbone):
    bb = tiny_backbone
    ids = bb.tokenize(["a photo of a cat."])
    emb, eot = bb.embed_tokens(ids), bb.eot_index(ids)
    tok = torch.randn(2, bb.text_width)
    seen, handles = _hook_inputs(bb.clip.transformer.resblocks)
    try:
        out = bb.text(emb, eot, TowerEdits(layers={2: LayerEdit("replace", tok, start=1)}))
    finally:
        for h in handles:
            h.remove()
    assert seen[2][0].shape[1] == int(eot.max()) + 1
    assert torch.allclose(seen[2][0][:, 1:3], tok[None])
    assert torch.equal(out.eot_index, eot)


def test_padding_after_last_eot_does_not_change_features(tiny_backbone):
    bb = tiny_backbone
    ids = bb.tokenize(["a cat", "a photo of a big dog"])
    emb, eot = bb.embed_tokens(ids), bb.eot_index(ids)
    with torch.no_grad():
        full = bb.clip.encode_text(ids)
        ours = bb.text(emb, eot).features
    assert ours.shape == full.shape and (ours - full).abs().max() <= 1e-6


def test_refiner_applies_to_block_output_and_collects(tiny_backbone):
    bb = tiny_backbone
    x = torch.rand(2, 3, 16, 16)
    plain = bb.vision(x, TowerEdits(collect=(1,)))
    doubled = bb.vision(x, TowerEdits(refiners={1: lambda h: h * 2}, collect=(1,)))
    assert torch.allclose(doubled.hidden[1], plain.hidden[1] * 2)
    assert not torch.allclose(doubled.features, plain.features)


def test_gradients_reach_edits_and_refiners_not_backbone(tiny_backbone):
    bb = tiny_backbone
    vtok = torch.randn(2, bb.vision_width, requires_grad=True)
    ttok = torch.randn(2, bb.text_width, requires_grad=True)
    refiner = torch.nn.Linear(bb.vision_width, bb.vision_width)
    x = torch.rand(2, 3, 16, 16)
    img = bb.vision(x, TowerEdits(layers={0: LayerEdit("insert", vtok, start="end"),
                                          2: LayerEdit("blend", vtok, start="end", beta=0.5)},
                                  refiners={1: lambda h: h + refiner(h)})).features
    ids = bb.tokenize(["a cat", "a dog"])
    txt = bb.text(bb.embed_tokens(ids), bb.eot_index(ids),
                  TowerEdits(layers={1: LayerEdit("insert", ttok, start=1)})).features
    (F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()).sum().backward()
    for t in (vtok, ttok, refiner.weight):
        assert t.grad is not None and t.grad.abs().sum() > 0
    assert all(p.grad is None for p in bb.parameters())


def test_edit_layer_out_of_range_is_rejected(tiny_backbone):
    with pytest.raises(ValueError, match="3 blocks"):
        tiny_backbone.vision(torch.rand(1, 3, 16, 16),
                             TowerEdits(layers={5: LayerEdit("replace", torch.zeros(1, 32))}))


def test_unknown_model_and_tag_and_missing_file():
    with pytest.raises(ModelError, match="unknown model"):
        load_backbone("ViT-Nope-99")
    with pytest.raises(ModelError, match="unknown pretrained tag"):
        load_backbone("ViT-B-32", "no-such-tag")
    with pytest.raises(ModelError, match="not found"):
        load_backbone("robustprompt-test", "/nonexistent/weights.safetensors")


def test_weights_file_roundtrip_and_mismatch(tmp_path, tiny_backbone):
    from safetensors.torch import save_file

    good = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_backbone.clip.state_dict().items()}, str(good))
    bb = load_backbone("robustprompt-test", str(good))
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(bb.encode_image(x), tiny_backbone.encode_image(x))
    assert len(bb.identity.weights_sha256) == 64
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ModelError, match="does not load"):
        load_backbone("robustprompt-test", str(truncated))
    with pytest.raises(ModelError, match="does not load"):
        load_backbone("ViT-B-32", str(good))


def test_openai_tag_sets_quick_gelu():
    from robustprompt.backbone.loading import _tag_quick_gelu

    assert _tag_quick_gelu("ViT-B-16", "openai") is True
    assert _tag_quick_gelu("ViT-B-16", "laion2b_s34b_b88k") is False


@pytest.mark.parametrize("name", ["robustprompt-test", pytest.param("ViT-B-32", marks=pytest.mark.slow)])
def test_contiguous_block_computes_open_clips_block(name, monkeypatch):
    """The CPU bf16 path (backbone.clip.block_contiguous) is open_clip's block: in fp32 it matches it
    to float rounding, forward and backward, with and without the causal mask; under CPU bf16 autocast
    the towers take it and agree with open_clip's own block path at bf16 precision."""
    from robustprompt.backbone import clip as clipmod

    bb = load_backbone(name, "random")
    g = torch.Generator().manual_seed(0)
    for blocks, mask in ((bb.visual.transformer.resblocks, None),
                         (bb.clip.transformer.resblocks, clipmod.causal_mask(9, torch.device("cpu")))):
        block = blocks[0]
        assert clipmod._contiguous_ok(block)
        x = torch.randn(3, 9, block.ln_1.normalized_shape[0], generator=g, requires_grad=True)
        ref = block(x, attn_mask=mask)
        (gref,) = torch.autograd.grad(ref.square().sum(), x)
        out = clipmod.block_contiguous(block, x, mask)
        (gout,) = torch.autograd.grad(out.square().sum(), x)
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
        assert torch.allclose(gout, gref, atol=1e-4, rtol=1e-4)

    images = torch.rand(2, 3, bb.image_size, bb.image_size, generator=g)
    ids = bb.tokenize(["a photo of a cat.", "a dog"])

    def features():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return bb.encode_image(images), bb.text(bb.embed_tokens(ids), bb.eot_index(ids)).features

    calls = []
    contiguous = clipmod.block_contiguous
    monkeypatch.setattr(clipmod, "block_contiguous", lambda *a: calls.append(1) or contiguous(*a))
    fast = features()
    assert len(calls) == bb.vision_layers + bb.text_layers
    with torch.no_grad():  # fp32 never takes the bf16 path
        bb.encode_image(images)
    assert len(calls) == bb.vision_layers + bb.text_layers
    monkeypatch.setattr(clipmod, "_contiguous_ok", lambda block: False)  # open_clip's own block forward
    slow = features()
    assert len(calls) == bb.vision_layers + bb.text_layers
    for f, s in zip(fast, slow):
        assert F.cosine_similarity(f.float(), s.float()).min() > 0.999
