"""Fidelity fixtures: robustprompt's methods against numbers produced by the authors' own code on a
shared case (random open_clip ViT-B/16 weights, fixed learnable tensors and inputs). The numbers come
from bench/fidelity/<method>.py run on a checkout of the official repository; CI only reads them."""

import json
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "fidelity"


def _case():
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench" / "fidelity"))
    import mmrl_case

    return mmrl_case


def _close(ours, ref, tol):
    ours, ref = torch.as_tensor(ours, dtype=torch.float64), torch.as_tensor(ref, dtype=torch.float64)
    return torch.allclose(ours, ref, rtol=tol, atol=tol * ref.abs().max().item())


def _prompt_learner_case(fixture: str, method: str, template: str, config: dict, ref: dict):
    """Our `method` on the shared prompt-learner case (bench/fidelity/prompt_learners_case.py) with every
    learnable tensor set from the official parameter it maps to: (method, params, official -> ours, images,
    labels). Asserts that the official trainer's learnable tensors that got a gradient are exactly ours."""
    import sys

    from robustprompt.backbone import load_backbone
    from robustprompt.methods.registry import create_method

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench" / "fidelity"))
    import prompt_learners_case as case

    torch.set_num_threads(2)
    bb = load_backbone(case.MODEL, "random", quick_gelu=True)
    case.fp16_exact(bb.clip)
    m = create_method(method, bb, case.CLASSNAMES, template, config)
    params = m.learnable_parameters()
    names = {k: case.official_to_ours(fixture, k) for k in ref["grad_norms"]}
    assert set(params) == set(names.values())
    with torch.no_grad():
        for official, ours in names.items():
            params[ours].copy_(case.draw(official, params[ours].shape))
    images, labels = case.inputs()
    m.train()
    return m, params, names, images, labels


@pytest.mark.slow
def test_mmrl_matches_the_authors_code():
    from robustprompt.backbone import load_backbone
    from robustprompt.methods.registry import create_method

    case = _case()
    ref = json.loads((FIXTURES / "mmrl.json").read_text())
    torch.set_num_threads(2)
    bb = load_backbone(case.MODEL, "random", quick_gelu=True)
    case.fp16_exact(bb.clip)
    m = create_method("mmrl", bb, case.CLASSNAMES, case.TEMPLATE,
                      {"n_rep_tokens": case.N_REP, "rep_dim": case.REP_DIM, "alpha": case.ALPHA,
                       "reg_weight": case.REG_WEIGHT})
    assert [l + 1 for l in m.vision_layers] == case.REP_LAYERS == [l + 1 for l in m.text_layers]
    t = case.learnable(bb.vision_width, bb.text_width, bb.embed_dim)
    with torch.no_grad():
        m.rep_tokens.copy_(t["rep_tokens"])
        m.proj_rep.copy_(t["proj_rep"])
        for i, l in enumerate(m.vision_layers):
            m.r2v[str(l)].weight.copy_(t[f"r2v.{i}.weight"])
            m.r2v[str(l)].bias.copy_(t[f"r2v.{i}.bias"])
        for i, l in enumerate(m.text_layers):
            m.r2t[str(l)].weight.copy_(t[f"r2t.{i}.weight"])
            m.r2t[str(l)].bias.copy_(t[f"r2t.{i}.bias"])
    images, labels = case.inputs()
    m.train()
    ctx = m.class_context()
    v_cls, v_rep = m.vision_features(images)
    logits, logits_rep = m.logits_from_features(v_cls, ctx), m.logits_from_features(v_rep, ctx)
    tol = case.TOLERANCE
    assert _close(logits.detach(), ref["logits"], tol) and _close(logits_rep.detach(), ref["logits_rep"], tol)
    assert _close(m(images, ctx).detach(), ref["fusion"], tol)
    loss, _ = m.loss(images, labels, ctx)
    assert loss.item() == pytest.approx(ref["loss"], rel=tol)
    loss.backward()
    ours = {"rep_tokens": m.rep_tokens.grad.norm().item(), "proj_rep": m.proj_rep.grad.norm().item()}
    for i, l in enumerate(m.vision_layers):
        ours[f"r2v.{i}.weight"] = m.r2v[str(l)].weight.grad.norm().item()
        ours[f"r2v.{i}.bias"] = m.r2v[str(l)].bias.grad.norm().item()
    for i, l in enumerate(m.text_layers):
        ours[f"r2t.{i}.weight"] = m.r2t[str(l)].weight.grad.norm().item()
        ours[f"r2t.{i}.bias"] = m.r2t[str(l)].bias.grad.norm().item()
    assert set(ours) == set(ref["grad_norms"])
    bad = {k: (ours[k], v) for k, v in ref["grad_norms"].items() if ours[k] != pytest.approx(v, rel=10 * tol, abs=1e-7)}
    assert not bad, bad


@pytest.mark.slow
def test_promptsrc_matches_the_authors_code():
    import sys

    from robustprompt.backbone import load_backbone
    from robustprompt.methods.registry import create_method

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench" / "fidelity"))
    import promptsrc_case as case

    ref = json.loads((FIXTURES / "promptsrc.json").read_text())
    torch.set_num_threads(2)
    bb = load_backbone(case.MODEL, "random", quick_gelu=True)
    case.fp16_exact(bb.clip)
    m = create_method("promptsrc", bb, case.CLASSNAMES, "a photo of a {}.", {})
    t = case.learnable(bb.text_width, bb.vision_width)
    params = m.learnable_parameters()
    names = {"text.0": "text_prompt.context.ctx",
             **{f"text.{i}": f"text_prompt.deep.tokens.{i}" for i in range(1, case.DEPTH)},
             **{f"vision.{i}": f"vision_prompt.tokens.{i}" for i in range(case.DEPTH)}}
    assert set(params) == set(names.values())
    with torch.no_grad():
        for k, n in names.items():
            params[n].copy_(t[k])
    images, labels = case.inputs()
    m.train()
    ctx = m.class_context()
    tol = case.TOLERANCE
    assert _close(m(images, ctx).detach(), ref["logits"], tol)
    loss, terms = m.loss(images, labels, ctx)
    assert loss.item() == pytest.approx(ref["loss"], rel=tol)
    assert {k: v.item() for k, v in terms.items()} == pytest.approx(ref["terms"], rel=10 * tol, abs=1e-7)
    loss.backward()
    ours = {k: params[n].grad.norm().item() for k, n in names.items()}
    bad = {k: (ours[k], v) for k, v in ref["grad_norms"].items() if ours[k] != pytest.approx(v, rel=10 * tol, abs=1e-7)}
    assert not bad, bad


@pytest.mark.slow
@pytest.mark.parametrize("method", ["coop", "cocoop", "kgcoop", "ivlp", "maple", "advivlp", "advmaple"])
def test_prompt_learner_matches_the_authors_code(method):
    """Logits, loss and every learnable tensor's gradient norm against the official CustomCLIP (see
    bench/fidelity/prompt_learners.py), with every learnable tensor set to the same value on both sides.
    Adversarial IVLP / MaPLe: the training step's PGD images (zero start) and its half-clean loss too."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench" / "fidelity"))
    import prompt_learners_case as case

    ref = json.loads((FIXTURES / f"{method}.json").read_text())
    spec = case.CASES[method]
    assert ref["reference"]["repository"] == spec["repository"]
    m, params, names, images, labels = _prompt_learner_case(method, spec.get("base", method), spec["template"],
                                                            spec["ours"], ref)
    ctx = m.class_context()
    tol = case.TOLERANCE
    assert _close(m(images, ctx).detach(), ref["logits"], tol)
    if method.startswith("adv"):
        from robustprompt.config import AdversarialConfig
        from robustprompt.engine.adversarial import adversarial_images, adversarial_loss

        adv_cfg = AdversarialConfig(enabled=True, eps="1/255", alpha="1/255", steps=case.ATTACK["steps"],
                                    random_start=False, loss="half")
        adv = adversarial_images(m, images, labels, ctx, adv_cfg)
        k = images.shape[0] // 2
        assert (adv[k:] - images[k:]).abs().sum().item() == pytest.approx(ref["terms"]["delta_l1"], rel=tol)
        loss, terms = adversarial_loss(m, images, adv, labels, ctx, "half")
    else:
        loss, terms = m.loss(images, labels, ctx)
    assert loss.item() == pytest.approx(ref["loss"], rel=tol)
    if method == "kgcoop":
        assert terms["ce"].item() == pytest.approx(ref["terms"]["ce"], rel=tol)
        assert terms["kg"].item() == pytest.approx(ref["terms"]["score"], rel=10 * tol)
    loss.backward()
    ours = {k: params[n].grad.norm().item() for k, n in names.items()}
    bad = {k: (ours[k], v) for k, v in ref["grad_norms"].items() if ours[k] != pytest.approx(v, rel=10 * tol, abs=1e-7)}
    assert not bad, bad


@pytest.mark.slow
def test_advpt_matches_the_authors_code():
    """The adversarial embedding bank (feature PGD from the same U(0, eps) start), and the training step on
    it (logits, loss, the context's gradient) against jiamingzhang94/Adversarial-Prompt-Tuning
    (bench/fidelity/advpt.py)."""
    import sys

    from robustprompt.backbone import load_backbone
    from robustprompt.methods.registry import create_method

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench" / "fidelity"))
    import prompt_learners_case as case

    ref = json.loads((FIXTURES / "advpt.json").read_text())
    torch.set_num_threads(2)
    bb = load_backbone(case.MODEL, "random", quick_gelu=True)
    case.fp16_exact(bb.clip)
    m = create_method("advpt", bb, case.CLASSNAMES, "a photo of a {}.",
                      {"n_ctx": ref["n_ctx"], "ctx_init": "", "bank_steps": ref["bank_steps"],
                       "bank_eps": "8/255", "bank_random_start": True, "bank_start": "positive-unclipped", "bank_seed": 0})
    assert ref["bank_eps"] == pytest.approx(8 / 255)
    with torch.no_grad():
        m.prompt.ctx.copy_(case.draw("prompt_learner.ctx", m.prompt.ctx.shape))
    images, labels = case.inputs()
    tol = case.TOLERANCE
    # the feature attack: ten sign steps amplify last-digit differences into a few flipped pixels (115 of
    # 301,056 when the fixture was made), so the images agree to 1e-3 and their embeddings' directions to 1e-6
    adv = m.adversarial_images(images)
    assert (adv - images).abs().sum().item() == pytest.approx(ref["delta_l1"], rel=1e-3)
    m.train()
    bank = m.training_features(images)
    official = torch.tensor(ref["bank"])
    assert torch.nn.functional.cosine_similarity(bank, official).min().item() > 1 - 1e-6
    assert _close(bank.norm(dim=-1), ref["bank_norms"], 1e-4)
    # the training step on the official bank: logits, loss and the context's gradient to 1e-5
    ctx = m.class_context()
    assert _close(m.logits_from_features(official, ctx).detach(), ref["logits"], tol)
    loss, _ = m.loss_from_features(official, labels, ctx)
    assert loss.item() == pytest.approx(ref["loss"], rel=tol)
    loss.backward()
    assert m.prompt.ctx.grad.norm().item() == pytest.approx(ref["grad_norms"]["prompt_learner.ctx"], rel=10 * tol)


@pytest.mark.slow
def test_naptuning_matches_the_authors_code():
    """NAP-Tuning against the first author's development code (jiamingzhang94/MAPT@9a9bb04, bench/fidelity/
    naptuning.py): logits of MaPLe prompts with the vision token refiners, the training attack (PGD-5 from
    zero), the 0.5 / 0.5 clean / adversarial loss, and the gradient norm of every learnable tensor."""
    import sys

    from robustprompt.config import AdversarialConfig, build_run_config
    from robustprompt.engine.adversarial import adversarial_images, adversarial_loss

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench" / "fidelity"))
    import prompt_learners_case as case

    ref = json.loads((FIXTURES / "naptuning.json").read_text())
    spec = case.NAPTUNING
    assert ref["reference"]["repository"] == spec["repository"]
    assert ref["reference"]["commit"].startswith("9a9bb04")
    preset = build_run_config("naptuning")  # the preset's attack is the code's
    adv_cfg = AdversarialConfig(enabled=True, **spec["adv"])
    assert preset.adv == adv_cfg
    assert all(".resblocks.0.token_refiner." in k for k in ref["unused_learnable"])  # block 0's is never called
    m, params, names, images, labels = _prompt_learner_case("naptuning", "naptuning", "a photo of a {}.",
                                                            spec["ours"], ref)
    ctx = m.class_context()
    tol = case.TOLERANCE
    assert _close(m(images, ctx).detach(), ref["logits"], tol)
    adv = adversarial_images(m, images, labels, ctx, adv_cfg)
    # five sign steps turn last-digit differences into a few flipped pixels where the gradient is near zero:
    # the L1 norms differed by 1.5e-5 (relative) when the fixture was made, and by 1.4e-4 with the iterates
    # clipped to [0, 1] at every step (adv.box each-step, 1,974 pixels moved), so 4e-5 tells the two apart
    assert (adv - images).abs().sum().item() == pytest.approx(ref["delta_l1"], rel=4e-5)
    loss, terms = adversarial_loss(m, images, adv, labels, ctx, "mean")
    assert loss.item() == pytest.approx(ref["loss"], rel=tol)
    assert {k: v.item() for k, v in terms.items()} == pytest.approx(ref["terms"], rel=tol)
    loss.backward()
    ours = {k: params[n].grad.norm().item() for k, n in names.items()}
    bad = {k: (ours[k], v) for k, v in ref["grad_norms"].items() if ours[k] != pytest.approx(v, rel=10 * tol, abs=1e-7)}
    assert not bad, bad
