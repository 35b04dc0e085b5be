"""PromptSRC: the authors' regularisers and Gaussian prompt aggregation, on the tiny random backbone."""

import math

import pytest
import torch
import torch.nn.functional as F

from robustprompt.methods.promptsrc import IMAGENET_TEMPLATES_60, gpa_weights
from robustprompt.methods.registry import create_method

NAMES = ["cat", "dog", "airplane"]


def make(bb, **cfg):
    torch.manual_seed(0)
    return create_method("promptsrc", bb, NAMES, "a photo of a {}.", cfg)


def test_gpa_weights_are_the_normalised_gaussian_of_the_code():
    w = gpa_weights(20, 15, 1)
    g = [(1 / math.sqrt(2 * math.pi)) * math.exp(-0.5 * (e - 15) ** 2) for e in range(1, 21)]
    assert w == pytest.approx([x / sum(g) for x in g]) and sum(w) == pytest.approx(1)
    assert max(range(20), key=lambda i: w[i]) == 14
    assert gpa_weights(3, 15, 0.01) == [0.0, 0.0, 1.0]  # far from the mean: the nearest epoch
    assert len(IMAGENET_TEMPLATES_60) == 60 and all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES_60)


def test_loss_is_ce_plus_the_three_agreement_terms(tiny_backbone):
    m = make(tiny_backbone).train()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2])
    ctx = m.class_context()
    loss, stats = m.loss(x, y, ctx)
    bb = tiny_backbone
    with torch.no_grad():
        frozen_txt = F.normalize(torch.stack([bb.encode_text(bb.tokenize([t.format(c) for c in NAMES]))
                                              for t in IMAGENET_TEMPLATES_60]).mean(0), dim=-1)
        img = F.normalize(m.image_features(x), dim=-1)
        frozen_img = F.normalize(bb.encode_image(x), dim=-1)
        logits = bb.logit_scale * img @ ctx.features.t()
        zs = bb.logit_scale * frozen_img @ frozen_txt.t()
        p_zs = F.softmax(zs, -1)
        kl = (p_zs * (F.log_softmax(zs, -1) - F.log_softmax(logits, -1))).sum() / logits.numel()
        expected = (F.cross_entropy(logits, y) + 25 * (ctx.features - frozen_txt).abs().mean()
                    + 10 * (img - frozen_img).abs().mean() + kl)
    assert torch.allclose(m.frozen_text, frozen_txt, atol=1e-6)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(stats) == {"ce", "text_l1", "image_l1", "logits_kl"}
    loss.backward()
    assert all(p.grad is not None for p in m.learnable_parameters().values())


def test_gpa_aggregates_the_epochs_and_survives_a_resume(tiny_backbone):
    """The engine calls end_epoch, then saves the learnable state; a resumed process loads it and goes on."""
    w = gpa_weights(3, 2, 1)
    snapshots = [{n: p.detach() + 0.1 * e for n, p in make(tiny_backbone).learnable_parameters().items()}
                 for e in (1, 2, 3)]
    m = make(tiny_backbone, gpa_mean=2, gpa_std=1)
    for epoch, snap in enumerate(snapshots, start=1):
        with torch.no_grad():
            for n, p in m.learnable_parameters().items():
                p.copy_(snap[n])
        m.end_epoch(epoch, 3)
        if epoch == 2:
            state = m.learnable_state()
            assert any(k.startswith("gpa.") for k in state)
            m = make(tiny_backbone, gpa_mean=2, gpa_std=1)
            m.load_learnable_state(state)
    for n, p in m.learnable_parameters().items():
        assert torch.allclose(p, sum(wi * s[n] for wi, s in zip(w, snapshots)), atol=1e-6)
    assert m.gpa is None and not any(k.startswith("gpa.") for k in m.learnable_state())


def test_engine_trains_with_aggregation(tmp_path):
    from helpers import make_imagefolder

    from robustprompt.config import build_run_config
    from robustprompt.engine import train

    tree = make_imagefolder(tmp_path / "colours", n_per_class=12)
    cfg = build_run_config("promptsrc", values={
        "model": {"name": "robustprompt-test", "pretrained": "random"},
        "data": {"dataset": "imagefolder", "root": str(tree), "shots": 2, "split": "base"},
        "train": {"epochs": 2, "eval_batch_size": 8}})
    res = train(cfg, tmp_path / "run")
    assert res["evaluations"][-1]["metric"] == "clean_acc"
    assert "text_l1" in (tmp_path / "run" / "log.txt").read_text()
