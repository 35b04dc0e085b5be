"""Zero-shot accuracy of a bare open_clip CLIP on in-memory images (used by pretrain and the bench)."""

from __future__ import annotations

import numpy as np
import torch

from ..backbone.loading import image_normalisation


def to_model_input(images: np.ndarray, model) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float tensor (N, 3, H, W)."""
    mean, std = image_normalisation(model)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def class_text_features(model, tokenizer, classnames: list[str], template: str) -> torch.Tensor:
    tokens = tokenizer([template.format(c) for c in classnames]).to(next(model.parameters()).device)
    return torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, images: np.ndarray, labels, classnames: list[str], template: str,
                       batch_size: int = 500) -> float:
    """Top-1 accuracy of `template.format(classname)` prompts on uint8 images (N, H, W, 3)."""
    was_training = model.training
    model.eval()
    text = class_text_features(model, tokenizer, classnames, template)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    correct = 0
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i:i + batch_size], model).to(text.device)
        f = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        correct += int(((f @ text.T).argmax(-1).cpu() == labels[i:i + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, len(images))


def fashion_mnist_clean(split: str = "test", root=None, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST drawn in the pretraining style (grey on black, padded to 32 px), uint8 (N, 32, 32, 3)."""
    from ..synthetic.sources import load_fashion_mnist

    imgs, labels = load_fashion_mnist(split, root)
    if limit is not None:
        imgs, labels = imgs[:limit], labels[:limit]
    out = np.zeros((len(imgs), 32, 32, 3), np.uint8)
    out[:, 2:30, 2:30, :] = imgs[:, :, :, None]
    return out, np.asarray(labels, dtype=np.int64)


def quality_report(model, tokenizer, fashion_mnist_root=None, fast: bool = False) -> dict:
    """The quality bars: clean Fashion-MNIST test zero-shot and each testbed's test split zero-shot.

    Every number uses the dataset's templates[0] (not a pretraining caption template); the clean
    Fashion-MNIST number is also given with the classic "a photo of a {}." for reference.
    """
    from ..data import testbeds
    from ..synthetic.sources import FASHION_MNIST_CLASSES

    stride = 10 if fast else 1
    imgs, labels = fashion_mnist_clean("test", fashion_mnist_root)
    imgs, labels = imgs[::stride], labels[::stride]
    fm_template = testbeds.TEMPLATES["fashion-mnist"][0]
    rows = {
        "fashion-mnist-clean": {
            "split": "t10k (pretraining style)", "n": len(imgs), "classes": 10, "template": fm_template,
            "accuracy": zero_shot_accuracy(model, tokenizer, imgs, labels, FASHION_MNIST_CLASSES, fm_template),
            "accuracy_photo_template": zero_shot_accuracy(model, tokenizer, imgs, labels, FASHION_MNIST_CLASSES,
                                                          "a photo of a {}."),
        }
    }
    for name in testbeds.TESTBEDS:
        row = {}
        for clean in (False, True):
            ds = testbeds.build(name, fashion_mnist_root=fashion_mnist_root, clean=clean)
            test = ds.test[::stride]
            keys = np.array([d.key for d in test])
            acc = zero_shot_accuracy(model, tokenizer, ds.images[keys], [d.label for d in test], ds.classnames,
                                     ds.templates[0])
            if clean:
                row["accuracy_clean_style"] = acc  # same test images drawn in the pretraining style
            else:
                row.update({"split": "test (testbed style)", "n": len(test), "classes": ds.num_classes,
                            "template": ds.templates[0], "accuracy": acc, "chance": 1.0 / ds.num_classes})
        rows[name] = row
    return rows


WORLD_QUALITY_TEMPLATE = "an emoji picture of a {}."  # not a pretraining caption template


def world_quality(model, tokenizer, root=None, styles=("fxemoji", "fluent-3d", "openmoji-black"), seed: int = 0) -> dict:
    """Zero-shot top-1 over every concept a style draws (one centred scene per concept and picture):
    the held-out style (fxemoji) and two downstream styles, with `WORLD_QUALITY_TEMPLATE`."""
    from ..world.concepts import load_concepts
    from ..world.render import SceneStyle, compose
    from ..world.sources import load_pictures

    concepts = load_concepts(root)
    index = {code: k for k, c in enumerate(concepts) for code in c.codes}
    scene = SceneStyle(scale=(0.8, 0.9), rotate=0.0, noise=0.0)
    rows = {}
    for style in styles:
        codes, rgba = load_pictures(style, root)
        keep = [i for i, code in enumerate(codes) if code in index]
        owners = [index[codes[i]] for i in keep]
        present = sorted(set(owners))
        relabel = {k: j for j, k in enumerate(present)}
        images, _ = compose(rgba[keep], np.random.default_rng([seed, 7]), scene)
        acc = zero_shot_accuracy(model, tokenizer, images, [relabel[k] for k in owners],
                                 [concepts[k].name for k in present], WORLD_QUALITY_TEMPLATE)
        rows[f"world-{style}"] = {"split": f"all concepts drawn in {style}", "n": len(keep), "classes": len(present),
                                  "template": WORLD_QUALITY_TEMPLATE, "accuracy": acc, "chance": 1.0 / len(present)}
    return rows
