"""CoCoOp: the image-conditioned context of the authors' code, on the tiny random backbone."""

import copy

import torch
import torch.nn.functional as F

from robustprompt.methods.registry import create_method

NAMES = ["cat", "dog", "airplane"]


def make(bb, name="cocoop", **cfg):
    torch.manual_seed(0)
    return create_method(name, bb, NAMES, "a photo of a {}.", cfg)


def images(n=3):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_without_a_shift_cocoop_is_coop_with_the_same_context(tiny_backbone):
    co = make(tiny_backbone).eval()
    coop = make(tiny_backbone, "coop", n_ctx=4, ctx_init="a photo of a").eval()
    with torch.no_grad():
        co.meta_net.linear2.weight.zero_()
        co.meta_net.linear2.bias.zero_()
        coop.prompt.ctx.copy_(co.prompt.ctx)
        x = images()
        assert torch.allclose(co(x, co.class_context()), coop(x, coop.class_context()), atol=1e-5)


def test_logits_are_the_papers_per_image_formula(tiny_backbone):
    co = make(tiny_backbone).eval()
    x = images(4)
    with torch.no_grad():
        got = co(x, co.class_context())
        f = F.normalize(tiny_backbone.encode_image(x), dim=-1)
        for i in range(4):
            shift = co.meta_net(f[i])
            emb, eot = co.prompt.embeddings(tuple(NAMES))
            n = co.config.n_ctx
            emb = emb.clone()
            emb[:, 1:1 + n] = co.prompt.ctx + shift  # every context vector gets the same shift
            t = F.normalize(tiny_backbone.text(emb, eot).features, dim=-1)
            assert torch.allclose(got[i], tiny_backbone.logit_scale * f[i] @ t.T, atol=1e-5)


def test_chunking_the_text_forwards_changes_nothing(tiny_backbone):
    # In float64, so that the comparison is exact up to rounding on any machine's BLAS: in float32
    # a different batch shape may take a different kernel and differ by a few 1e-7.
    bb = copy.deepcopy(tiny_backbone).double()
    co = make(bb).eval().double()
    small = make(bb, text_batch=4).eval().double()  # one image per text forward
    small.load_state_dict(co.state_dict())
    x = images(4).double()
    with torch.no_grad():
        assert torch.allclose(small(x, small.class_context()), co(x, co.class_context()),
                              rtol=0, atol=1e-12)


def test_every_parameter_learns(tiny_backbone):
    co = make(tiny_backbone).train()
    loss, stats = co.loss(images(2), torch.tensor([0, 2]), co.class_context())
    loss.backward()
    params = co.learnable_parameters()
    assert set(params) == {"prompt.ctx", "meta_net.linear1.weight", "meta_net.linear1.bias",
                           "meta_net.linear2.weight", "meta_net.linear2.bias"}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())


def test_engine_trains_and_reloads(tmp_path):
    from helpers import make_imagefolder

    from robustprompt.config import build_run_config
    from robustprompt.engine import train
    from robustprompt.engine.runs import load_run

    tree = make_imagefolder(tmp_path / "colours", n_per_class=12)
    cfg = build_run_config("cocoop", values={
        "model": {"name": "robustprompt-test", "pretrained": "random"},
        "data": {"dataset": "imagefolder", "root": str(tree), "shots": 2, "split": "base"},
        "train": {"epochs": 1, "eval_batch_size": 8}})
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.epochs) == (1, 0.002, 1)
    res = train(cfg, tmp_path / "run")
    assert res["evaluations"][-1]["metric"] == "clean_acc"
    _, loaded = load_run(tmp_path / "run")
    assert loaded.meta_net.linear1.weight.abs().sum() > 0


def test_class_context_runs_no_text_forward(tiny_backbone):
    """The engine builds the class context once per training step; CoCoOp's class side depends on the
    image, so its context holds the names only and costs no text forward."""
    co = make(tiny_backbone).train()
    calls = []
    original = tiny_backbone.text
    tiny_backbone.text = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        ctx = co.class_context()
        assert not calls and ctx.features is None and ctx.classnames == tuple(NAMES)
        co(images(2), ctx)
        assert calls  # the per-image class features
    finally:
        del tiny_backbone.text
