"""NAP-Tuning fidelity fixture: run the first author's development code on the shared case, store the numbers.

    .venv/bin/python bench/fidelity/naptuning.py --checkout PATH/TO/jiamingzhang94/MAPT --commit 9a9bb04

The paper's code is not public; this is jiamingzhang94/MAPT at commit 9a9bb04e036d9b79d4524c46b0fec4ac4cada96f
(git checkout 9a9bb04 after cloning; the commit is not on the default branch). Used unchanged, imported by
path: its CustomCLIP and MultiModalPromptLearner (trainers/maple.py, beside a stand-in for Dassl) on its
clip_m/model.py (MaPLe blocks with a TokenRefiner on the vision tokens entering each deep-prompted block),
and the trainer's `_compute_loss` (0.5 CE(clean) + 0.5 CE(adversarial)), called on a stand-in `self` with
ADV_TRAIN on. The configuration is train.py's `extend_cfg` at that commit: N_CTX 16 (CTX_INIT is then
ignored), PROMPT_DEPTH 12, EPSILON 1/255, ADV_STEPS 5, SURROGATE "self".

The training attack: `_compute_loss` calls `model.generate_adv`, whose PGDAttack comes from the
checkout's attack.py. Here the PGD images are made by the checkout's `attack.PGDAttack` with the model's
own attack_configs["pgd"] (zero start, sign steps of 1.5 eps / steps, delta clipped to eps, images
clipped to [0, 1] after the last step), through a wrapper that gives the attack the mean cross-entropy
(first-commit attack.py calls `model(x, labels)` for a loss) or the logits (later versions call
`model(x, return_logits=True)`); `generate_adv` then returns those images. Differences from an official
run, without effect on the numbers: fp32 with `.half()` neutralised (fp16-exact weights and learnable
tensors), everything on the CPU (`.cuda()` is the identity). Output: numbers only.
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
from common import Node, checkout_commit, load_module, no_half, set_learnable, stub_dassl  # noqa: E402


class AttackTarget:
    """What the checkout's PGDAttack calls: the mean CE of the official model, or its logits when asked."""

    def __init__(self, model):
        self.model = model

    def __call__(self, images, labels=None, return_logits=False):
        logits = self.model(images)
        return logits if return_logits else F.cross_entropy(logits, labels)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", required=True, help="a checkout of jiamingzhang94/MAPT at 9a9bb04")
    ap.add_argument("--commit", help="the checkout's commit, when it is not a git work tree")
    ap.add_argument("--out", help="default: tests/fixtures/fidelity/naptuning.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    out_path = Path(args.out or Path(__file__).parents[2] / "tests/fixtures/fidelity/naptuning.json")
    spec = case.NAPTUNING

    from robustprompt.backbone import load_backbone

    ours = load_backbone(case.MODEL, "random", quick_gelu=True)  # only for the shared weights
    case.fp16_exact(ours.clip)
    state = {k: v.clone() for k, v in ours.clip.state_dict().items()}
    images, labels = case.inputs()

    checkout = Path(args.checkout)
    stub_dassl()
    sys.path.insert(0, str(checkout))
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda t, *a, **k: t
    try:
        with no_half():
            import clip_m.model as clip_model_mod

            design = {"trainer": "MaPLe", "vision_depth": 0, "language_depth": 0, "vision_ctx": 0,
                      "language_ctx": 0, "maple_length": spec["cfg"]["N_CTX"]}
            clip_model = clip_model_mod.build_model(dict(state), design).float().eval()
            trainer = load_module(checkout / "trainers/maple.py", "official_naptuning")
            cfg = Node({"TRAINER": {"MAPLE": spec["cfg"]}, "INPUT": {"SIZE": (224, 224)},
                        "MODEL": {"BACKBONE": {"NAME": "ViT-B/16"}}, "DATASET": {"NAME": "ImageNet"}})
            model = trainer.CustomCLIP(cfg, case.CLASSNAMES, clip_model).float()
            # MaPLe.build_model: the prompt learner and the token refiners learn, nothing else
            learnable = set_learnable(model, lambda name: "prompt_learner" in name or "token_refiner" in name,
                                      case.draw)
            model.train()
            with torch.no_grad():
                logits = model(images)
            pgd = model.attack_configs["pgd"]
            attack = sys.modules["attack"].PGDAttack(eps=pgd["eps"], steps=pgd["steps"], alpha=pgd["alpha"])
            adv = attack.generate(model=AttackTarget(model), images=images, labels=labels)
            for p in learnable.values():
                p.grad = None
            model.generate_adv = lambda *a, **k: adv
            fake_trainer = types.SimpleNamespace(adv_train=True)
            loss = trainer.MaPLe._compute_loss(fake_trainer, model, images, labels)
            with torch.no_grad():
                ce_clean = F.cross_entropy(model(images), labels).item()
                ce_adv = F.cross_entropy(model(adv), labels).item()
            loss.backward()
    finally:
        torch.Tensor.cuda = cuda
    grads = {name: p.grad.norm().item() for name, p in learnable.items() if p.grad is not None}
    unused = sorted(name for name, p in learnable.items() if p.grad is None)
    out = {"reference": {"repository": spec["repository"], "commit": checkout_commit(args.checkout, args.commit),
                         "trainer": "trainers/maple.py", "model": "clip_m/model.py"},
           "attack": {"eps": pgd["eps"], "steps": pgd["steps"], "alpha": attack.alpha},
           "logits": logits.tolist(), "delta_l1": (adv - images).abs().sum().item(),
           "loss": loss.item(), "terms": {"ce": ce_clean, "ce_adv": ce_adv},
           "grad_norms": grads, "unused_learnable": unused}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("attack", "delta_l1", "loss", "terms", "unused_learnable")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
