"""Deterministic captioned images for pretraining: Fashion-MNIST (train split only) and a little
generated world of shapes x colours x patterns x sizes x positions, plus letters and digits in
DejaVu fonts.

Pretraining style: objects on a black background at full contrast, or (the `Mix` options backdrop,
levels, noise) on a flat grey backdrop of level <= 0.3 at contrast >= 0.6, with pixel noise of std
<= 0.05. The testbeds in `robustprompt.data.testbeds` lie outside that on purpose: textured
backgrounds, contrast 0.35-0.55, noise std 0.04-0.08. (Two caption templates say "on black"; on a
backdrop they are slightly wrong, as web captions are.)

`PretrainStream(seed).batch(step, batch_size)` depends only on (seed, step, batch_size): the same
call gives the same images and captions in any process, which is what makes `--resume` exact.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..config import check
from . import captions as C
from .sources import font_paths, load_fashion_mnist

RES = 32  # the embedded model's resolution
_SS = 4  # supersampling factor for anti-aliased masks


# ---------------------------------------------------------------------------------------------
# geometry: polygons in unit coordinates ([-1, 1], y down), scaled by the radius at draw time


def _regular(n: int, phase: float = -math.pi / 2, r: float = 1.0):
    return [(r * math.cos(phase + 2 * math.pi * k / n), r * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _star():
    pts = []
    for k in range(10):
        rr = 1.0 if k % 2 == 0 else 0.45
        a = -math.pi / 2 + math.pi * k / 5
        pts.append((rr * math.cos(a), rr * math.sin(a) + 0.08))
    return pts


def _heart():
    pts = []
    for k in range(48):
        t = 2 * math.pi * k / 48
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x / 17.0, -y / 17.0 + 0.05))
    return pts


_POLYS = {
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": [(0.0, -0.95), (0.95, 0.75), (-0.95, 0.75)],
    "star": _star(),
    "heart": _heart(),
    "cross": [(-0.3, -0.95), (0.3, -0.95), (0.3, -0.3), (0.95, -0.3), (0.95, 0.3), (0.3, 0.3), (0.3, 0.95),
              (-0.3, 0.95), (-0.3, 0.3), (-0.95, 0.3), (-0.95, -0.3), (-0.3, -0.3)],
    "diamond": [(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)],
    "hexagon": _regular(6, phase=0.0, r=0.95),
    "pentagon": _regular(5, r=0.95),
    "arrow": [(-0.95, -0.22), (0.15, -0.22), (0.15, -0.65), (0.95, 0.0), (0.15, 0.65), (0.15, 0.22), (-0.95, 0.22)],
}


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float) -> None:
    """Draw `shape` filled with 255 at centre (cx, cy), radius r (all in supersampled pixels)."""
    def box(rr):
        return [cx - rr, cy - rr, cx + rr, cy + rr]

    if shape == "circle":
        draw.ellipse(box(0.9 * r), fill=255)
    elif shape == "ring":
        draw.ellipse(box(0.95 * r), fill=255)
        draw.ellipse(box(0.5 * r), fill=0)
    elif shape == "crescent":
        draw.ellipse(box(0.95 * r), fill=255)
        draw.ellipse([cx - 0.6 * r, cy - 0.95 * r, cx + 1.3 * r, cy + 0.95 * r], fill=0)
    else:
        draw.polygon([(cx + r * x, cy + r * y) for x, y in _POLYS[shape]], fill=255)


def shape_mask(shape: str, cx: float, cy: float, r: float, res: int = RES) -> np.ndarray:
    """Anti-aliased float32 alpha mask (res, res) of one shape; centre and radius in output pixels."""
    im = Image.new("L", (res * _SS, res * _SS), 0)
    _draw_shape(ImageDraw.Draw(im), shape, cx * _SS, cy * _SS, r * _SS)
    return np.asarray(im.resize((res, res), Image.BOX), dtype=np.float32) / 255.0


@functools.lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def glyph_mask(glyph: str, font: int, cx: float, cy: float, r: float, res: int = RES) -> np.ndarray:
    """Anti-aliased alpha mask of a letter/digit, about 2r pixels tall, centred at (cx, cy)."""
    paths = font_paths()
    path = str(paths[font % len(paths)])
    im = Image.new("L", (res * _SS, res * _SS), 0)
    f = _font(path, max(4, int(round(2.6 * r * _SS))))
    ImageDraw.Draw(im).text((cx * _SS, cy * _SS), glyph, fill=255, font=f, anchor="mm")
    return np.asarray(im.resize((res, res), Image.BOX), dtype=np.float32) / 255.0


def pattern_map(pattern: str, res: int = RES, phase: int = 0) -> np.ndarray:
    """Multiplier (res, res) in {0.3, 1}: where the pattern is dark, the fill is darker."""
    yy, xx = np.mgrid[0:res, 0:res]
    if pattern == "solid":
        on = np.ones((res, res), bool)
    elif pattern == "striped":
        on = ((yy + phase) % 4) < 2
    elif pattern == "dotted":
        on = ~((((yy + phase) % 4) < 2) & (((xx + phase) % 4) < 2))
    elif pattern == "checkered":
        on = (((yy + phase) // 3 + (xx + phase) // 3) % 2) == 0
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return np.where(on, 1.0, 0.3).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the pretraining grid: sizes x 3x3 positions


SIZE_RADIUS = {"small": 4.5, "medium": 7.0, "large": 11.0}
_GRID = {"small": (8.0, 16.0, 24.0), "medium": (11.0, 16.0, 21.0)}


def grid_slots(size: str) -> list[tuple[int, float, float]]:
    """(position index 0..8, cx, cy) for a size; large objects sit in the centre only."""
    if size == "large":
        return [(4, 16.0, 16.0)]
    g = _GRID[size]
    return [(3 * i + j, g[j], g[i]) for i in range(3) for j in range(3)]


@dataclass(frozen=True)
class Slot:
    size: str
    position: int
    mask: int  # row of the mask bank


class MaskBank:
    """Every (shape, size, position) and (glyph, font, size, position) mask of the pretraining grid."""

    def __init__(self):
        masks: list[np.ndarray] = []
        self.shape_slots: dict[str, list[Slot]] = {}
        self.shape_index: dict[tuple[str, str, int], int] = {}
        for shape in C.SHAPE_NAMES:
            slots = []
            for size in ("small", "medium", "large"):
                for pos, cx, cy in grid_slots(size):
                    self.shape_index[(shape, size, pos)] = len(masks)
                    slots.append(Slot(size, pos, len(masks)))
                    masks.append(shape_mask(shape, cx, cy, SIZE_RADIUS[size]))
            self.shape_slots[shape] = slots
        self.n_fonts = len(font_paths())
        self.glyph_slots: dict[tuple[str, int], list[Slot]] = {}
        for glyph in C.GLYPHS:
            for font in range(self.n_fonts):
                slots = []
                for size in ("medium", "large"):
                    for pos, cx, cy in grid_slots(size):
                        slots.append(Slot(size, pos, len(masks)))
                        masks.append(glyph_mask(glyph, font, cx, cy, SIZE_RADIUS[size]))
                self.glyph_slots[(glyph, font)] = slots
        self.masks = np.stack(masks)
        self.patterns = np.stack([pattern_map(p, phase=ph) for p in C.PATTERN_NAMES for ph in range(2)])


@functools.lru_cache(maxsize=1)
def mask_bank() -> MaskBank:
    return MaskBank()


def _jitter_colour(rng: np.random.Generator, name: str) -> np.ndarray:
    rgb = np.asarray(C.COLOURS[name][0], dtype=np.float32)
    return np.clip(rgb + rng.normal(0, 12, 3), 0, 255) / 255.0


# ---------------------------------------------------------------------------------------------
# the stream


@dataclass(frozen=True)
class Mix:
    """Fractions of a batch per source; the rest of the batch is shapes."""

    fashion: float = 0.5
    glyphs: float = 0.15
    two_objects: float = 0.15  # fraction of shape images that show two objects
    tint: float = 0.75  # fraction of Fashion-MNIST images tinted with a named colour
    hard_shapes: float = 0.0  # fraction of the batch in groups that differ only in shape (hard negatives)
    shift: int = 1  # single shapes and hard-shape images move by up to this many pixels off their grid slot
    levels: float = 0.0  # fraction of images whose [0, 1] range is remapped to [low, high] (contrast/brightness)
    levels_low: float = 0.15  # low ~ U(0, levels_low): a flat grey background instead of black
    levels_high: float = 0.65  # high ~ U(levels_high, 1): the brightest pixel
    noise: float = 0.0  # fraction of images with gaussian pixel noise of std ~ U(0, noise_std)
    noise_std: float = 0.03
    backdrop: float = 0.0  # fraction of images composited onto a flat grey backdrop instead of black,
    backdrop_max: float = 0.3  # of level ~ U(0, backdrop_max),
    backdrop_contrast: float = 0.6  # at object contrast ~ U(backdrop_contrast, 1)

    def __post_init__(self):
        check(self.shift >= 0, "shift must be >= 0")
        check(0 <= self.levels <= 1 and 0 <= self.levels_low < self.levels_high <= 1,
              "levels must be in [0, 1] and 0 <= levels_low < levels_high <= 1")
        check(0 <= self.backdrop <= 1 and 0 <= self.backdrop_max <= 1 and 0 <= self.backdrop_contrast <= 1,
              "backdrop, backdrop_max and backdrop_contrast must be in [0, 1]")
        check(0 <= self.noise <= 1 and self.noise_std >= 0, "noise must be in [0, 1] and noise_std >= 0")


class PretrainStream:
    """Captioned pretraining batches, a pure function of (seed, step, batch size)."""

    def __init__(self, seed: int = 0, mix: Mix = Mix(), fashion_mnist_root=None):
        self.seed = int(seed)
        self.mix = mix
        self.bank = mask_bank()
        if mix.fashion > 0:
            self.fm_images, self.fm_labels = load_fashion_mnist("train", fashion_mnist_root)  # never t10k
        else:
            self.fm_images = self.fm_labels = None

    def batch(self, step: int, batch_size: int) -> tuple[np.ndarray, list[str]]:
        """uint8 images (B, 32, 32, 3) and B captions for this step."""
        rng = np.random.default_rng([self.seed, int(step), int(batch_size), 20240917])
        out = np.zeros((batch_size, RES, RES, 4), np.float32)  # premultiplied RGB on black + coverage (alpha)
        caps: list[str] = []
        kinds = rng.random(batch_size)
        n_hard = int(round(self.mix.hard_shapes * batch_size))
        if n_hard:
            caps += self._hard_shapes(rng, out[:n_hard])
        for i in range(n_hard, batch_size):
            if kinds[i] < self.mix.fashion:
                cap = self._fashion(rng, out[i])
            elif kinds[i] < self.mix.fashion + self.mix.glyphs:
                cap = self._glyph(rng, out[i])
            else:
                cap = self._shapes(rng, out[i])
            caps.append(cap)
        if self.mix.levels > 0:
            remap = rng.random(batch_size) < self.mix.levels
            low = rng.uniform(0, self.mix.levels_low, (batch_size, 1, 1, 1)).astype(np.float32)[remap]
            high = rng.uniform(self.mix.levels_high, 1.0, (batch_size, 1, 1, 1)).astype(np.float32)[remap]
            out[remap, ..., :3] = low + (high - low) * np.clip(out[remap, ..., :3], 0, 1)
        if self.mix.backdrop > 0:
            picked = np.flatnonzero(rng.random(batch_size) < self.mix.backdrop)
            level = rng.uniform(0, self.mix.backdrop_max, (len(picked), 1, 1, 1)).astype(np.float32)
            contrast = rng.uniform(self.mix.backdrop_contrast, 1.0, (len(picked), 1, 1, 1)).astype(np.float32)
            rgb, alpha = out[picked, ..., :3], np.clip(out[picked, ..., 3:], 0, 1)
            out[picked, ..., :3] = level * (1 - contrast * alpha) + contrast * rgb
        if self.mix.noise > 0:
            noisy = np.flatnonzero(rng.random(batch_size) < self.mix.noise)
            std = rng.uniform(0, self.mix.noise_std, len(noisy)).astype(np.float32)
            out[noisy, ..., :3] += (rng.standard_normal((len(noisy), RES, RES, 3), dtype=np.float32)
                                    * std[:, None, None, None])
        return (np.clip(out[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8), caps

    # one image each, drawn into `dst` (32, 32, 4): colour premultiplied on black, then coverage

    def _fashion(self, rng, dst) -> str:
        idx = int(rng.integers(len(self.fm_labels)))
        label = int(self.fm_labels[idx])
        g = self.fm_images[idx].astype(np.float32) / 255.0
        if rng.random() < 0.5:
            g = g[:, ::-1]
        dy, dx = (int(v) for v in rng.integers(0, 5, 2))
        g = g * rng.uniform(0.8, 1.0)
        if rng.random() < self.mix.tint:
            colour = C.COLOUR_NAMES[int(rng.integers(len(C.COLOUR_NAMES)))]
            rgb = _jitter_colour(rng, colour)
        else:
            colour, rgb = None, np.ones(3, np.float32)
        dst[dy:dy + 28, dx:dx + 28, :3] = g[:, :, None] * rgb
        dst[dy:dy + 28, dx:dx + 28, 3] = g
        return C.fashion_caption(rng, label, colour)

    def _object(self, rng, dst, slot: Slot, colour: str, pattern: str) -> None:
        m = self.bank.masks[slot.mask]
        if pattern != "solid":
            p = self.bank.patterns[2 * C.PATTERN_NAMES.index(pattern) + int(rng.integers(2))]
            m = m * p
        np.maximum(dst[..., :3], m[:, :, None] * _jitter_colour(rng, colour), out=dst[..., :3])
        np.maximum(dst[..., 3], m, out=dst[..., 3])

    def _shapes(self, rng, dst) -> str:
        n_colours = len(C.COLOUR_NAMES)
        if rng.random() < self.mix.two_objects:
            # two small or medium objects at two different positions
            size = "small" if rng.random() < 0.6 else "medium"
            a, b = (int(v) for v in rng.choice(9, 2, replace=False))
            if size == "medium":  # medium objects overlap unless they are far apart
                a, b = [(3, 5), (1, 7), (0, 8), (2, 6)][int(rng.integers(4))]
            phrases = []
            for pos in (a, b):
                shape = C.SHAPE_NAMES[int(rng.integers(len(C.SHAPE_NAMES)))]
                colour = C.COLOUR_NAMES[int(rng.integers(n_colours))]
                slot = Slot(size, pos, self.bank.shape_index[(shape, size, pos)])
                self._object(rng, dst, slot, colour, "solid")
                phrases.append(C.object_phrase(rng, shape, colour, size, "solid", pos))
            return C.fill_template(rng, " and ".join(phrases))
        shape = C.SHAPE_NAMES[int(rng.integers(len(C.SHAPE_NAMES)))]
        colour = C.COLOUR_NAMES[int(rng.integers(n_colours))]
        slot = self.bank.shape_slots[shape][int(rng.integers(len(self.bank.shape_slots[shape])))]
        pattern = "solid"
        if slot.size != "small" and rng.random() < 0.4:
            pattern = C.PATTERN_NAMES[1 + int(rng.integers(len(C.PATTERN_NAMES) - 1))]
        self._object(rng, dst, slot, colour, pattern)
        self._shift(rng, dst)
        return C.fill_template(rng, C.object_phrase(rng, shape, colour, slot.size, pattern, slot.position))

    def _shift(self, rng, dst) -> None:
        shift = rng.integers(-self.mix.shift, self.mix.shift + 1, 2)
        dst[:] = np.roll(dst, (int(shift[0]), int(shift[1])), axis=(0, 1))

    def _hard_shapes(self, rng, dst) -> list[str]:
        """Groups of images that share colour, size and grid slot and differ only in shape, each
        caption naming its shape: in-batch negatives that colour or position cannot separate."""
        caps = []
        n_colours = len(C.COLOUR_NAMES)
        for start in range(0, len(dst), len(C.SHAPE_NAMES)):
            group = dst[start:start + len(C.SHAPE_NAMES)]
            colour = C.COLOUR_NAMES[int(rng.integers(n_colours))]
            size = "large" if rng.random() < 0.4 else "medium"
            pos = 4 if size == "large" else int(rng.integers(9))
            shapes = rng.permutation(len(C.SHAPE_NAMES))[:len(group)]
            for img, k in zip(group, shapes):
                shape = C.SHAPE_NAMES[int(k)]
                self._object(rng, img, Slot(size, pos, self.bank.shape_index[(shape, size, pos)]), colour, "solid")
                self._shift(rng, img)
                caps.append(C.fill_template(rng, C.object_phrase(rng, shape, colour, size, "solid", pos,
                                                                 name_shape=True)))
        return caps

    def _glyph(self, rng, dst) -> str:
        glyph = C.GLYPHS[int(rng.integers(len(C.GLYPHS)))]
        font = int(rng.integers(self.bank.n_fonts))
        slots = self.bank.glyph_slots[(glyph, font)]
        slot = slots[int(rng.integers(len(slots)))]
        colour = C.COLOUR_NAMES[int(rng.integers(len(C.COLOUR_NAMES)))]
        self._object(rng, dst, slot, colour, "solid")
        return C.fill_template(rng, C.glyph_phrase(rng, glyph, colour, slot.size, font, slot.position))
