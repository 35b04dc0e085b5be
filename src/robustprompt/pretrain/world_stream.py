"""Captioned pretraining batches from the emoji world's pretraining styles (never a downstream or
held-out style: `robustprompt.world.sources`).

Captions come from templates, the concept's name, synonyms, misspellings (a dropped, swapped or
doubled letter, so that weak text noise has a meaning), and what the scene shows: backdrop colour,
size, style edit (black and white, line drawing, silhouette, blurry, negative) and a second object.
`WorldStream(seed).batch(step, n)` is a pure function of (seed, step, n), as `PretrainStream` is.
"""

from __future__ import annotations

import functools

import numpy as np

from ..world.concepts import load_concepts
from ..world.render import SceneStyle, compose
from ..world.sources import load_pictures, styles

CAPTION_TEMPLATES = [
    "{}", "{}.", "a picture of {}.", "an image of {}.", "a drawing of {}.", "an icon of {}.", "an emoji of {}.",
    "{} emoji.", "a cartoon of {}.", "a sticker of {}.", "clip art of {}.", "an illustration of {}.",
    "a flat icon of {}.", "this is {}.", "here is {}.", "there is {} in the picture.", "this picture shows {}.",
    "the image shows {}.", "an example of {}.", "a tiny picture of {}.", "a simple picture of {}.",
    "a digital image of {}.", "art of {}.", "you can see {} here.", "a small image of {}.", "a symbol of {}.",
]
EDIT_PHRASES = {
    "grey": ["a black and white picture of {}.", "a grayscale image of {}.", "{} in black and white."],
    "outline": ["a line drawing of {}.", "an outline of {}.", "a sketch of {}."],
    "silhouette": ["a silhouette of {}.", "a dark silhouette of {}."],
    "blur": ["a blurry picture of {}.", "a blurred image of {}."],
    "invert": ["a negative image of {}.", "an inverted picture of {}."],
}

PRETRAIN_SCENE = SceneStyle(
    scale=(0.45, 1.0), rotate=20.0, noise=0.3, distractor=0.1,
    edits=(("grey", 0.12), ("outline", 0.08), ("silhouette", 0.05), ("posterise", 0.05), ("blur", 0.1),
           ("hue", 0.05), ("invert", 0.02)),
)


def misspell(word: str, rng) -> str:
    """One typo: drop, swap or double a letter of the longest word (names of 3+ letters)."""
    parts = word.split(" ")
    i = max(range(len(parts)), key=lambda k: len(parts[k]))
    w = parts[i]
    if len(w) < 3:
        return word
    j = int(rng.integers(1, len(w) - 1))
    kind = int(rng.integers(3))
    if kind == 0 or (kind == 1 and w[j - 1] == w[j]):  # swapping equal letters would change nothing
        w = w[:j] + w[j + 1:]
    elif kind == 1:
        w = w[:j - 1] + w[j] + w[j - 1] + w[j + 1:]
    else:
        w = w[:j] + w[j] + w[j:]
    parts[i] = w
    return " ".join(parts)


def _article(noun: str, rng) -> str:
    if rng.random() < 0.2:
        return "the " + noun
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


class WorldStream:
    """Scenes of every concept drawn in the pretraining styles, with captions."""

    def __init__(self, seed: int = 0, root=None, scene: SceneStyle = PRETRAIN_SCENE):
        self.seed = int(seed)
        self.scene = scene
        self.concepts = load_concepts(root)
        pics, owners = [], []  # rows of one big RGBA array; owner concept per row
        index = {code: k for k, c in enumerate(self.concepts) for code in c.codes}
        for style in styles("pretrain"):
            codes, rgba = load_pictures(style, root)
            rows = [i for i, code in enumerate(codes) if code in index]
            pics.append(rgba[rows])
            owners += [index[codes[i]] for i in rows]
        self.rgba = np.concatenate(pics)
        owners = np.asarray(owners)
        self.by_concept = [np.flatnonzero(owners == k) for k in range(len(self.concepts))]
        self.usable = np.array([k for k, rows in enumerate(self.by_concept) if len(rows)])

    def name(self, k: int, rng) -> str:
        c = self.concepts[k]
        u = rng.random()
        if u < 0.25 and c.synonyms:
            return c.synonyms[int(rng.integers(len(c.synonyms)))]
        if u < 0.35:
            return misspell(c.name, rng)
        return c.name

    def batch(self, step: int, batch_size: int) -> tuple[np.ndarray, list[str]]:
        rng = np.random.default_rng([self.seed, int(step), int(batch_size), 20261130])
        ks = self.usable[rng.integers(len(self.usable), size=batch_size)]
        rows = np.array([self.by_concept[k][int(rng.integers(len(self.by_concept[k])))] for k in ks])
        ks2 = self.usable[rng.integers(len(self.usable), size=batch_size)]
        rows2 = np.array([self.by_concept[k][int(rng.integers(len(self.by_concept[k])))] for k in ks2])
        images, attrs = compose(self.rgba[rows], rng, self.scene, distractors=self.rgba[rows2])
        caps = []
        for k, k2, at in zip(ks, ks2, attrs):
            noun = self.name(int(k), rng)
            if at["small"] and rng.random() < 0.4:
                noun = "small " + noun
            phrase = _article(noun, rng)
            if at["distractor"] and rng.random() < 0.7:
                phrase += " and " + _article(self.concepts[int(k2)].name, rng)
            if at["backdrop"] and rng.random() < 0.35:
                phrase += f" on a {at['backdrop']} background"
            edit = at["edit"]
            if edit in EDIT_PHRASES and rng.random() < 0.7:
                options = EDIT_PHRASES[edit]
            else:
                options = CAPTION_TEMPLATES
            caps.append(options[int(rng.integers(len(options)))].format(phrase))
        return images, caps


@functools.lru_cache(maxsize=2)
def world_stream(seed: int, root: str | None = None) -> WorldStream:
    return WorldStream(seed, root)
