"""Fidelity fixtures of CoOp, CoCoOp, KgCoOp, IVLP and MaPLe: run the authors' model classes on the
shared case (bench/fidelity/prompt_learners_case.py) and store the numbers.

    .venv/bin/python bench/fidelity/prompt_learners.py --method coop   --checkout PATH/TO/KaiyangZhou/CoOp
    .venv/bin/python bench/fidelity/prompt_learners.py --method cocoop --checkout PATH/TO/KaiyangZhou/CoOp
    .venv/bin/python bench/fidelity/prompt_learners.py --method kgcoop --checkout PATH/TO/htyao89/KgCoOp
    .venv/bin/python bench/fidelity/prompt_learners.py --method ivlp   --checkout PATH/TO/muzairkhattak/multimodal-prompt-learning
    .venv/bin/python bench/fidelity/prompt_learners.py --method maple  --checkout PATH/TO/muzairkhattak/multimodal-prompt-learning
    .venv/bin/python bench/fidelity/prompt_learners.py --method advivlp --checkout PATH/TO/xinwong/Multimodal-Adversarial-Prompt-Tuning
    .venv/bin/python bench/fidelity/prompt_learners.py --method advmaple --checkout PATH/TO/xinwong/Multimodal-Adversarial-Prompt-Tuning

Tested at KaiyangZhou/CoOp ff61507c, htyao89/KgCoOp c43ccc3d, muzairkhattak/multimodal-prompt-learning
69bce21a, xinwong/Multimodal-Adversarial-Prompt-Tuning 926889f7 (the last two need `pip install torchattacks`). The official trainer file is imported by path, unchanged, with an empty stand-in for Dassl (its
Trainer classes are never used); its CustomCLIP is built on the official clip/model.py from the shared
random ViT-B/16 weights and called as the trainer's forward_backward calls it. Differences from an
official run, all without effect on the numbers: fp32 throughout with `.half()` neutralised (fp16-exact
weights and prompts), KgCoOp's second CLIP (for the frozen targets) is the same fp32 model instead of a
fresh fp16 download on CUDA. Output: numbers only (logits, loss, gradient norm of every learnable tensor).
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


def official_model(method: str, checkout: Path, state: dict):
    """The official CustomCLIP of `method`, built from `state`, its learnable tensors set from the case."""
    spec = case.CASES[method]
    trainer_path = checkout / spec["trainer"]
    repo_root = trainer_path.parent.parent  # the folder holding clip/ and trainers/
    stub_dassl()
    sys.modules.setdefault("autoattack", types.ModuleType("autoattack")).AutoAttack = None  # imported, unused
    sys.path.insert(0, str(repo_root))
    import clip.model as clip_model_mod  # the checkout's clip package (one checkout per process)

    design = spec["design"]
    build = (lambda: clip_model_mod.build_model(dict(state), design)) if design else \
        (lambda: clip_model_mod.build_model(dict(state)))
    clip_model = build().float().eval()
    trainer = load_module(trainer_path, f"official_{method}")
    trainer.load_clip_to_cpu = lambda cfg: build().float().eval()  # KgCoOp builds a second CLIP for its targets
    cfg = Node({"TRAINER": spec["cfg"], "INPUT": {"SIZE": (224, 224)}, "MODEL": {"BACKBONE": {"NAME": "ViT-B/16"}},
                "DATASET": {"NAME": spec.get("dataset", "ImageNet")}})
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda t, *a, **k: t  # KgCoOp moves its targets to CUDA; here everything stays on the CPU
    try:
        model = trainer.CustomCLIP(cfg, case.CLASSNAMES, clip_model).float()
    finally:
        torch.Tensor.cuda = cuda
    # which tensors the trainer trains: "prompt_learner" (and "VPT" for IVLP)
    ivlp = spec.get("base", method) == "ivlp"
    learnable = set_learnable(model, lambda name: "prompt_learner" in name or (ivlp and "VPT" in name), case.draw)
    return model, learnable


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, choices=sorted(case.CASES))
    ap.add_argument("--checkout", required=True, help="a checkout of the method's official repository")
    ap.add_argument("--commit", help="the checkout's commit, when it is not a git work tree")
    ap.add_argument("--out", help="default: tests/fixtures/fidelity/<method>.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    out_path = Path(args.out or Path(__file__).parents[2] / f"tests/fixtures/fidelity/{args.method}.json")

    from robustprompt.backbone import load_backbone
    from robustprompt.backbone.loading import OPENAI_MEAN, OPENAI_STD

    ours = load_backbone(case.MODEL, "random", quick_gelu=True)  # only for the shared weights
    case.fp16_exact(ours.clip)
    state = {k: v.clone() for k, v in ours.clip.state_dict().items()}
    images, labels = case.inputs()
    x = (images - torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)) / torch.tensor(OPENAI_STD).view(1, 3, 1, 1)

    with no_half():
        model, learnable = official_model(args.method, Path(args.checkout), state)
        model.train()  # only the prompt learner's mode matters: CoCoOp / IVLP / MaPLe return the loss in training
        if args.method.startswith("adv"):  # forward_backward with AT_LOSS_TYPE adv_half
            import torchattacks

            attacker = torchattacks.PGD(model, eps=case.ATTACK["eps"], alpha=case.ATTACK["alpha"],
                                        steps=case.ATTACK["steps"], random_start=False)
            n = images.shape[0]
            adv = attacker(images[n // 2:], labels[n // 2:])
            loss = model(torch.cat([images[:n // 2], adv]), labels)
            terms = {"delta_l1": (adv - images[n // 2:]).abs().sum().item()}
            with torch.no_grad():
                model.eval()
                logits = model(images)
                model.train()
        elif args.method == "kgcoop":  # KgCoOp.forward_backward: CE + W * (1 - mean cos(text, frozen text))
            logits, score = model(x)
            ce = F.cross_entropy(logits, labels)
            loss = ce + case.CASES["kgcoop"]["cfg"]["COOP"]["W"] * score
            terms = {"ce": ce.item(), "score": score.item()}
        elif args.method == "coop":  # CoOp.forward_backward
            logits = model(x)
            loss = F.cross_entropy(logits, labels)
            terms = {}
        else:
            loss = model(x, labels)
            terms = {}
            with torch.no_grad():
                model.eval()
                logits = model(x)
                model.train()
        loss.backward()
    grads = {name: p.grad.norm().item() for name, p in learnable.items() if p.grad is not None}
    unused = sorted(name for name, p in learnable.items() if p.grad is None)
    spec = case.CASES[args.method]
    out = {"reference": {"repository": spec["repository"], "commit": checkout_commit(args.checkout, args.commit),
                         "trainer": spec["trainer"]},
           "logits": logits.detach().tolist(), "loss": loss.item(), "terms": terms,
           "grad_norms": grads, "unused_learnable": unused}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("loss", "terms", "unused_learnable")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
