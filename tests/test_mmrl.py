"""MMRL: representation tokens, the two branches, the loss and the inference rule of the authors' code."""

import pytest
import torch
import torch.nn.functional as F

from robustprompt.methods.registry import create_method

NAMES = ["cat", "dog", "airplane"]


def make(bb, **cfg):
    torch.manual_seed(0)
    return create_method("mmrl", bb, NAMES, "a photo of a {}.", {"n_rep_tokens": 3, "rep_dim": 16, **cfg})


def images(n=3):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(4))


def test_layers_and_cloned_projections(tiny_backbone):
    m = make(tiny_backbone)
    assert m.vision_layers == [1, 2] and m.text_layers == [1, 2]  # layers 6..12 of 12 on a 3-block tower
    a, b = (m.r2v[str(l)] for l in m.vision_layers)
    assert torch.equal(a.weight, b.weight) and a.weight is not b.weight  # copies of one initialisation
    assert m.proj_rep.shape == (tiny_backbone.vision_width, tiny_backbone.embed_dim)


def test_rep_feature_is_the_mean_of_the_output_rep_tokens_times_proj_rep(tiny_backbone):
    m = make(tiny_backbone).eval()
    x = images()
    with torch.no_grad():
        v_cls, v_rep = m.vision_features(x)
        out = tiny_backbone.vision(x, m._edits(m.vision_layers, m.r2v))
        assert torch.allclose(v_rep, out.tokens[:, 1:4].mean(1) @ m.proj_rep, atol=1e-6)
        assert torch.allclose(v_cls, out.features)


def test_inference_rule_and_loss(tiny_backbone):
    m = make(tiny_backbone).eval()
    x, y = images(), torch.tensor([0, 1, 2])
    with torch.no_grad():
        ctx = m.class_context()
        v_cls, v_rep = m.vision_features(x)
        z_cls, z_rep = m.logits_from_features(v_cls, ctx), m.logits_from_features(v_rep, ctx)
        assert torch.allclose(m(x, ctx), 0.7 * z_cls + 0.3 * z_rep, atol=1e-5)
        novel = m.class_context(["apple", "truck"])
        assert torch.allclose(m(x, novel), m.logits_from_features(v_cls, novel), atol=1e-6)
    m.train()
    loss, stats = m.loss(x, y, m.class_context())
    frozen_img = tiny_backbone.encode_image(x)
    frozen_txt = tiny_backbone.text_features([f"a photo of a {c}." for c in NAMES])
    with torch.no_grad():
        ctx = m.class_context()
        expected = (0.7 * F.cross_entropy(z_cls, y) + 0.3 * F.cross_entropy(z_rep, y)
                    + (1 - F.cosine_similarity(v_cls, frozen_img).mean())
                    + (1 - F.cosine_similarity(ctx.features, frozen_txt).mean()))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    params = m.learnable_parameters()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())
    assert set(stats) == {"ce_cls", "ce_rep", "reg_img", "reg_txt"}


def test_engine_trains_and_reloads(tmp_path):
    from helpers import make_imagefolder

    from robustprompt.config import build_run_config
    from robustprompt.engine import train
    from robustprompt.engine.runs import load_run

    tree = make_imagefolder(tmp_path / "colours", n_per_class=12)
    cfg = build_run_config("mmrl", values={
        "model": {"name": "robustprompt-test", "pretrained": "random"},
        "data": {"dataset": "imagefolder", "root": str(tree), "shots": 2, "split": "base"},
        "train": {"epochs": 1, "eval_batch_size": 8}, "method_cfg": {"rep_dim": 16}})
    train(cfg, tmp_path / "run")
    _, loaded = load_run(tmp_path / "run")
    x = images()
    with torch.no_grad():
        assert torch.isfinite(loaded(x, loaded.class_context())).all()
