"""The Method contract, checked for every registered method (including ones added later).

Each method is built with its default config on the tiny random backbone (robustprompt-test).
"""

import pytest
import torch

from robustprompt.errors import CheckpointError
from robustprompt.methods.registry import create_method, list_methods

SEEN = ["cat", "dog", "airplane"]
NOVEL = ["apple", "red truck"]
TEMPLATE = "a photo of a {}."
# Default configs, except where the tiny test model cannot hold them: its context length is 16
# tokens, fewer than CoOp's default 16 (AdvPT's 32) context vectors plus SOS, class name and EOT.
TINY_CONFIG = {"coop": {"n_ctx": 4}, "advpt": {"n_ctx": 4}, "naptuning": {"n_ctx": 4}}  # a 16-token text context


def make(name, backbone, seed=0):
    torch.manual_seed(seed)
    return create_method(name, backbone, SEEN, TEMPLATE, dict(TINY_CONFIG.get(name, {})))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 0])


def backbone_state(backbone):
    return {k: v.detach().clone() for k, v in backbone.state_dict().items()}


def gradients(method, images, labels):
    method.train()
    for p in method.parameters():
        p.grad = None
    loss, stats = method.loss(images, labels, method.class_context())
    assert loss.dim() == 0 and torch.isfinite(loss)
    # named terms as detached 0-d tensors: the engine reads them once per log interval, not every step
    assert isinstance(stats, dict) and all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad
                                           for v in stats.values())
    if loss.requires_grad:
        loss.backward()
    else:
        assert not method.learnable_parameters(), "the loss does not depend on the learnable parameters"
    return {n: p.grad for n, p in method.learnable_parameters().items()}


@pytest.mark.parametrize("name", list_methods())
def test_only_method_parameters_learn_and_backbone_stays_frozen(name, tiny_backbone, batch):
    m = make(name, tiny_backbone)
    learnable = m.learnable_parameters()
    requires_grad = {n for n, p in m.named_parameters() if p.requires_grad}
    assert requires_grad == set(learnable)
    assert not any(n.startswith("backbone.") for n in learnable)
    assert not any(p.requires_grad for p in tiny_backbone.parameters())
    backbone_ids = {id(p) for p in tiny_backbone.parameters()}
    assert not backbone_ids & {id(p) for p in learnable.values()}

    before_backbone = backbone_state(tiny_backbone)
    before = m.learnable_state()
    gradients(m, *batch)
    assert all(p.grad is None for p in tiny_backbone.parameters())
    if learnable:
        torch.optim.SGD(list(learnable.values()), lr=1.0).step()
        after = m.learnable_state()
        assert any(not torch.equal(before[k], after[k]) for k in before)
    after_backbone = backbone_state(tiny_backbone)
    assert all(torch.equal(before_backbone[k], after_backbone[k]) for k in before_backbone)
    m.train()
    assert m.training and not tiny_backbone.training


@pytest.mark.parametrize("name", list_methods())
def test_every_learnable_parameter_gets_a_gradient(name, tiny_backbone, batch):
    m = make(name, tiny_backbone)
    grads = gradients(m, *batch)
    if not grads:
        pytest.skip(f"{name} has no learnable parameters")
    missing = sorted(n for n, g in grads.items() if g is None or not torch.isfinite(g).all() or g.abs().sum() == 0)
    assert not missing, f"no (or non-finite) gradient for {missing}"


@pytest.mark.parametrize("name", list_methods())
def test_logits_shape_for_seen_and_novel_classes(name, tiny_backbone, batch):
    m = make(name, tiny_backbone).eval()
    images, _ = batch
    with torch.no_grad():
        seen, novel = m.class_context(), m.class_context(NOVEL)
        assert seen.seen and not novel.seen and novel.classnames == tuple(NOVEL)
        logits_seen, logits_novel = m(images, seen), m(images, novel)
    assert logits_seen.shape == (4, len(SEEN)) and torch.isfinite(logits_seen).all()
    assert logits_novel.shape == (4, len(NOVEL)) and torch.isfinite(logits_novel).all()


@pytest.mark.parametrize("name", list_methods())
def test_logits_are_differentiable_in_the_images(name, tiny_backbone, batch):
    # attacks act in pixel space through the whole prompted model
    m = make(name, tiny_backbone).eval()
    with torch.no_grad():
        ctx = m.class_context()
    x = batch[0].clone().requires_grad_(True)
    m(x, ctx).logsumexp(-1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_methods())
def test_learnable_state_round_trips_to_identical_logits(name, tiny_backbone, batch):
    trained = make(name, tiny_backbone, seed=0)
    with torch.no_grad():  # move away from any initialisation a fresh method could share
        for p in trained.learnable_parameters().values():
            p.add_(0.01 * torch.randn_like(p))
    state = trained.learnable_state()
    assert all(t.is_contiguous() and not t.requires_grad for t in state.values())
    fresh = make(name, tiny_backbone, seed=123)
    fresh.load_learnable_state(state)
    images, _ = batch
    trained.eval(), fresh.eval()
    with torch.no_grad():
        for names in (None, NOVEL):
            a = trained(images, trained.class_context(names))
            b = fresh(images, fresh.class_context(names))
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", list_methods())
def test_load_learnable_state_rejects_wrong_keys_and_shapes(name, tiny_backbone):
    m = make(name, tiny_backbone)
    state = m.learnable_state()
    with pytest.raises(CheckpointError, match="unexpected"):
        m.load_learnable_state({**state, "not.a.parameter": torch.zeros(2)})
    if not state:
        return
    first = sorted(state)[0]
    with pytest.raises(CheckpointError, match="missing"):
        m.load_learnable_state({k: v for k, v in state.items() if k != first})
    bad = dict(state)
    bad[first] = torch.zeros(*state[first].shape[:-1], state[first].shape[-1] + 1)
    with pytest.raises(CheckpointError, match="shape"):
        m.load_learnable_state(bad)
    # a rejected checkpoint leaves nothing half-loaded when the keys are wrong
    assert all(torch.equal(v, m.learnable_state()[k]) for k, v in state.items())


@pytest.mark.parametrize("name", list_methods())
def test_text_only_loss_from_cached_features_equals_loss(name, tiny_backbone, batch):
    m = make(name, tiny_backbone)
    if not m.frozen_image_side:
        pytest.skip(f"{name} prompts the image tower")
    images, labels = batch
    m.train()
    ctx = m.class_context()
    with torch.no_grad():
        feats = m.training_features(images)
    cached, cached_stats = m.loss_from_features(feats, labels, ctx)
    direct, direct_stats = m.loss(images, labels, ctx)
    assert torch.allclose(cached, direct, rtol=1e-6, atol=1e-6)
    assert set(cached_stats) == set(direct_stats)


@pytest.mark.parametrize("name", list_methods())
def test_class_chunks_give_the_same_features_and_gradients(name, tiny_backbone):
    """Encoding many classes in checkpointed chunks (train.class_chunk) changes memory, not results."""
    names = ["cat", "dog", "airplane", "apple", "red truck", "blue whale", "tree"]
    torch.manual_seed(0)
    m = create_method(name, tiny_backbone, names, TEMPLATE, dict(TINY_CONFIG.get(name, {})))
    m.train()
    out = {}
    for chunk in (0, 3):
        for p in m.parameters():
            p.grad = None
        ctx = m.class_context(chunk=chunk)
        if ctx.features is None:
            pytest.skip(f"{name}'s class context holds no features (its class side is built per image)")
        if ctx.features.requires_grad:
            (ctx.features * torch.linspace(-1, 1, ctx.features.numel()).view_as(ctx.features)).sum().backward()
        out[chunk] = ctx.features.detach(), {n: p.grad for n, p in m.learnable_parameters().items()}
    (f0, g0), (f3, g3) = out[0], out[3]
    assert torch.allclose(f0, f3, atol=1e-6)
    assert g0.keys() == g3.keys()
    for n in g0:
        assert (g0[n] is None) == (g3[n] is None), n
        if g0[n] is not None:
            # float rounding only: the chunks' padding and matmul shapes differ
            assert (g0[n] - g3[n]).abs().max() <= 1e-5 * g0[n].abs().max(), n
