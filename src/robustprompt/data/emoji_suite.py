"""The emoji testbed suite: downstream datasets shaped like the field's 11, a many-class source
dataset (the ImageNet role) with four domain-shift variants, and a held-out-style probe.

Pictures come from the downstream styles only (`robustprompt.world.sources`: the Fluent family and
OpenMoji), never from a pretraining style. Each concept's pictures have fixed roles:

| role                 | styles                        | used for                                   |
|----------------------|-------------------------------|--------------------------------------------|
| train (shots, val)   | fluent-flat, openmoji-color   | train and val splits                       |
| test                 | fluent-3d, fluent-color       | test splits                                |
| shift                | openmoji-black, fluent-mono   | the -outline and -mono variants' tests     |

so a test image is never a render of a picture used in pretraining or as a training shot
(`picture_roles` and tests/test_world.py check it). Renders of one picture differ in backdrop,
size, position, rotation and noise; they are not independent samples: `source_pictures(ds)` counts
the distinct pictures per split (DATASETS.md lists them).

Classes are the world's concepts, shuffled by a fixed seed before labelling so that the base half
(the first ceil(n/2) labels) and the novel half are random halves; no dataset holds two
near-duplicate concepts ("cat" and "black cat").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..world.concepts import Concept, load_concepts, near_duplicates
from ..world.render import SceneStyle, compose
from ..world.sources import load_pictures
from .base import DatasetSplits, Datum
from .registry import register_dataset

SEED = 2026
TRAIN_STYLES = ("fluent-flat", "openmoji-color")
TEST_STYLES = ("fluent-3d", "fluent-color")
SHIFT_STYLES = {"outline": "openmoji-black", "mono": "fluent-mono"}

DOWNSTREAM_SCENE = SceneStyle(scale=(0.55, 0.95), rotate=15.0, noise=0.3, noise_std=0.04)


@dataclass(frozen=True)
class Spec:
    name: str
    role: str  # the standard dataset(s) it stands in for
    groups: tuple[str, ...] = ()  # OpenMoji groups whose concepts qualify (empty: any)
    subgroups: tuple[str, ...] = ()  # or these subgroups
    max_classes: int = 100
    per_class: tuple[int, int, int] = (32, 8, 10)  # renders per class: train, val, test
    templates: tuple[str, ...] = ("an emoji picture of a {}.",)


_ANIMALS = ("animal-mammal", "animal-bird", "animal-marine", "animal-bug", "animal-reptile", "animal-amphibian")
_FOOD = ("food-fruit", "food-vegetable", "food-prepared", "food-asian", "food-sweet", "drink", "dishware")

SUITE: tuple[Spec, ...] = (
    Spec("emoji-objects", "Caltech101 (generic objects)", groups=("objects", "activities", "travel-places", "food-drink",
                                                                  "animals-nature"),
         templates=("an emoji picture of a {}.", "a clip-art picture of the {}.", "a rendered icon of a {}.")),
    Spec("emoji-animals", "OxfordPets (fine-grained animals)", subgroups=_ANIMALS,
         templates=("an emoji picture of a {}, a type of animal.", "a rendered icon of a {}, an animal.")),
    Spec("emoji-food", "Food101 (food and drink)", subgroups=_FOOD,
         templates=("an emoji picture of {}, a type of food.", "a rendered icon of {}, something to eat or drink.")),
    Spec("emoji-plants", "Flowers102 (plants and flowers)", subgroups=("plant-flower", "plant-other"),
         templates=("an emoji picture of a {}, a type of plant.", "a rendered icon of a {}, a plant.")),
    Spec("emoji-vehicles", "StanfordCars / FGVCAircraft (vehicles)",
         subgroups=("transport-ground", "transport-air", "transport-water"),
         templates=("an emoji picture of a {}, a type of vehicle.", "a rendered icon of a {}, a vehicle.")),
    Spec("emoji-actions", "UCF101 (people doing things)", subgroups=("person-activity", "person-sport", "person-resting"),
         templates=("an emoji picture of a {}, an activity.", "a rendered icon of someone: {}.")),
    Spec("emoji-scenes", "SUN397 (places and scenes)",
         subgroups=("place-building", "place-geographic", "place-other", "place-religious", "place-map",
                    "sky-weather", "hotel"),
         templates=("an emoji picture of a {}, a place or scene.", "a rendered icon of the {}.")),
    Spec("emoji-faces", "expression recognition (faces)", groups=("smileys-emotion",),
         templates=("an emoji picture of a {}, a face.", "a rendered icon of a {}.")),
    Spec("emoji-signs", "GTSRB / EuroSAT-like (signs and symbols)", groups=("symbols",),
         templates=("an emoji picture of a {} sign.", "a rendered icon of the {} symbol.")),
    Spec("emoji-people", "people, roles and gestures", groups=("people-body",),
         subgroups=("person-role", "person-gesture", "person-fantasy", "person", "person-symbol", "body-parts",
                    "hands", "hand-fingers-open", "hand-fingers-partial", "hand-single-finger",
                    "hand-fingers-closed", "hand-prop", "person-resting"),
         templates=("an emoji picture of a {}, a person or gesture.", "a rendered icon of a {}.")),
    Spec("emoji-clothing", "fine-grained things: clothing and objects at home",
         subgroups=("clothing", "household", "tool", "office", "writing", "book-paper"),
         templates=("an emoji picture of a {}, a thing you use.", "a rendered icon of a {}.")),
)

WORLD = Spec("emoji-world", "ImageNet (the many-class source)", max_classes=100_000, per_class=(16, 2, 5),
             templates=("an emoji picture of a {}.", "a clip-art picture of the {}.", "a rendered icon of a {}."))
SHIFTS = {  # the ImageNet-V2/Sketch/A/R roles
    "emoji-world-outline": "black line drawings (OpenMoji black): the Sketch role",
    "emoji-world-mono": "high-contrast monochrome pictures (Fluent high contrast)",
    "emoji-world-grey": "the test pictures in greyscale",
    "emoji-world-clutter": "the test pictures with a second object and busy backgrounds: the ImageNet-A role",
}
PROBE = "emoji-fxemoji"  # everyday animals, fruit and objects in the held-out style


# ---------------------------------------------------------------------------------------------- pictures


@functools.lru_cache(maxsize=2)
def _pictures(root: str | None) -> dict[str, tuple[dict[str, int], np.ndarray]]:
    """style -> (code -> row, RGBA) for every downstream and held-out style."""
    out = {}
    for style in TRAIN_STYLES + TEST_STYLES + tuple(SHIFT_STYLES.values()) + ("fxemoji",):
        codes, rgba = load_pictures(style, root)
        out[style] = ({c: i for i, c in enumerate(codes)}, rgba)
    return out


def picture_roles(concept: Concept, pics) -> dict[str, list[tuple[str, str]]]:
    """(style, code) of a concept's pictures per role: train, test, and one list per shift."""
    roles: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for role, styles_ in (("train", TRAIN_STYLES), ("test", TEST_STYLES)):
        for style in styles_:
            index = pics[style][0]
            roles[role] += [(style, code) for code in concept.codes if code in index]
    for shift, style in SHIFT_STYLES.items():
        roles[shift] = [(style, code) for code in concept.codes if code in pics[style][0]]
    return roles


def _eligible(root) -> list[tuple[Concept, dict]]:
    pics = _pictures(root)
    out = []
    for c in load_concepts(root):
        roles = picture_roles(c, pics)
        if roles["train"] and roles["test"]:
            out.append((c, roles))
    return out


def _pick_classes(candidates: list[tuple[Concept, dict]], limit: int, seed) -> list[tuple[Concept, dict]]:
    """Shuffle (seeded), drop near duplicates of what is already kept, keep at most `limit`."""
    order = np.random.default_rng(seed).permutation(len(candidates))
    kept: list[tuple[Concept, dict]] = []
    for i in order:
        c = candidates[int(i)]
        if not any(near_duplicates(c[0].name, k[0].name) for k in kept):
            kept.append(c)
        if len(kept) == limit:
            break
    return kept


def _render(pics, chosen: list[tuple[str, str]], n: int, rng, scene: SceneStyle, distractors=None) -> np.ndarray:
    """n scenes cycling over the chosen (style, code) pictures."""
    rows = [chosen[i % len(chosen)] for i in range(n)]
    rgba = np.stack([pics[s][1][pics[s][0][c]] for s, c in rows])
    images, _ = compose(rgba, rng, scene, distractors=distractors)
    return images


def _assemble(name: str, classes: list[tuple[Concept, dict]], per_class, templates, root, seed,
              test_role: str = "test", test_scene: SceneStyle = DOWNSTREAM_SCENE, clutter: bool = False) -> DatasetSplits:
    pics = _pictures(root)
    rng = np.random.default_rng(seed)
    names = [c.name for c, _ in classes]
    blocks, items = [], {"train": [], "val": [], "test": []}
    row = 0
    for split, n in zip(("train", "val", "test"), per_class):
        for label, (c, roles) in enumerate(classes if n else []):
            role = "train" if split in ("train", "val") else test_role
            scene = DOWNSTREAM_SCENE if split != "test" else test_scene
            distractors = None
            if clutter and split == "test":  # a random class's test picture (its own class too) as the second object
                others = [classes[int(k)][1]["test"][0] for k in rng.integers(len(classes), size=n)]
                distractors = np.stack([pics[s][1][pics[s][0][code]] for s, code in others])
            blocks.append(_render(pics, roles[role], n, rng, scene, distractors))
            items[split] += [Datum(path="", label=label, classname=c.name, key=row + i) for i in range(n)]
            row += n
    return DatasetSplits(name=name, classnames=names, train=items["train"], val=items["val"], test=items["test"],
                         templates=list(templates), images=np.concatenate(blocks),
                         descriptions={c.name: describe_concept(c) for c, _ in classes})


def describe_concept(c: Concept) -> list[str]:
    """A concept's descriptions (for description-built text targets): its sentence, and one from its tags."""
    out = [c.description]
    words = [w for w in (*c.synonyms, *c.tags) if w != c.name][:6]
    if words:
        out.append(f"a picture of a {c.name}, which goes with {', '.join(words)}.")
    return out


def _spec_candidates(spec: Spec, root) -> list[tuple[Concept, dict]]:
    out = []
    for c, roles in _eligible(root):
        if (spec.groups and c.group in spec.groups) or (spec.subgroups and c.subgroup in spec.subgroups) or \
                (not spec.groups and not spec.subgroups):
            out.append((c, roles))
    return out


@functools.lru_cache(maxsize=4)
def build_suite_dataset(name: str, root: str | None = None) -> DatasetSplits:
    """One dataset of the suite by name (cached per process; treat the arrays as read-only)."""
    k = [s.name for s in SUITE].index(name)
    spec = SUITE[k]
    classes = _pick_classes(_spec_candidates(spec, root), spec.max_classes, [SEED, k])
    return _assemble(name, classes, spec.per_class, spec.templates, root, [SEED, k, 1])


@functools.lru_cache(maxsize=1)
def _world_classes(root: str | None) -> list[tuple[Concept, dict]]:
    return _pick_classes(_eligible(root), WORLD.max_classes, [SEED, 100])


@functools.lru_cache(maxsize=2)
def build_world(variant: str = "", root: str | None = None) -> DatasetSplits:
    """emoji-world, or one of its shift variants (same classes; a test split only, as ImageNet-Sketch has)."""
    classes = _world_classes(root)
    name = "emoji-world" + (f"-{variant}" if variant else "")
    test_only = (0, 0, WORLD.per_class[2])
    if variant in SHIFT_STYLES:  # the test pictures are the shift style's; classes it lacks are kept, drawn as usual
        kept = [(c, r) for c, r in classes if r[variant]]
        return _assemble(name, kept, test_only, WORLD.templates, root, [SEED, 100, 2], test_role=variant)
    if variant == "grey":
        scene = SceneStyle(scale=DOWNSTREAM_SCENE.scale, rotate=15.0, noise=0.3, noise_std=0.04, edits=(("grey", 1.0),))
        return _assemble(name, classes, test_only, WORLD.templates, root, [SEED, 100, 3], test_scene=scene)
    if variant == "clutter":
        scene = SceneStyle(scale=(0.5, 0.8), rotate=25.0, flat=0.0, gradient=0.0, noise=0.6, noise_std=0.06,
                           distractor=1.0)
        return _assemble(name, classes, test_only, WORLD.templates, root, [SEED, 100, 4], test_scene=scene,
                         clutter=True)
    if variant:
        raise ValueError(f"unknown emoji-world variant {variant!r}")
    return _assemble(name, classes, WORLD.per_class, WORLD.templates, root, [SEED, 100, 1])


PROBE_SUBGROUPS = _ANIMALS + ("food-fruit", "food-vegetable", "household", "tool", "clothing", "musical-instrument",
                              "transport-ground", "sport", "plant-flower", "office")


@functools.lru_cache(maxsize=1)
def build_probe(root: str | None = None, n_classes: int = 88) -> DatasetSplits:
    """Up to 88 everyday concepts with one- or two-word names, drawn in the held-out style (test only)."""
    pics = _pictures(root)
    index = pics["fxemoji"][0]
    candidates = []
    for c in load_concepts(root):
        codes = [code for code in c.codes if code in index]
        if codes and c.subgroup in PROBE_SUBGROUPS and len(c.name.split()) <= 2:
            candidates.append((c, {"test": [("fxemoji", code) for code in codes], "train": []}))
    classes = _pick_classes(candidates, n_classes, [SEED, 200])
    return _assemble(PROBE, classes, (0, 0, 10), ("an emoji picture of a {}.",), root, [SEED, 200, 1])


def source_pictures(ds: DatasetSplits, root=None) -> dict[str, int]:
    """Distinct source pictures behind the train and test splits (renders of one picture count once)."""
    pics = _pictures(str(root) if root else None)
    by_name = {c.name: c for c in load_concepts(root)}
    test_role = {"emoji-world-outline": "outline", "emoji-world-mono": "mono"}.get(ds.name, "test")
    out = {}
    for split, role in (("train", "train"), ("test", test_role)):
        n = 0
        for name in {d.classname for d in getattr(ds, split)}:
            if ds.name == PROBE:
                n += sum(code in pics["fxemoji"][0] for code in by_name[name].codes)
            else:
                n += len(picture_roles(by_name[name], pics)[role])
        out[split] = n
    return out


# ---------------------------------------------------------------------------------------------- registry


def _register_all() -> None:
    def suite_builder(name):
        return lambda root=None: build_suite_dataset(name, str(root) if root else None)

    for spec in SUITE:
        register_dataset(spec.name, needs_root=False,
                         description=f"emoji suite, {spec.role}; downstream styles, offline (robustprompt world fetch)"
                         )(suite_builder(spec.name))
    register_dataset("emoji-world", needs_root=False,
                     description="emoji suite, the many-class source (ImageNet role); offline (robustprompt world fetch)"
                     )(lambda root=None: build_world("", str(root) if root else None))
    for name, what in SHIFTS.items():
        variant = name[len("emoji-world-"):]
        register_dataset(name, needs_root=False, description=f"emoji-world shift: {what}"
                         )(functools.partial(lambda v, root=None: build_world(v, str(root) if root else None), variant))
    register_dataset(PROBE, needs_root=False, eval_only=True,
                     description="88 everyday concepts in the held-out Firefox OS style (generality probe, test only)"
                     )(lambda root=None, eval_only=True: build_probe(str(root) if root else None))


_register_all()
