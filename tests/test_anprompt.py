"""ANPrompt (METHODS.md): k-means, fusion, prompt placement, NRVPP, WALoss, inference rule, learnable state."""

import math

import pytest
import torch
import torch.nn.functional as F

from robustprompt.components.kmeans import kmeans
from robustprompt.components.lora import LowRankUpdate
from robustprompt.attacks.noise import ALT_TEMPLATES, typo
from robustprompt.components.two_branch import prompted_layers
from robustprompt.methods.anprompt import embedding_noise, fuse, wa_loss
from robustprompt.methods.registry import create_method, list_methods, method_config

CLASSES = ["cat", "dog", "airplane", "sea turtle"]
SMALL = dict(n_tokens=3, n_noise_views=4, rep_lora_rank=4)  # tiny tower: 3 blocks -> prompted blocks 1, 2


def make(bb, classes=CLASSES, **kw):
    torch.manual_seed(0)
    return create_method("anprompt", bb, classes, "a photo of a {}.", {**SMALL, **kw})


@pytest.fixture(scope="module")
def method(tiny_backbone):
    return make(tiny_backbone)


def images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g)


def hook_block_inputs(blocks):
    seen = {}

    def make_hook(i):
        def hook(module, args, kwargs):
            seen[i] = args[0].detach().clone()
        return hook

    return seen, [b.register_forward_pre_hook(make_hook(i), with_kwargs=True) for i, b in enumerate(blocks)]


# ---------------------------------------------------------------- k-means
def blobs(seed=0, n=30):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    pts = torch.cat([c + 0.3 * torch.randn(n, 2, generator=g) for c in centres])
    return pts, centres


def test_kmeans_is_deterministic():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(3))
    a, b = kmeans(x, 6, seed=5), kmeans(x, 6, seed=5)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.labels, b.labels)
    global_state = torch.get_rng_state()
    kmeans(x, 6, seed=5)
    assert torch.equal(global_state, torch.get_rng_state())  # never touches the global RNG


def test_kmeans_recovers_separated_blobs():
    pts, centres = blobs()
    for seed in range(5):
        res = kmeans(pts, 4, seed=seed)
        assert res.converged
        found = sorted(res.centroids.tolist())
        assert torch.allclose(torch.tensor(found), torch.tensor(sorted(centres.tolist())), atol=0.2)
        # each blob is one cluster
        assert all(len(set(res.labels[i * 30:(i + 1) * 30].tolist())) == 1 for i in range(4))
        assert len(set(res.labels.tolist())) == 4


def test_kmeans_rejects_bad_k():
    with pytest.raises(ValueError):
        kmeans(torch.randn(3, 2), 4)


# ---------------------------------------------------------------- low-rank update
def test_lora_small_init_gives_both_factors_a_gradient():
    W, x = torch.randn(8, 5), torch.randn(4, 8)
    lora = LowRankUpdate(8, 5, rank=3, up_init_std=1e-4)
    assert 0 < lora.delta().abs().max() < 1e-3
    lora(x, W).pow(2).sum().backward()
    assert lora.down.grad.abs().sum() > 0 and lora.up.grad.abs().sum() > 0


def test_lora_update_starts_at_zero_and_matches_full_matrix():
    W = torch.randn(8, 5)
    lora = LowRankUpdate(8, 5, rank=3)
    x = torch.randn(4, 8)
    assert torch.equal(lora(x, W), x @ W)
    with torch.no_grad():
        lora.up.normal_()
    assert torch.allclose(lora(x, W), x @ (W + lora.down @ lora.up), atol=1e-5)
    assert torch.allclose(lora.weight(W), W + lora.delta())


# ---------------------------------------------------------------- pure functions
def test_fusion_formula():
    t = F.normalize(torch.randn(5, 8), dim=-1)
    tn = torch.randn(5, 8) * 3.0
    expected = t + 0.1 * tn / tn.norm(dim=-1, keepdim=True)
    expected = expected / expected.norm(dim=-1, keepdim=True)
    assert torch.allclose(fuse(t, tn, 0.1), expected, atol=1e-6)
    assert torch.allclose(fuse(t, tn, 0.0), t, atol=1e-6)


def test_waloss_scale_matches_hand_computation():
    z_noise = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    z_cls = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, -2.0]])
    p = [[math.exp(v) for v in row] for row in z_noise.tolist()]
    p = [[v / sum(row) for v in row] for row in p]
    q = [[math.exp(v) for v in row] for row in z_cls.tolist()]
    q = [[v / sum(row) for v in row] for row in q]
    kl = sum(pi * math.log(pi / qi) for pr, qr in zip(p, q) for pi, qi in zip(pr, qr))
    vals = z_cls.flatten().tolist()
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    expected = kl / (std * len(vals))
    assert wa_loss(z_noise, z_cls).item() == pytest.approx(expected, rel=1e-5)
    assert wa_loss(z_noise, z_cls, scale_grad=True).item() == pytest.approx(expected, rel=1e-5)
    assert wa_loss(z_cls, z_cls).item() == pytest.approx(0.0, abs=1e-6)


def test_waloss_scale_is_constant_unless_asked():
    z_noise = torch.randn(2, 3)
    z1 = torch.randn(2, 3, requires_grad=True)
    z2 = z1.detach().clone().requires_grad_(True)
    wa_loss(z_noise, z1).backward()
    wa_loss(z_noise, z2, scale_grad=True).backward()
    assert not torch.allclose(z1.grad, z2.grad)


def test_layer_rule():
    assert prompted_layers(12, 6, 12) == [5, 6, 7, 8, 9, 10, 11]  # layers 6..12 of 12 (1-based)
    assert prompted_layers(24, 6, 12) == list(range(10, 24))
    assert prompted_layers(3, 6, 12) == [1, 2]
    assert prompted_layers(6, 6, 12) == [2, 3, 4, 5]
    assert prompted_layers(12, 1, 12) == list(range(12))
    assert prompted_layers(12, 12, 12) == [11]


# ---------------------------------------------------------------- construction
def test_registered_and_config_validated():
    assert "anprompt" in list_methods()
    cfg = method_config("anprompt", {})
    assert (cfg.n_tokens, cfg.n_noise_views, cfg.embed_noise_std, cfg.text_noise, cfg.fuse_alpha) == (6, 8, 0.02, "all", 0.1)
    assert (cfg.first_layer, cfg.layer_ref_depth, cfg.beta, cfg.rep_lora_rank) == (6, 12, 0.9, 64)
    assert (cfg.s, cfg.w_sim, cfg.w_wa) == (0.5, 10.0, 1.0)  # s and w_sim: the authors' train.py
    from robustprompt.errors import ConfigError
    for bad in ({"s": 1.5}, {"beta": -0.1}, {"first_layer": 13}, {"text_noise": "loud"}, {"n_tokens": 0},
                {"template": "no slot"}, {"learn_template": True, "template": "{} texture."}):
        with pytest.raises(ConfigError):
            method_config("anprompt", bad)


def test_preset_loads():
    from robustprompt.config import build_run_config

    cfg = build_run_config("anprompt")
    assert cfg.method == "anprompt"
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.batch_size, cfg.train.epochs, cfg.train.warmup_epochs) == \
        ("adamw", 1e-3, 4, 10, 1)


def test_noise_prompts_are_deterministic(tiny_backbone):
    a = make(tiny_backbone)
    torch.manual_seed(123)  # the global RNG does not matter for the frozen noise features
    b = create_method("anprompt", tiny_backbone, CLASSES, "a photo of a {}.", SMALL)
    assert torch.equal(a.noise_prompts, b.noise_prompts)
    assert torch.equal(a.noise_features, b.noise_features)
    c = make(tiny_backbone, noise_seed=1)
    assert not torch.equal(a.noise_prompts, c.noise_prompts)
    assert a.noise_prompts.shape == (3, tiny_backbone.embed_dim)


def test_ablation_without_noise_prompts_uses_the_residual_alone(tiny_backbone):
    a = make(tiny_backbone)
    b = make(tiny_backbone, use_noise_prompts=False)
    with torch.no_grad():
        b.load_learnable_state(a.learnable_state())
    assert torch.equal(a.anti_noise_prompts(), a.residual + a.noise_prompts)
    assert torch.equal(b.anti_noise_prompts(), b.residual)
    x = images()
    with torch.no_grad():
        assert not torch.allclose(a(x, a.class_context()), b(x, b.class_context()))


def test_noise_features_are_close_to_clean_and_fused(tiny_backbone, method):
    t = tiny_backbone.text_features([f"a photo of a {c}." for c in CLASSES])
    assert torch.allclose(method.text_frozen, t, atol=1e-5)
    cos = (method.noise_features * t).sum(-1)
    assert (cos > 0.95).all()  # weak noise: alpha 0.1 keeps f next to t
    # with no noise at all every view equals the clean feature, fused with itself
    quiet = make(tiny_backbone, embed_noise_std=0.0, text_noise="embed")
    assert torch.allclose(quiet.noise_features, fuse(t, t, 0.1), atol=1e-5)


def test_embedding_noise_is_relative_and_only_on_masked_tokens():
    emb = torch.randn(2, 5, 512) * torch.tensor([1.0, 10.0, 0.1, 1.0, 3.0]).view(1, 5, 1)
    mask = torch.zeros(2, 5, 1)
    mask[:, 1:3] = 1.0
    noisy = embedding_noise(emb, mask, 0.02, torch.Generator().manual_seed(0))
    diff = noisy - emb
    assert torch.equal(diff[:, [0, 3, 4]], torch.zeros_like(diff[:, [0, 3, 4]]))
    ratio = diff[:, 1:3].norm(dim=-1) / emb[:, 1:3].norm(dim=-1)
    assert torch.allclose(ratio, torch.full_like(ratio, 0.02), rtol=0.15)


def test_noise_views_use_the_library_text_noise(tiny_backbone, method):
    views = method.noise_view_prompts(("sea turtle",))
    assert len(views) == 4
    tpl = "a photo of a {}."
    assert views[0] == (tpl, "sea turtle")  # kinds cycle embed, typo, template
    assert views[3] == (tpl, "sea turtle")
    assert views[1][0] == tpl and views[1][1] != "sea turtle"
    assert views[1][1] == typo("sea turtle", 0.1, seed=1_000_001)
    assert views[2][0] in ALT_TEMPLATES and views[2][1] == "sea turtle"
    # the class-name spans cover exactly the name's tokens, whatever the template
    texts, spans = method._texts_and_name_spans(views)
    bb = tiny_backbone
    for (t, name), text, (a, b) in zip(views, texts, spans):
        ids = bb.tokenize([text])[0]
        name_ids = bb.tokenize([name])[0]
        n = int(bb.eot_index(name_ids[None])[0]) - 1
        assert torch.equal(ids[a:b], name_ids[1:1 + n])
    only_typo = make(tiny_backbone, text_noise="typo").noise_view_prompts(("cat",))
    assert all(t == tpl and n != "cat" for t, n in only_typo)
    only_embed = make(tiny_backbone, text_noise="embed")
    assert not torch.equal(only_embed.noise_features, method.noise_features)


def test_too_few_points_for_kmeans(tiny_backbone):
    from robustprompt.errors import ConfigError

    with pytest.raises(ConfigError, match="n_tokens"):
        make(tiny_backbone, classes=["cat"], n_tokens=5, n_noise_views=2)


# ---------------------------------------------------------------- placement in the towers
def test_text_insert_then_replace_and_eot_shift(tiny_backbone, method):
    bb = tiny_backbone
    K = method.config.n_tokens
    assert method.text_layers == [1, 2]
    ids = bb.tokenize([f"a photo of a {c}." for c in CLASSES])
    eot = bb.eot_index(ids)
    A = method.anti_noise_prompts().detach()
    seen, handles = hook_block_inputs(bb.clip.transformer.resblocks)
    try:
        with torch.no_grad():
            emb, eot_in = method._class_tokens(tuple(CLASSES))
            out = bb.text(emb, eot_in, method.text_edits())
    finally:
        for h in handles:
            h.remove()
    L = int(eot_in.max()) + 1  # the tower drops the padding after the last EOT
    assert seen[0].shape[1] == L  # block 0 unprompted
    assert seen[1].shape[1] == L + K  # inserted at the first prompted layer
    with torch.no_grad():
        t1 = method.text_proj["1"](A)
        t2 = method.text_proj["2"](A)
        x0 = bb.clip.transformer.resblocks[0](seen[0], attn_mask=bb.clip.attn_mask[:L, :L])
        x1 = bb.clip.transformer.resblocks[1](seen[1], attn_mask=torch.full((L + K, L + K), float("-inf")).triu_(1))
    assert torch.allclose(seen[1][:, 1:1 + K], t1.expand(len(CLASSES), -1, -1), atol=1e-6)  # after SOS
    assert torch.allclose(seen[1][:, :1], x0[:, :1], atol=1e-6)  # SOS stays first
    assert torch.allclose(seen[1][:, 1 + K:], x0[:, 1:], atol=1e-6)  # the rest shifted by K
    assert torch.allclose(seen[2][:, 1:1 + K], t2.expand(len(CLASSES), -1, -1), atol=1e-6)  # replaced
    assert torch.allclose(seen[2][:, 1 + K:], x1[:, 1 + K:], atol=1e-5)
    assert torch.equal(out.eot_index, eot + K)


def test_vision_insert_then_blend(tiny_backbone, method):
    bb = tiny_backbone
    K, beta = method.config.n_tokens, method.config.beta
    assert method.vision_layers == [1, 2]
    x = images()
    A = method.anti_noise_prompts().detach()
    seen, handles = hook_block_inputs(bb.visual.transformer.resblocks)
    try:
        with torch.no_grad():
            method.vision_features(x)
    finally:
        for h in handles:
            h.remove()
    n = 1 + 16
    assert seen[0].shape[1] == n and seen[1].shape[1] == n + K and seen[2].shape[1] == n + K
    with torch.no_grad():
        v1 = method.vision_proj["1"](A)
        v2 = method.vision_proj["2"](A)
        x0 = bb.visual.transformer.resblocks[0](seen[0])
        x1 = bb.visual.transformer.resblocks[1](seen[1])
    assert torch.allclose(seen[1][:, 1:1 + K], v1.expand(3, -1, -1), atol=1e-6)  # inserted after CLS
    assert torch.allclose(seen[1][:, :1], x0[:, :1], atol=1e-6)
    assert torch.allclose(seen[1][:, 1 + K:], x0[:, 1:], atol=1e-6)
    assert torch.allclose(seen[2][:, 1:1 + K], beta * v2 + (1 - beta) * x1[:, 1:1 + K], atol=1e-5)  # blended
    assert torch.allclose(seen[2][:, 1 + K:], x1[:, 1 + K:], atol=1e-6)


def test_nrvpp_is_mean_of_projected_output_prompt_tokens(tiny_backbone):
    bb = tiny_backbone
    K = SMALL["n_tokens"]
    x = images()
    m = make(bb)
    with torch.no_grad():
        m.rep_proj.up.normal_(std=0.1)  # a clearly non-zero update, so the test sees it
        v_cls, v_rep = m.vision_features(x)
        out = bb.vision(x, m.vision_edits())
        W = bb.visual.proj + m.rep_proj.down @ m.rep_proj.up
        manual = torch.stack([out.tokens[:, 1 + k] @ W for k in range(K)]).mean(0)
    assert torch.allclose(v_rep, manual, atol=1e-5)
    assert torch.allclose(v_cls, out.tokens[:, 0] @ bb.visual.proj, atol=1e-6)


# ---------------------------------------------------------------- logits, loss, inference
def test_inference_rule_uses_rep_only_for_seen_classes(tiny_backbone, method):
    x = images()
    with torch.no_grad():
        v_cls, v_rep = method.vision_features(x)
        ctx = method.class_context()
        assert ctx.seen
        tau = tiny_backbone.logit_scale
        z_cls = tau * F.normalize(v_cls, dim=-1) @ ctx.features.t()
        z_rep = tau * F.normalize(v_rep, dim=-1) @ ctx.features.t()
        s = method.config.s
        assert torch.allclose(method(x, ctx), s * z_cls + (1 - s) * z_rep, atol=1e-5)
        novel = method.class_context(["horse", "ship"])
        assert not novel.seen
        z_novel = tau * F.normalize(v_cls, dim=-1) @ novel.features.t()
        assert torch.allclose(method(x, novel), z_novel, atol=1e-5)
        assert not torch.allclose(z_cls, z_rep)


def test_loss_parts(tiny_backbone, method):
    x, y = images(4), torch.tensor([0, 1, 2, 3])
    ctx = method.class_context()
    loss, stats = method.loss(x, y, ctx)
    assert torch.isfinite(loss)
    s, w = method.config.s, method.config.w_sim
    stats = {k: v.item() for k, v in stats.items()}  # terms come back as detached tensors (no device sync)
    expected = s * stats["ce_cls"] + (1 - s) * stats["ce_rep"] + w * (stats["sim_img"] + stats["sim_txt"]) + stats["wa"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    zero = make(tiny_backbone, w_sim=0.0, w_wa=0.0, s=1.0)
    l0, s0 = zero.loss(x, y, zero.class_context())
    assert l0.item() == pytest.approx(s0["ce_cls"].item(), rel=1e-6)
    with pytest.raises(ValueError):
        method.loss(x, y[:2], method.class_context(["horse", "ship"]))


def test_only_specified_parameters_learn_and_each_gets_a_gradient(tiny_backbone):
    m = make(tiny_backbone)
    names = set(m.learnable_parameters())
    expected = {"residual", "rep_proj.down", "rep_proj.up"}
    expected |= {f"{t}_proj.{l}.{p}" for t in ("text", "vision") for l in (1, 2) for p in ("weight", "bias")}
    assert names == expected
    assert not any(p.requires_grad for p in tiny_backbone.parameters())
    loss, _ = m.loss(images(4), torch.tensor([0, 1, 2, 3]), m.class_context())
    loss.backward()
    for n, p in m.learnable_parameters().items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    assert all(p.grad is None for p in tiny_backbone.parameters())


def test_learnable_template_option(tiny_backbone):
    m = make(tiny_backbone, learn_template=True)
    assert "context.ctx" in m.learnable_parameters()
    assert m.learnable_parameters()["context.ctx"].shape == (4, tiny_backbone.text_width)  # "a photo of a"
    loss, _ = m.loss(images(2), torch.tensor([0, 1]), m.class_context())
    loss.backward()
    assert m.context.ctx.grad.abs().sum() > 0


def test_save_load_round_trip(tiny_backbone, method):
    x = images()
    with torch.no_grad():
        for p in method.learnable_parameters().values():
            p.add_(0.05 * torch.randn_like(p))
        state = method.learnable_state()
        ref_seen = method(x, method.class_context())
        ref_novel = method(x, method.class_context(["horse", "ship"]))
    torch.manual_seed(99)  # a fresh method with other random initial values
    fresh = create_method("anprompt", tiny_backbone, CLASSES, "a photo of a {}.", SMALL)
    fresh.load_learnable_state(state)
    with torch.no_grad():
        assert torch.equal(fresh(x, fresh.class_context()), ref_seen)
        assert torch.equal(fresh(x, fresh.class_context(["horse", "ship"])), ref_novel)
    from robustprompt.errors import CheckpointError
    with pytest.raises(CheckpointError):
        make(tiny_backbone, n_tokens=2).load_learnable_state(state)


# ---------------------------------------------------------------- through the engine
def test_engine_trains_saves_and_reloads_base_then_novel(tmp_path):
    from helpers import make_imagefolder

    from robustprompt.config import build_run_config
    from robustprompt.engine import train
    from robustprompt.engine.runs import evaluate_run, load_run
    from robustprompt.engine.train import build

    tree = make_imagefolder(tmp_path / "colours", n_per_class=12)
    cfg = build_run_config("anprompt", values={
        "model": {"name": "robustprompt-test", "pretrained": "random"},
        "data": {"dataset": "imagefolder", "root": str(tree), "shots": 2, "split": "base"},
        "train": {"epochs": 2, "batch_size": 4, "eval_batch_size": 16},
        "method_cfg": SMALL})
    setup = build(cfg)
    before = {n: p.detach().clone() for n, p in setup.method.learnable_parameters().items()}
    res = train(cfg, tmp_path / "run", setup=setup)
    assert res["evaluations"][-1]["metric"] == "clean_acc"
    assert res["train"]["wa_target"] == "noise"  # an image folder has no class descriptions
    assert any(not torch.equal(before[n], p) for n, p in setup.method.learnable_parameters().items())
    _, loaded = load_run(tmp_path / "run")
    x = images()
    with torch.no_grad():
        assert torch.allclose(loaded(x, loaded.class_context()), setup.method(x, setup.method.class_context()),
                              atol=1e-6)
    novel = evaluate_run(tmp_path / "run", split="novel", write=False)
    assert novel[0]["split"] == "novel" and 0.0 <= novel[0]["value"] <= 1.0


# ---------------------------------------------------------------- WALoss target from descriptions (issue 15)
def _ds(descriptions=None, name="toy"):
    from robustprompt.data.base import DatasetSplits

    return DatasetSplits(name=name, classnames=list(CLASSES), train=[], val=[], test=[], descriptions=descriptions)


DESCRIPTIONS = {c: [f"a {c} is a thing.", f"the {c} has a shape."] for c in CLASSES}


def test_description_target_is_cupl_mean_of_normalised_sentence_features(tiny_backbone, tmp_path):
    import json

    m = make(tiny_backbone)
    assert m.wa_target_used == "noise" and m.wa_features is None
    m.prepare(_ds(DESCRIPTIONS))
    assert m.wa_target_used == "descriptions" and m.run_info() == {"wa_target": "descriptions"}
    by_hand = []
    for c in CLASSES:
        f = m._encode_frozen(DESCRIPTIONS[c])
        by_hand.append(F.normalize(f.mean(0), dim=-1))
    assert torch.allclose(m.wa_features, torch.stack(by_hand), atol=1e-6)
    # a file wins over the dataset's own; the auxiliary set enters with aux_weight
    path, aux = tmp_path / "d.json", tmp_path / "aux.json"
    path.write_text(json.dumps(DESCRIPTIONS))
    aux.write_text(json.dumps({c: [f"{c}!"] for c in CLASSES}))
    m2 = make(tiny_backbone, descriptions=str(path), descriptions_aux=str(aux), aux_weight=0.5)
    m2.prepare(_ds(None))
    expected = F.normalize(torch.stack(by_hand) + 0.5 * m2.description_features({c: [f"{c}!"] for c in CLASSES}), dim=-1)
    assert torch.allclose(m2.wa_features, expected, atol=1e-6)


def test_description_target_changes_only_waloss(tiny_backbone):
    x, y = images(), torch.tensor([0, 1, 2])
    a, b = make(tiny_backbone), make(tiny_backbone)
    b.prepare(_ds(DESCRIPTIONS))
    _, sa = a.loss(x, y, a.class_context())
    _, sb = b.loss(x, y, b.class_context())
    assert sa["wa"].item() != sb["wa"].item()
    assert all(sa[k].item() == pytest.approx(sb[k].item(), abs=1e-6) for k in ("ce_cls", "ce_rep", "sim_img", "sim_txt"))


def test_description_target_errors_and_auto_fallback(tiny_backbone, tmp_path):
    m = make(tiny_backbone)
    m.prepare(_ds(None))  # auto, nothing to read: the weak-noise target, recorded
    assert m.wa_target_used == "noise"
    with pytest.raises(ValueError, match="needs class descriptions"):
        make(tiny_backbone, wa_target="descriptions").prepare(_ds(None))
    with pytest.raises(ValueError, match="no descriptions for 1 class"):
        make(tiny_backbone).prepare(_ds({c: DESCRIPTIONS[c] for c in CLASSES[:3]}))
    bad = tmp_path / "bad.json"
    bad.write_text('["not", "a", "mapping"]')
    with pytest.raises(ValueError, match="class name -> list of sentences"):
        make(tiny_backbone, descriptions=str(bad)).prepare(_ds(None))
    with pytest.raises(ValueError, match="not found"):
        make(tiny_backbone, descriptions=str(tmp_path / "none.json")).prepare(_ds(None))


def test_train_noise_perturbs_training_images_only(tiny_backbone):
    from robustprompt.errors import ConfigError

    x, y = images(), torch.tensor([0, 1, 2])
    a, b = make(tiny_backbone), make(tiny_backbone, train_noise="gaussian:0.05")
    a.train(), b.train()
    torch.manual_seed(1)
    la, _ = a.loss(x, y, a.class_context())
    lb, _ = b.loss(x, y, b.class_context())
    assert la.item() != lb.item()
    a.eval(), b.eval()
    assert torch.equal(a(x, a.class_context()), b(x, b.class_context()))
    with pytest.raises(ConfigError, match="image noise"):
        make(tiny_backbone, train_noise="typo:0.1")
