"""PromptSRC fidelity fixture: run the authors' model code on the shared case and store the numbers.

    .venv/bin/python bench/fidelity/promptsrc.py --checkout PATH/TO/muzairkhattak/PromptSRC [--commit SHA]

Tested at commit bb95c77b634d63488f2cad81ff4a72d53bdd06d5. Its `clip/model.py` (the IVLP towers) and
`trainers/imagenet_templates.py` run here unchanged, loaded by path, in fp32; the trainer's glue
(trainers/promptsrc.py: VLPromptLearner.forward, TextEncoder, CustomCLIP.forward and the loss of
PromptSRC.forward_backward; that file imports Dassl) is restated below. Output: numbers only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import promptsrc_case as case  # noqa: E402
from common import checkout_commit, load_module  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", required=True)
    ap.add_argument("--commit", help="the checkout's commit, when it is not a git work tree")
    ap.add_argument("--out", default=str(Path(__file__).parents[2] / "tests/fixtures/fidelity/promptsrc.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    root = Path(args.checkout)
    ref = load_module(root / "clip/model.py", "psrc_model")
    templates = load_module(root / "trainers/imagenet_templates.py", "psrc_templates").IMAGENET_TEMPLATES
    commit = checkout_commit(args.checkout, args.commit)

    from robustprompt.backbone import load_backbone
    from robustprompt.backbone.loading import OPENAI_MEAN, OPENAI_STD

    ours = load_backbone(case.MODEL, "random", quick_gelu=True)
    case.fp16_exact(ours.clip)
    state = {k: v.clone() for k, v in ours.clip.state_dict().items()}
    design = {"trainer": "IVLP", "vision_depth": case.DEPTH, "language_depth": case.DEPTH,
              "vision_ctx": case.N_CTX, "language_ctx": case.N_CTX}
    model = ref.build_model(dict(state), design).float().eval()
    zs = ref.build_model(dict(state), {**design, "vision_depth": 0, "language_depth": 0, "vision_ctx": 0,
                                       "language_ctx": 0}).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    t = case.learnable(model.ln_final.weight.shape[0], model.visual.conv1.out_channels)
    with torch.no_grad():
        model.visual.VPT.copy_(t["vision.0"])
        for i in range(1, case.DEPTH):
            model.visual.transformer.resblocks[i].VPT_shallow.copy_(t[f"vision.{i}"])
            model.transformer.resblocks[i].VPT_shallow.copy_(t[f"text.{i}"])
    learn = {"vision.0": model.visual.VPT}
    for i in range(1, case.DEPTH):
        learn[f"vision.{i}"] = model.visual.transformer.resblocks[i].VPT_shallow
        learn[f"text.{i}"] = model.transformer.resblocks[i].VPT_shallow
    ctx = t["text.0"].clone().requires_grad_(True)
    for p in learn.values():
        p.requires_grad_(True)

    images, labels = case.inputs()
    x = (images - torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)) / torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    tokenized = ours.tokenize([f"{case.CTX_INIT} {c}." for c in case.CLASSNAMES])
    with torch.no_grad():
        embedding = model.token_embedding(tokenized)
        fixed = torch.stack([zs.encode_text(ours.tokenize([tpl.replace("{}", c) for c in case.CLASSNAMES]))
                             for tpl in templates], dim=1).mean(dim=1)
    # VLPromptLearner.forward + TextEncoder.forward
    prompts = torch.cat([embedding[:, :1], ctx.unsqueeze(0).expand(len(case.CLASSNAMES), -1, -1),
                         embedding[:, 1 + case.N_CTX:]], dim=1)
    h = (prompts + model.positional_embedding).permute(1, 0, 2)
    h = model.transformer(h).permute(1, 0, 2)
    h = model.ln_final(h)
    text_features = h[torch.arange(h.shape[0]), tokenized.argmax(dim=-1)] @ model.text_projection
    # CustomCLIP.forward (training branch)
    scale = model.logit_scale.exp()
    image_features = model.visual(x)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    logits = scale * image_features @ text_features.t()
    fixed = fixed / fixed.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        zs_feat = zs.visual(x)
        zs_feat = zs_feat / zs_feat.norm(dim=-1, keepdim=True)
        zs_logits = scale * zs_feat @ fixed.t()
    # PromptSRC.forward_backward
    loss_ce = F.cross_entropy(logits, labels)
    loss_text = F.l1_loss(text_features, fixed, reduction="mean") * case.TEXT_W
    loss_image = F.l1_loss(image_features, zs_feat, reduction="mean") * case.IMAGE_W
    loss_logits = F.kl_div(F.log_softmax(logits / 1, dim=1), F.log_softmax(zs_logits / 1, dim=1), reduction="sum",
                           log_target=True) * (1 * 1) / logits.numel()
    loss = loss_ce + loss_logits + loss_text + loss_image
    loss.backward()
    grads = {"text.0": ctx.grad.norm().item(), **{k: p.grad.norm().item() for k, p in learn.items()}}
    out = {"reference": {"repository": "muzairkhattak/PromptSRC", "commit": commit},
           "logits": logits.tolist(), "loss": loss.item(),
           "terms": {"ce": loss_ce.item(), "text_l1": loss_text.item(), "image_l1": loss_image.item(),
                     "logits_kl": loss_logits.item()},
           "grad_norms": grads}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("loss", "terms")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
