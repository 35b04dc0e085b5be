"""The shared case of the prompt-learner fidelity fixtures (CoOp, CoCoOp, KgCoOp, IVLP, MaPLe):
bench/fidelity/prompt_learners.py runs the authors' code on it, tests/test_fidelity.py runs ours.

Every learnable tensor is drawn from a seed named after its official parameter name, rounded to fp16
(the official blocks cast prompts with .half(); fp16-exact values make the cast change nothing)."""

from __future__ import annotations

import zlib

import torch

from mmrl_case import MODEL, fp16_exact, inputs  # noqa: F401 (the same weights and images)

CLASSNAMES = ["cat", "sea turtle", "airplane"]  # a multi-token name in the middle
TOLERANCE = 1e-5  # relative; fp32 on the CPU, two attention implementations

# method -> the official repository, its trainer file and CustomCLIP's design; our config and template.
CASES = {
    "coop": {"repository": "KaiyangZhou/CoOp", "trainer": "trainers/coop.py", "design": None,
             "cfg": {"COOP": {"N_CTX": 16, "CTX_INIT": "", "CSC": False, "CLASS_TOKEN_POSITION": "end",
                              "PREC": "fp32"}},
             "ours": {"n_ctx": 16, "ctx_init": ""}, "template": "a photo of a {}."},
    "cocoop": {"repository": "KaiyangZhou/CoOp", "trainer": "trainers/cocoop.py", "design": None,
               "cfg": {"COCOOP": {"N_CTX": 4, "CTX_INIT": "a photo of a", "PREC": "fp32"}},
               "ours": {"n_ctx": 4, "ctx_init": "a photo of a"}, "template": "a photo of a {}."},
    # KgCoOp's frozen target uses the dataset's template: DTD's tests our mapping of CoOp's "{} texture."
    "kgcoop": {"repository": "htyao89/KgCoOp", "trainer": "KgCoOp/trainers/kgcoop.py", "design": None,
               "cfg": {"COOP": {"N_CTX": 4, "CTX_INIT": "a photo of a", "CSC": False,
                                "CLASS_TOKEN_POSITION": "end", "PREC": "fp32", "W": 8.0},
                       "COCOOP": {"PREC": "fp32"}},
               "dataset": "DescribableTextures",
               "ours": {"n_ctx": 4, "ctx_init": "a photo of a", "kg_weight": 8.0}, "template": "{} texture."},
    "ivlp": {"repository": "muzairkhattak/multimodal-prompt-learning", "trainer": "trainers/independentVL.py",
             "design": {"trainer": "IVLP", "vision_depth": 9, "language_depth": 9, "vision_ctx": 2,
                        "language_ctx": 2},
             "cfg": {"IVLP": {"N_CTX_TEXT": 2, "N_CTX_VISION": 2, "CTX_INIT": "a photo of a",
                              "PROMPT_DEPTH_TEXT": 9, "PROMPT_DEPTH_VISION": 9, "PREC": "fp32"}},
             "ours": {"n_ctx_text": 2, "n_ctx_vision": 2, "depth_text": 9, "depth_vision": 9,
                      "ctx_init": "a photo of a", "depth_rule": "exact"}, "template": "a photo of a {}."},
    "maple": {"repository": "muzairkhattak/multimodal-prompt-learning", "trainer": "trainers/maple.py",
              "design": {"trainer": "MaPLe", "vision_depth": 0, "language_depth": 0, "vision_ctx": 0,
                         "language_ctx": 0, "maple_length": 2},
              "cfg": {"MAPLE": {"N_CTX": 2, "CTX_INIT": "a photo of a", "PROMPT_DEPTH": 9, "PREC": "fp32"}},
              "ours": {"n_ctx": 2, "ctx_init": "a photo of a", "depth": 9, "depth_rule": "exact"},
              "template": "a photo of a {}."},
}
# Adversarial IVLP / MaPLe (xinwong/Multimodal-Adversarial-Prompt-Tuning): the same towers, images in [0, 1]
# normalised inside CustomCLIP, and forward_backward's "adv_half" loss: CE on the first half clean and the
# second half after torchattacks.PGD. The PGD start is zero here (random_start=False on both sides) so that
# no random draw has to be shared; the presets' random start is configuration, not arithmetic.
ATTACK = {"eps": 1 / 255, "alpha": 1 / 255, "steps": 2}
for _name, _base, _trainer, _key in (("advivlp", "ivlp", "trainers/adv_independentVL.py", "IVLP"),
                                     ("advmaple", "maple", "trainers/advmaple.py", "MAPLE")):
    _official_key = {"IVLP": "AdvIVLP", "MAPLE": "AdvMaPLe"}[_key]
    CASES[_name] = {**CASES[_base], "repository": "xinwong/Multimodal-Adversarial-Prompt-Tuning",
                    "trainer": _trainer, "base": _base,
                    "cfg": {_official_key: CASES[_base]["cfg"][_key]}}

# NAP-Tuning (bench/fidelity/naptuning.py): the first author's development code, jiamingzhang94/MAPT@9a9bb04, a
# MaPLe trainer with vision token refiners; train.py's configuration (N_CTX 16 ignores CTX_INIT; depth 12).
NAPTUNING = {"repository": "jiamingzhang94/MAPT",
             "cfg": {"N_CTX": 16, "CTX_INIT": "a photo of a", "PROMPT_DEPTH": 12, "PREC": "fp32",
                     "ADV_TRAIN": True, "EPSILON": 1 / 255, "TEST_EPSILON": 1 / 255, "ADV_STEPS": 5,
                     "TEST_STEPS": 100, "SURROGATE": "self"},
             "ours": {"n_ctx": 16, "ctx_init": "", "depth": 12, "depth_rule": "exact"},
             "adv": {"eps": "1/255", "alpha": "0.3/255", "steps": 5, "random_start": False, "loss": "mean", "box": "end"}}


def official_to_ours(method: str, name: str) -> str:
    """Our parameter name for an official learnable parameter's name."""
    if method == "naptuning" and ".token_refiner.refiner." in name:
        # image_encoder.transformer.resblocks.<i>.token_refiner.refiner.{0,2}.<w|b>: the tokens entering block i,
        # ours the output of block i - 1
        parts = name.split(".")
        return f"vision_refiners.{int(parts[3]) - 1}.{'down' if parts[6] == '0' else 'up'}.{parts[-1]}"
    method = "maple" if method == "naptuning" else CASES[method].get("base", method)
    if method in ("coop", "cocoop", "kgcoop"):
        return name.replace("prompt_learner.ctx", "prompt.ctx").replace("prompt_learner.meta_net.", "meta_net.")
    if name == "prompt_learner.ctx":
        return "text_prompt.context.ctx"
    parts = name.split(".")
    if method == "ivlp":
        if name == "image_encoder.VPT":
            return "vision_prompt.tokens.0"
        layer = int(parts[3])  # {image,text}_encoder.transformer.resblocks.<i>.VPT_shallow
        return f"vision_prompt.tokens.{layer}" if parts[0] == "image_encoder" else f"text_prompt.deep.tokens.{layer}"
    if name.startswith("prompt_learner.proj."):
        return f"coupling.proj.0.{parts[-1]}"
    if name.startswith("prompt_learner.compound_prompts_text."):
        return f"text_prompt.deep.tokens.{int(parts[-1]) + 1}"
    if name.startswith("prompt_learner.compound_prompt_projections."):
        return f"coupling.proj.{int(parts[2]) + 1}.{parts[-1]}"
    raise KeyError(name)


def draw(name: str, shape) -> torch.Tensor:
    """The value of the learnable tensor with this official name: N(0, 0.02), seeded by the name, fp16-exact."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return (0.02 * torch.randn(*shape, generator=g)).to(torch.float16).float()  # not .half(): see common.no_half

