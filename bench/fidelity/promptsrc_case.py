"""The shared case of the PromptSRC fidelity fixture (bench/fidelity/promptsrc.py, tests/test_fidelity.py)."""

from __future__ import annotations

import torch

from mmrl_case import MODEL, fp16_exact, inputs  # noqa: F401 (the same weights and images)

CLASSNAMES = ["cat", "sea turtle", "airplane"]
CTX_INIT = "a photo of a"
N_CTX, DEPTH = 4, 9
TEXT_W, IMAGE_W = 25.0, 10.0
TOLERANCE = 1e-5  # relative


def learnable(text_width: int, vision_width: int) -> dict:
    """Prompts of every layer, seeded and fp16-exact (the authors' blocks cast prompts with .half())."""
    g = torch.Generator().manual_seed(4321)

    def draw(width):
        return (0.02 * torch.randn(N_CTX, width, generator=g)).half().float()

    out = {"text.0": draw(text_width)}
    out.update({f"text.{i}": draw(text_width) for i in range(1, DEPTH)})
    out.update({f"vision.{i}": draw(vision_width) for i in range(DEPTH)})
    return out
