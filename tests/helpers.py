"""Small generated data for engine and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def make_imagefolder(root: Path, n_per_class: int = 20, size: int = 16, classes=None, seed: int = 0) -> Path:
    """A tree of one folder per class, plain-coloured noisy squares (learnable even by a tiny model)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in classes or COLOURS:
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        colour = np.array(COLOURS.get(name, (128, 128, 128)), dtype=np.float32)
        for i in range(n_per_class):
            img = np.clip(colour + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


TINY_ARGS = ["--model", "robustprompt-test", "--pretrained", "random", "--epochs", "2", "--batch-size", "8",
             "--shots", "4", "--split", "all", "--set", "method_cfg.n_ctx=4", "--set", "train.eval_batch_size=16"]


def fails(capsys, argv, expect: str) -> None:
    """`robustprompt ARGV` exits 2 with exactly one stderr line that starts with the error prefix and names `expect`."""
    from robustprompt.cli import main

    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("robustprompt: error:") and expect in err[0], err[0]
