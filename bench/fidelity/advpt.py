"""AdvPT fidelity fixture: run the authors' bank attack and prompt model on the shared case, store the numbers.

    .venv/bin/python bench/fidelity/advpt.py --checkout PATH/TO/jiamingzhang94/Adversarial-Prompt-Tuning

Tested at commit 95d43a8b2c3b2a67686f7bc10430d373a7605e95. Used unchanged, imported by path: the PGD
feature attack (attack/attackFeature.py: KL between the embeddings of the clean and the attacked image,
read by a hook on the input of a throw-away `fc` head), CustomCLIP and its PromptLearner
(trainers/advpt.py, beside a stand-in for its Dassl copy `dass`) on its clip/model.py. Restated: the
three-line surrogate `ClipModel` (image encoder -> fc; dass/engine/trainer.py) and the two steps of
before_adv_train / forward_backward_adv (bank entry = encode_image of the attacked image; loss = CE of
forward_embedding on the bank). The bank itself is stored (2 x 512 numbers) so that the test can check
the training step on the official bank to 1e-5: ten sign-gradient steps turn last-digit differences of
two attention implementations into a few flipped pixels (115 of 301,056 here), so the attack itself
agrees to that, not to 1e-5. Differences from an official run: the random start U(0, eps) is drawn
by robustprompt's per-image seeded generators and handed to the official PGD (`random_init` replaced;
a zero start is no test, since the KL's gradient vanishes there); fp32 with `.half()` neutralised; `timm` and `ruamel.yaml`, imported by utils/util.py for
functions not used here, are stubbed, and so is `pkg_resources` (clip/clip.py's version check). Output: numbers only.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import prompt_learners_case as case  # noqa: E402
from common import Node, checkout_commit, load_module, no_half, stub_dassl  # noqa: E402

N_CTX = 32
BANK = {"eps": 8 / 255, "steps": 10}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", required=True)
    ap.add_argument("--commit", help="the checkout's commit, when it is not a git work tree")
    ap.add_argument("--out", default=str(Path(__file__).parents[2] / "tests/fixtures/fidelity/advpt.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    root = Path(args.checkout)

    from torchvision import transforms

    from robustprompt.backbone import load_backbone

    ours = load_backbone(case.MODEL, "random", quick_gelu=True)  # only for the shared weights
    case.fp16_exact(ours.clip)
    state = {k: v.clone() for k, v in ours.clip.state_dict().items()}

    for name in ("timm", "ruamel", "ruamel.yaml"):
        sys.modules.setdefault(name, types.ModuleType(name))
    if "pkg_resources" not in sys.modules:  # clip/clip.py reads a version through it (setuptools < 81)
        import packaging.version

        sys.modules["pkg_resources"] = types.SimpleNamespace(packaging=packaging)

    stub_dassl("dass")
    sys.path.insert(0, str(root))
    import clip.model as clip_model_mod

    attack_mod = load_module(root / "attack/attackFeature.py", "advpt_attack")
    from robustprompt.methods.advpt import _seed, image_keys

    images, labels = case.inputs()
    # the start: the preset's x + U(0, eps), each image's U drawn from robustprompt's per-image seeded
    # generator (bank_seed 0), handed to the official PGD in place of its global-RNG draw of the same law
    u = torch.stack([torch.rand(images.shape[1:], generator=torch.Generator().manual_seed(_seed(0, k)))
                     for k in image_keys(images)])
    attack_mod.random_init = lambda x, norm_type, eps: u * eps
    trainer = load_module(root / "trainers/advpt.py", "advpt_trainer")
    normalize = transforms.Normalize([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
    with no_half():
        clip_model = clip_model_mod.build_model(dict(state)).float().eval()
        cfg = Node({"TRAINER": {"ADV": {"N_CTX": N_CTX, "CTX_INIT": "", "CSC": False, "CLASS_TOKEN_POSITION": "end",
                                        "PREC": "fp32"}},
                    "INPUT": {"SIZE": (224, 224)}, "MODEL": {"BACKBONE": {"NAME": "ViT-B/16"}}})
        model = trainer.CustomCLIP(cfg, case.CLASSNAMES, clip_model).float()
        for p in model.parameters():
            p.requires_grad_(False)
        ctx = model.prompt_learner.ctx
        with torch.no_grad():
            ctx.copy_(case.draw("prompt_learner.ctx", ctx.shape))
        ctx.requires_grad_(True)

        class ClipModel(torch.nn.Module):  # dass/engine/trainer.py, restated
            def __init__(self, visual):
                super().__init__()
                self.visual_encoder = visual
                self.fc = torch.nn.Linear(visual.output_dim, 2)

            def forward(self, image):
                return self.fc(self.visual_encoder(image))

        surrogate = ClipModel(clip_model.visual).eval()
        attacker = attack_mod.PGD(BANK["eps"], preprocess=normalize, num_iters=BANK["steps"])
        adv = attacker.run(surrogate, images, scaler=1, feature_layer="fc")
        with torch.no_grad():
            bank = clip_model.encode_image(normalize(adv))
        logits = model.forward_embedding(bank)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
    out = {"reference": {"repository": "jiamingzhang94/Adversarial-Prompt-Tuning",
                         "commit": checkout_commit(args.checkout, args.commit)},
           "n_ctx": N_CTX, "bank_eps": BANK["eps"], "bank_steps": BANK["steps"],
           "delta_l1": (adv - images).abs().sum().item(), "bank_norms": bank.norm(dim=-1).tolist(),
           "bank_sum": bank.sum().item(), "bank": bank.tolist(), "logits": logits.detach().tolist(), "loss": loss.item(),
           "grad_norms": {"prompt_learner.ctx": ctx.grad.norm().item()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("delta_l1", "bank_norms", "loss", "grad_norms")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
