"""Scenes from pictures: place RGBA pictures on backdrops at the model's resolution, with optional
style-breaking edits. One function serves the pretraining stream and the downstream datasets; they
differ only in the `SceneStyle` they pass.

Everything is a pure function of the numpy Generator passed in, so a scene is fixed by its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

RES = 32

# named backdrop colours (RGB 0-255); the name goes into captions
BACKDROPS = {
    "white": (245, 245, 245), "black": (12, 12, 12), "grey": (128, 128, 128), "red": (200, 40, 40),
    "orange": (235, 140, 30), "yellow": (240, 220, 60), "green": (50, 160, 70), "blue": (40, 90, 200),
    "purple": (130, 60, 170), "pink": (240, 150, 190), "brown": (120, 80, 40), "sky blue": (130, 190, 235),
}
BACKDROP_NAMES = list(BACKDROPS)
EDITS = ("grey", "outline", "silhouette", "posterise", "blur", "hue", "invert")


@dataclass(frozen=True)
class SceneStyle:
    scale: tuple[float, float] = (0.6, 1.0)  # picture side as a fraction of the frame
    rotate: float = 15.0  # max degrees either way
    flat: float = 0.45  # backdrop kinds: flat named colour, two-colour gradient, smooth texture (rest)
    gradient: float = 0.3
    noise: float = 0.3  # fraction with pixel noise of std U(0, noise_std)
    noise_std: float = 0.05
    distractor: float = 0.0  # fraction with a second, smaller picture
    # per edit, the probability that an image gets it (independent draws; at most one kept, in EDITS order)
    edits: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        bad = [e for e, _ in self.edits if e not in EDITS]
        if bad:
            raise ValueError(f"unknown edits {bad}; known: {', '.join(EDITS)}")


def _affine(rng, n, style: SceneStyle, shrink: float = 1.0):
    """Per image: scale, rotation (rad) and centre offset in [-1, 1] frame units."""
    s = rng.uniform(*style.scale, n) * shrink
    a = np.deg2rad(rng.uniform(-style.rotate, style.rotate, n))
    room = np.clip(1.0 - s, 0.0, None)
    off = rng.uniform(-1, 1, (n, 2)) * room[:, None]
    return s, a, off


def _place(rgba: torch.Tensor, s, a, off) -> torch.Tensor:
    """rgba (n, 4, H, W) float premultiplied -> (n, 4, RES, RES) placed by scale / angle / offset."""
    n = rgba.shape[0]
    cos, sin = np.cos(a) / s, np.sin(a) / s
    theta = np.zeros((n, 2, 3), np.float32)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, :, 2] = -(theta[:, :, :2] @ off[:, :, None])[..., 0]
    grid = F.affine_grid(torch.from_numpy(theta), [n, 4, RES, RES], align_corners=False)
    # downsample first (anti-aliasing), then resample
    src = F.avg_pool2d(rgba, rgba.shape[-1] // RES) if rgba.shape[-1] > RES else rgba
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _backdrops(rng, n, style: SceneStyle) -> tuple[torch.Tensor, list[str | None]]:
    kind = rng.random(n)
    names: list[str | None] = [None] * n
    out = np.empty((n, 3, RES, RES), np.float32)
    cols = np.array(list(BACKDROPS.values()), np.float32) / 255.0
    pick = rng.integers(len(cols), size=(n, 2))
    jitter = rng.normal(0, 0.04, (n, 2, 3)).astype(np.float32)
    c1 = np.clip(cols[pick[:, 0]] + jitter[:, 0], 0, 1)
    c2 = np.clip(cols[pick[:, 1]] + jitter[:, 1], 0, 1)
    ramp = np.linspace(0, 1, RES, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi, n)
    coarse = rng.normal(0, 1, (n, 3, 4, 4)).astype(np.float32)
    smooth = F.interpolate(torch.from_numpy(coarse), size=(RES, RES), mode="bicubic", align_corners=False).numpy()
    base = rng.uniform(0.15, 0.85, (n, 3, 1, 1)).astype(np.float32)
    for i in range(n):
        if kind[i] < style.flat:
            out[i] = c1[i][:, None, None]
            names[i] = BACKDROP_NAMES[pick[i, 0]]
        elif kind[i] < style.flat + style.gradient:
            t = np.cos(angle[i]) * ramp[None, :] + np.sin(angle[i]) * ramp[:, None]
            t = (t - t.min()) / max(1e-6, t.max() - t.min())
            out[i] = c1[i][:, None, None] * (1 - t) + c2[i][:, None, None] * t
        else:
            out[i] = np.clip(base[i] + 0.15 * smooth[i], 0, 1)
    return torch.from_numpy(out), names


def _edit(img: torch.Tensor, alpha: torch.Tensor, edit: str, rng) -> torch.Tensor:
    """One style-breaking edit of one composed image (3, R, R) with its coverage (1, R, R)."""
    if edit == "grey":
        return img.mean(0, keepdim=True).expand(3, -1, -1).clone()
    if edit == "outline":  # dark lines where coverage changes, on a light ground
        a = alpha[None]
        edge = (F.max_pool2d(a, 3, 1, 1) + F.max_pool2d(-a, 3, 1, 1)).clamp(0, 1)[0]
        ink = torch.tensor(rng.uniform(0, 0.25, 3), dtype=img.dtype)[:, None, None]
        paper = torch.tensor(rng.uniform(0.8, 1.0), dtype=img.dtype)
        return paper * (1 - edge) + ink * edge
    if edit == "silhouette":
        ink = torch.tensor(rng.uniform(0, 0.3, 3), dtype=img.dtype)[:, None, None]
        return img * (1 - alpha) + ink * alpha
    if edit == "posterise":
        levels = float(rng.integers(2, 4))
        return torch.round(img * levels) / levels
    if edit == "blur":
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
        x = F.conv2d(F.pad(img[:, None], (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
        return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))[:, 0]
    if edit == "hue":
        return img[torch.from_numpy(rng.permutation(3))]
    if edit == "invert":
        return 1 - img
    raise ValueError(edit)


def compose(rgba: np.ndarray, rng: np.random.Generator, style: SceneStyle,
            distractors: np.ndarray | None = None) -> tuple[np.ndarray, list[dict]]:
    """uint8 RGBA pictures (n, S, S, 4) -> uint8 scenes (n, RES, RES, 3) and per scene the attributes
    a caption may mention: backdrop colour name (or None), edit (or None), size ("small" / None),
    and whether a distractor was drawn (`distractors`: RGBA pictures, one per scene, used where drawn)."""
    n = len(rgba)
    x = torch.from_numpy(np.ascontiguousarray(rgba)).permute(0, 3, 1, 2).float().div_(255.0)
    x = torch.cat([x[:, :3] * x[:, 3:], x[:, 3:]], 1)  # premultiplied
    s, a, off = _affine(rng, n, style)
    fg = _place(x, s, a, off)
    bg, names = _backdrops(rng, n, style)
    img = bg * (1 - fg[:, 3:]) + fg[:, :3]
    alpha = fg[:, 3:]
    with_second = rng.random(n) < style.distractor
    if distractors is not None and with_second.any():
        d = torch.from_numpy(np.ascontiguousarray(distractors[with_second])).permute(0, 3, 1, 2).float().div_(255.0)
        d = torch.cat([d[:, :3] * d[:, 3:], d[:, 3:]], 1)
        s2, a2, off2 = _affine(rng, len(d), style, shrink=0.6)
        sd = _place(d, s2, a2, off2)
        idx = torch.from_numpy(np.flatnonzero(with_second))
        img[idx] = img[idx] * (1 - sd[:, 3:]) + sd[:, :3]
    edits: list[str | None] = [None] * n
    for e, p in style.edits:
        hit = rng.random(n) < p
        for i in np.flatnonzero(hit):
            if edits[i] is None:
                edits[i] = e
    for i, e in enumerate(edits):
        if e is not None:
            img[i] = _edit(img[i], alpha[i], e, rng)
    noisy = rng.random(n) < style.noise
    std = rng.uniform(0, style.noise_std, n).astype(np.float32) * noisy
    img = img + torch.from_numpy(rng.standard_normal(img.shape, dtype=np.float32)) * torch.from_numpy(std)[:, None, None, None]
    out = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    attrs = [{"backdrop": names[i] if edits[i] in (None, "silhouette", "blur") else None, "edit": edits[i],
              "small": bool(s[i] < 0.55), "distractor": bool(with_second[i] and distractors is not None)}
             for i in range(n)]
    return out, attrs
