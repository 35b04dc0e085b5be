"""The text tower's shared-prefix path (PromptableCLIP.text(shared_prefix=P)): the leading tokens that
every class prompt shares are computed once. It must give the features and gradients of the full path
(to float rounding), and fall back to the full path wherever its promise does not hold."""

import pytest
import torch

from robustprompt.backbone import LayerEdit, TowerEdits
from robustprompt.backbone.clip import PromptableCLIP
from robustprompt.components.context import TextContextPrompt, shared_positions
from robustprompt.methods.registry import create_method, list_methods

NAMES = ("cat", "dog", "red apple", "red fox", "airplane", "hot air balloon")
TINY_CONFIG = {"coop": {"n_ctx": 4}, "advpt": {"n_ctx": 4}, "naptuning": {"n_ctx": 4}}


@pytest.fixture
def count_shared(monkeypatch):
    calls = []
    original = PromptableCLIP._text_shared
    monkeypatch.setattr(PromptableCLIP, "_text_shared", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def features_and_grads(fn, params, backbone, share):
    backbone.share_text_prefix = share
    try:
        for p in params:
            p.grad = None
        f = fn()
        f.square().sum().backward()
        return f.detach(), [None if p.grad is None else p.grad.clone() for p in params]
    finally:
        backbone.share_text_prefix = True


def assert_same(a, b):
    (fa, ga), (fb, gb) = a, b
    torch.testing.assert_close(fb, fa, rtol=1e-5, atol=1e-5)
    assert [g is None for g in ga] == [g is None for g in gb]
    for x, y in zip(ga, gb):  # summed in another order: compared as a whole, not element by element
        if x is not None:
            assert (y - x).norm() <= 1e-5 * x.norm() + 1e-8


@pytest.mark.parametrize("method", [m for m in list_methods() if m not in ("zeroshot", "cocoop")])
def test_every_method_gets_the_full_paths_features_and_gradients(tiny_backbone, count_shared, method):
    """CoOp-style context, deep prompts replacing prefix tokens (IVLP, MaPLe, PromptSRC, NAP-Tuning),
    and prompts inserted into the prefix (ANPrompt, MMRL) all take the shared path on these names."""
    torch.manual_seed(0)
    m = create_method(method, tiny_backbone, list(NAMES), "a photo of a {}.", dict(TINY_CONFIG.get(method, {})))
    m.train()
    params = [p for p in m.parameters() if p.requires_grad]
    run = lambda: m.class_features(NAMES)  # noqa: E731
    count_shared.clear()  # building a method may encode its classes once
    full = features_and_grads(run, params, tiny_backbone, share=False)
    assert not count_shared
    shared = features_and_grads(run, params, tiny_backbone, share=True)
    assert count_shared, f"{method} did not take the shared-prefix path"
    assert_same(full, shared)


def test_class_specific_context_is_never_shared(tiny_backbone, count_shared):
    torch.manual_seed(0)
    m = create_method("coop", tiny_backbone, list(NAMES), "a photo of a {}.",
                      {"n_ctx": 4, "class_specific": True})
    assert m.prompt.shared_positions(NAMES) == 0
    m.class_features(NAMES).sum().backward()
    assert not count_shared
    assert (m.prompt.ctx.grad.flatten(1).norm(dim=1) > 0).all()  # every class's own context is trained


def test_shared_positions_cover_common_first_words_and_stop_before_eot():
    ids = torch.tensor([[49406, 7, 7, 320, 1929, 49407, 0], [49406, 7, 7, 320, 2368, 49407, 0],
                        [49406, 7, 7, 320, 1929, 49407, 0]])
    assert shared_positions(ids, ids.argmax(-1)) == 4
    same = torch.tensor([[49406, 7, 49407, 0]] * 3)  # identical prompts: the EOT must stay per row
    assert shared_positions(same, same.argmax(-1)) == 2


def test_the_prefix_of_a_coop_prompt_is_sos_and_context(tiny_backbone):
    p = TextContextPrompt(tiny_backbone, 3)
    assert p.shared_positions(("cat", "dog")) == 4
    assert p.shared_positions(("red apple", "red fox")) == 5  # "red" is shared too


def test_edits_that_break_the_promise_fall_back_to_the_full_path(tiny_backbone, count_shared):
    torch.manual_seed(0)
    p = TextContextPrompt(tiny_backbone, 3)
    emb, eot = p.embeddings(NAMES)
    P = p.shared_positions(NAMES)
    width = tiny_backbone.text_width
    per_row = LayerEdit("replace", torch.randn(len(NAMES), 2, width), start=1)  # a different token per class
    beyond = LayerEdit("replace", torch.randn(2, width), start=P - 1)  # reaches a class's own token
    at_end = LayerEdit("insert", torch.randn(2, width), start="end")
    refined = TowerEdits(refiners={1: lambda x: x * 1.5})
    for edits in (TowerEdits(layers={1: per_row}), TowerEdits(layers={1: beyond}), TowerEdits(layers={1: at_end}),
                  refined, TowerEdits(collect=(1,))):
        shared = tiny_backbone.text(emb, eot, edits, shared_prefix=P)
        tiny_backbone.share_text_prefix = False
        try:
            full = tiny_backbone.text(emb, eot, edits, shared_prefix=P)
        finally:
            tiny_backbone.share_text_prefix = True
        torch.testing.assert_close(shared.features, full.features, rtol=0, atol=0)
    assert not count_shared


def test_tokens_and_eot_of_the_shared_path_match_the_full_path(tiny_backbone, count_shared):
    torch.manual_seed(0)
    p = TextContextPrompt(tiny_backbone, 3)
    emb, eot = p.embeddings(NAMES)
    P = p.shared_positions(NAMES)
    edits = TowerEdits(layers={2: LayerEdit("insert", torch.randn(2, tiny_backbone.text_width), start=1)})
    shared = tiny_backbone.text(emb, eot, edits, shared_prefix=P)
    assert count_shared
    tiny_backbone.share_text_prefix = False
    try:
        full = tiny_backbone.text(emb, eot, edits)
    finally:
        tiny_backbone.share_text_prefix = True
    assert torch.equal(shared.eot_index, full.eot_index)
    torch.testing.assert_close(shared.tokens, full.tokens, rtol=1e-5, atol=1e-5)


def test_cocoop_shares_one_prefix_per_image(tiny_backbone, count_shared):
    """CoCoOp's context is shifted per image: the rows of one image share a prefix, images do not."""
    torch.manual_seed(0)
    m = create_method("cocoop", tiny_backbone, list(NAMES), "a photo of a {}.", {})
    m.train()
    size = tiny_backbone.image_size
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    params = [p for p in m.parameters() if p.requires_grad]
    run = lambda: m(x, m.class_context())  # noqa: E731
    full = features_and_grads(run, params, tiny_backbone, share=False)
    assert not count_shared
    shared = features_and_grads(run, params, tiny_backbone, share=True)
    assert count_shared
    assert_same(full, shared)
    assert len({tuple(r.tolist()) for r in shared[0]}) == 3  # three images, three different logit rows
