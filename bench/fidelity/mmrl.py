"""MMRL fidelity fixture: run the authors' model code on the shared case and store the numbers.

    .venv/bin/python bench/fidelity/mmrl.py --checkout PATH/TO/yunncheng/MMRL [--out tests/fixtures/fidelity/mmrl.json]

PATH holds a checkout of yunncheng/MMRL (tested at commit 27d8821f6ac135a1d0c8e4c5ed78af14df0cd82e).
Its `clip/model_mmrl.py` (the towers with representation tokens) runs here unchanged, loaded by path;
the few lines of its trainer that glue them (trainers/mmrl.py: CustomCLIP.forward, TextEncoder_MMRL,
MMRL_Loss; that file imports Dassl) are restated below, line for line. Nothing of the checkout is
copied into robustprompt. The output holds numbers only: logits of both branches and their fusion,
the loss, and the gradient norm of every learnable tensor.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import mmrl_case as case  # noqa: E402
from common import checkout_commit, load_module  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", required=True)
    ap.add_argument("--commit", help="the checkout's commit, when it is not a git work tree")
    ap.add_argument("--out", default=str(Path(__file__).parents[2] / "tests/fixtures/fidelity/mmrl.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    ref = load_module(Path(args.checkout) / "clip/model_mmrl.py", "model_mmrl")
    commit = checkout_commit(args.checkout, args.commit)

    from robustprompt.backbone import load_backbone
    from robustprompt.backbone.loading import OPENAI_MEAN, OPENAI_STD

    ours = load_backbone(case.MODEL, "random", quick_gelu=True)  # only for the shared weights and tokenizer
    case.fp16_exact(ours.clip)
    state = {k: v.clone() for k, v in ours.clip.state_dict().items()}
    design = {"model": "MMRL", "rep_tokens_layers": case.REP_LAYERS, "n_rep_tokens": case.N_REP}
    model = ref.build_model_MMRL(dict(state), design).float().eval()
    zs = ref.build_model_MMRL(dict(state), {**design, "model": "CLIP"}).float().eval()

    t = case.learnable(model.visual.conv1.out_channels, model.ln_final.weight.shape[0],
                       model.text_projection.shape[1])
    params = {k: v.clone().requires_grad_(True) for k, v in t.items()}
    with torch.no_grad():
        model.visual.proj_rep.copy_(params["proj_rep"])
    model.visual.proj_rep.requires_grad_(True)
    for p in list(model.parameters()):
        if p is not model.visual.proj_rep:
            p.requires_grad_(False)

    images, labels = case.inputs()
    x = (images - torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)) / torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    tokens = ours.tokenize([case.TEMPLATE.format(c) for c in case.CLASSNAMES])

    # MultiModalRepresentationLearner.forward
    rep_text = [F.linear(params["rep_tokens"], params[f"r2t.{i}.weight"], params[f"r2t.{i}.bias"])
                for i in range(len(case.REP_LAYERS))]
    rep_vis = [F.linear(params["rep_tokens"], params[f"r2v.{i}.weight"], params[f"r2v.{i}.bias"])
               for i in range(len(case.REP_LAYERS))]
    # TextEncoder_MMRL.forward
    emb = model.token_embedding(tokens)
    h = (emb + model.positional_embedding).permute(1, 0, 2)
    eot = tokens.argmax(dim=-1)
    h = model.transformer([h, rep_text, 0, eot])[0].permute(1, 0, 2)
    h = model.ln_final(h)
    text_features = h[torch.arange(h.shape[0]), eot + case.N_REP] @ model.text_projection
    # CustomCLIP.forward
    image_features, image_features_rep = model.visual([x, rep_vis])
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    image_features_rep = image_features_rep / image_features_rep.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    scale = model.logit_scale.exp()  # the code writes 100., CLIP's trained scale; random weights hold log(1/0.07)
    logits = scale * image_features @ text_features.t()
    logits_rep = scale * image_features_rep @ text_features.t()
    fusion = case.ALPHA * logits + (1 - case.ALPHA) * logits_rep
    # the frozen features (MMRL.build_model: a plain CLIP)
    with torch.no_grad():
        img_clip = zs.visual(x)
        img_clip = img_clip / img_clip.norm(dim=-1, keepdim=True)
        txt_clip = zs.encode_text(tokens)
        txt_clip = txt_clip / txt_clip.norm(dim=-1, keepdim=True)
    # MMRL_Loss.forward
    loss = (case.ALPHA * F.cross_entropy(logits, labels) + (1 - case.ALPHA) * F.cross_entropy(logits_rep, labels)
            + case.REG_WEIGHT * (1 - torch.mean(F.cosine_similarity(image_features, img_clip, dim=1)))
            + case.REG_WEIGHT * (1 - torch.mean(F.cosine_similarity(text_features, txt_clip, dim=1))))
    loss.backward()
    grads = {k: float(p.grad.norm()) for k, p in params.items() if k != "proj_rep"}
    grads["proj_rep"] = float(model.visual.proj_rep.grad.norm())
    out = {"reference": {"repository": "yunncheng/MMRL", "commit": commit},
           "logits": logits.tolist(), "logits_rep": logits_rep.tolist(), "fusion": fusion.tolist(),
           "loss": loss.item(), "grad_norms": grads}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("loss", "fusion")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
