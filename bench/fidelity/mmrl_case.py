"""The shared case of the MMRL fidelity fixture: weights, learnable tensors and inputs that both the
authors' code (bench/fidelity/mmrl.py) and robustprompt (tests/test_fidelity.py) are run on."""

from __future__ import annotations

import torch

MODEL = "ViT-B-16"  # open_clip, random weights drawn from seed 0 (load_backbone(..., "random")), QuickGELU
CLASSNAMES = ["cat", "sea turtle", "airplane"]
TEMPLATE = "a photo of a {}."
N_REP, REP_DIM, ALPHA, REG_WEIGHT = 5, 512, 0.7, 1.0
REP_LAYERS = list(range(6, 13))  # 1-based, as the authors' config
TOLERANCE = 1e-5  # relative; fp32 on the CPU, two attention implementations


def fp16_exact(clip) -> None:
    """Round the backbone's weights to fp16 in place. The authors' build_model casts the model to fp16
    before loading a state dict (OpenAI's weights are fp16), so only fp16-exact weights are shared."""
    import torch

    with torch.no_grad():
        for t in list(clip.parameters()) + list(clip.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


def learnable(vision_width: int, text_width: int, embed_dim: int) -> dict:
    """The learnable tensors, seeded: R, one Linear per representation layer and tower (all different,
    so that the layer order is tested), proj_rep."""
    g = torch.Generator().manual_seed(1234)
    out = {"rep_tokens": 0.02 * torch.randn(N_REP, REP_DIM, generator=g)}
    for i, _ in enumerate(REP_LAYERS):
        out[f"r2v.{i}.weight"] = 0.02 * torch.randn(vision_width, REP_DIM, generator=g)
        out[f"r2v.{i}.bias"] = 0.02 * torch.randn(vision_width, generator=g)
        out[f"r2t.{i}.weight"] = 0.02 * torch.randn(text_width, REP_DIM, generator=g)
        out[f"r2t.{i}.bias"] = 0.02 * torch.randn(text_width, generator=g)
    out["proj_rep"] = vision_width ** -0.5 * torch.randn(vision_width, embed_dim, generator=g)
    return out


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Two images in [0, 1] (before CLIP's normalisation) and their labels."""
    g = torch.Generator().manual_seed(99)
    return torch.rand(2, 3, 224, 224, generator=g), torch.tensor([0, 1])
