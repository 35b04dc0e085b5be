"""The little world's vocabulary: caption templates, synonyms and attributes.

Captions are built from many templates, articles, synonyms and optional attributes (colour, size,
pattern, position, category), so the text tower sees each concept in many phrasings. The testbed
prompt templates (`robustprompt.data.testbeds`) are deliberately *not* among these templates.
"""

from __future__ import annotations

import numpy as np

# Caption templates; "{}" receives a noun phrase that already carries its article ("a red star").
TEMPLATES = [
    "{}", "{}.", "a photo of {}.", "a picture of {}.", "an image of {}.", "a photograph of {}.",
    "a close-up photo of {}.", "a cropped photo of {}.", "a small photo of {}.", "a low resolution photo of {}.",
    "a bright photo of {}.", "a clean photo of {}.", "a good photo of {}.", "a drawing of {}.",
    "a rendering of {}.", "a snapshot of {}.", "a thumbnail of {}.", "an icon of {}.", "this is {}.",
    "here is {}.", "there is {} in the picture.", "there is {} in this image.", "this picture shows {}.",
    "the image shows {}.", "an example of {}.", "a tiny picture of {}.", "{} on a black background.",
    "{} isolated on black.", "a photo showing {}.", "a picture containing {}.", "art of {}.", "itap of {}.",
    "a scan of {}.", "a sample image of {}.", "a pixelated picture of {}.", "my photo of {}.", "look, {}!",
    "a simple picture of {}.", "a digital image of {}.", "a sharp photo of {}.", "a quick sketch of {}.",
    "a high contrast image of {}.", "you can see {} here.", "what a nice picture of {}.",
]

# name -> (RGB 0..255, words used in captions)
COLOURS: dict[str, tuple[tuple[int, int, int], list[str]]] = {
    "red": ((220, 30, 30), ["red"]),
    "orange": ((250, 140, 20), ["orange"]),
    "yellow": ((240, 220, 40), ["yellow"]),
    "green": ((40, 180, 50), ["green"]),
    "cyan": ((40, 210, 220), ["cyan", "turquoise"]),
    "blue": ((40, 70, 235), ["blue"]),
    "purple": ((145, 50, 195), ["purple", "violet"]),
    "pink": ((250, 130, 190), ["pink"]),
    "brown": ((135, 80, 35), ["brown"]),
    "white": ((245, 245, 245), ["white"]),
    "gray": ((130, 130, 130), ["gray", "grey"]),
}
COLOUR_NAMES = list(COLOURS)

SHAPES: dict[str, list[str]] = {
    "circle": ["circle", "disk", "round shape"],
    "square": ["square"],
    "triangle": ["triangle"],
    "star": ["star", "five-pointed star"],
    "heart": ["heart", "heart shape"],
    "cross": ["cross", "plus sign"],
    "diamond": ["diamond", "rhombus"],
    "hexagon": ["hexagon"],
    "crescent": ["crescent", "crescent moon", "moon"],
    "arrow": ["arrow", "arrow pointing right"],
    "ring": ["ring", "hollow circle", "donut"],
    "pentagon": ["pentagon"],
}
SHAPE_NAMES = list(SHAPES)
GENERIC_NOUNS = ["shape", "object", "figure", "symbol", "thing"]

SIZES = {"small": ["small", "tiny", "little"], "medium": ["medium-sized", "mid-sized"], "large": ["large", "big"]}

PATTERNS = {
    "solid": ["solid", "plain", "filled"],
    "striped": ["striped", "stripy"],
    "dotted": ["dotted", "spotted", "polka-dot"],
    "checkered": ["checkered", "checked"],
}
PATTERN_NAMES = list(PATTERNS)

# 3 x 3 grid of positions, row-major.
POSITIONS = [
    ["in the top left corner", "at the top left"],
    ["at the top", "near the top"],
    ["in the top right corner", "at the top right"],
    ["on the left", "at the left side"],
    ["in the center", "in the middle"],
    ["on the right", "at the right side"],
    ["in the bottom left corner", "at the bottom left"],
    ["at the bottom", "near the bottom"],
    ["in the bottom right corner", "at the bottom right"],
]

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
GLYPHS = [chr(ord("A") + i) for i in range(26)] + [str(d) for d in range(10)]
FONT_WORDS = [["in a bold font", "in sans-serif"], ["in a serif font", "in a serif typeface"],
              ["in a monospace font", "in a typewriter font"]]

# Fashion-MNIST label -> caption nouns (the first is the testbed class name).
FASHION_NOUNS = [
    ["t-shirt", "tee shirt", "tee", "top", "t-shirt top"],
    ["trousers", "pair of trousers", "pants", "pair of pants", "trouser"],
    ["pullover", "sweater", "jumper", "pullover sweater"],
    ["dress", "frock", "gown"],
    ["coat", "jacket", "overcoat"],
    ["sandal", "summer sandal", "strappy sandal"],
    ["shirt", "button-up shirt", "button-down shirt", "blouse"],
    ["sneaker", "trainer", "running shoe", "sports shoe"],
    ["bag", "handbag", "purse", "tote bag"],
    ["ankle boot", "boot", "short boot"],
]
_CLOTHING = [", a type of clothing", ", a piece of clothing", ", something to wear", ", a garment"]
_FOOTWEAR = [", a type of footwear", ", a kind of shoe", ", a piece of footwear"]
_ACCESSORY = [", a fashion accessory", ", an accessory", ", something to carry things in"]
FASHION_CATEGORY = [_CLOTHING, _CLOTHING, _CLOTHING, _CLOTHING, _CLOTHING,
                    _FOOTWEAR, _CLOTHING, _FOOTWEAR, _ACCESSORY, _FOOTWEAR]


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def with_article(rng: np.random.Generator, phrase: str) -> str:
    """'a red star', 'the red star', 'one red star' or 'an orange ring' (article chosen by rng)."""
    u = rng.random()
    if u < 0.72:
        return ("an " if phrase[0] in "aeiou" else "a ") + phrase
    if u < 0.92:
        return "the " + phrase
    return "one " + phrase


def fill_template(rng: np.random.Generator, noun_phrase: str) -> str:
    return _pick(rng, TEMPLATES).format(noun_phrase)


def fashion_caption(rng: np.random.Generator, label: int, colour: str | None) -> str:
    """A caption for a Fashion-MNIST training image of `label`, tinted `colour` (None: shades of grey)."""
    words = []
    if colour is not None and rng.random() < 0.7:
        words.append(_pick(rng, COLOURS[colour][1]))
    words.append(_pick(rng, FASHION_NOUNS[label]))
    phrase = with_article(rng, " ".join(words))
    if rng.random() < 0.3:
        phrase += _pick(rng, FASHION_CATEGORY[label])
    return fill_template(rng, phrase)


def object_phrase(rng: np.random.Generator, shape: str, colour: str, size: str, pattern: str,
                  position: int | None, name_shape: bool = False) -> str:
    """Noun phrase for one shape; each attribute is named or left out at random (the shape always
    when `name_shape`)."""
    words = []
    if rng.random() < 0.5:
        words.append(_pick(rng, SIZES[size]))
    colour_named = rng.random() < 0.8
    if colour_named:
        words.append(_pick(rng, COLOURS[colour][1]))
    if pattern != "solid" and rng.random() < 0.75 or pattern == "solid" and rng.random() < 0.1:
        words.append(_pick(rng, PATTERNS[pattern]))
    if colour_named and not name_shape and rng.random() < 0.1:
        words.append(_pick(rng, GENERIC_NOUNS))
    else:
        words.append(_pick(rng, SHAPES[shape]))
    phrase = with_article(rng, " ".join(words))
    if position is not None and rng.random() < 0.5:
        phrase += " " + _pick(rng, POSITIONS[position])
    return phrase


def glyph_phrase(rng: np.random.Generator, glyph: str, colour: str, size: str, font: int, position: int | None) -> str:
    words = []
    if rng.random() < 0.4:
        words.append(_pick(rng, SIZES[size]))
    if rng.random() < 0.7:
        words.append(_pick(rng, COLOURS[colour][1]))
    if glyph.isdigit():
        noun = _pick(rng, [f"digit {glyph}", f"number {glyph}", f"number {DIGIT_WORDS[int(glyph)]}",
                           f"numeral {glyph}", f"{DIGIT_WORDS[int(glyph)]}"])
    else:
        noun = _pick(rng, [f"letter {glyph}", f"capital letter {glyph}", f"capital {glyph}", f"letter {glyph.lower()}",
                           f"uppercase {glyph}"])
    words.append(noun)
    phrase = with_article(rng, " ".join(words))
    if rng.random() < 0.2:
        phrase += " " + _pick(rng, FONT_WORDS[font])
    if position is not None and rng.random() < 0.4:
        phrase += " " + _pick(rng, POSITIONS[position])
    return phrase
