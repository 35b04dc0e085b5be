"""One vocabulary of concepts, joined across the picture sources by code point.

A concept is a clean class name (the emoji's CLDR name from OpenMoji's `openmoji.json`), its
synonyms (emoji.json's name and short names, OpenMoji's tags), a one-sentence description made by a
template from those, its group and subgroup, and the code points drawn for it. Code points that
show the same thing are merged into one concept before anything else sees them:

- gender and person variants: "man technologist", "woman technologist" -> "technologist";
  "man rowing boat", "woman rowing boat" -> "person rowing boat";
- animal faces: "cat face" joins "cat", "tiger face" joins "tiger".

Names that still contain one another word-wise ("cat" / "black cat", "bear" / "polar bear") are
*near duplicates*: `near_duplicates()` lists them and dataset builders never put two in one dataset.
Left out: flags, skin-tone and hair components, keycaps, letters, digits and punctuation, and
concepts whose name needs a qualifier after a colon ("man: beard").
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from .sources import norm_code, vocabulary_path

EXCLUDED_GROUPS = {"flags", "component", "extras-openmoji", "extras-unicode"}
EXCLUDED_SUBGROUPS = {"alphanum", "keycap", "punctuation", "currency", "math", "gender", "family", "skin-tone",
                      "hair-style", "country-flag", "subdivision-flag", "flag"}
_NOUN_PREFIXES = {"animal", "food", "plant", "place", "transport"}
_PEOPLE = ("men ", "women ", "man ", "woman ", "person ", "people ")


@dataclass(frozen=True)
class Concept:
    name: str
    synonyms: tuple[str, ...]  # emoji.json's name and short names, merged variants' names
    tags: tuple[str, ...]  # OpenMoji's tags (looser: "animal", "farm" for goat)
    description: str
    group: str  # OpenMoji's group, e.g. "animals-nature"
    subgroup: str  # e.g. "animal-mammal"
    codes: tuple[str, ...]  # normalised code points of every picture of this concept


def _clean(text: str) -> str:
    text = text.lower().replace("_", " ").replace("’", "'").strip()
    return re.sub(r"\s+", " ", text)


def _base_key(name: str) -> str:
    for p in _PEOPLE:
        if name.startswith(p):
            return name[len(p):]
    return name


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def describe(name: str, subgroup: str, group: str, synonyms) -> str:
    """The one-sentence description of a concept (a template over the sources' own words)."""
    head, _, rest = subgroup.partition("-")
    if head in _NOUN_PREFIXES and rest:  # "animal-mammal" -> "mammal", "food-fruit" -> "fruit"
        kind = rest.replace("-", " ")
    else:
        kind = subgroup.replace("-", " ")
    area = group.replace("-", " and ")
    syn = [s for s in synonyms if s != name][:3]
    also = f", also called {', '.join(syn)}" if syn else ""
    return f"{_a(name)}, a kind of {kind} from {area}{also}."


@functools.lru_cache(maxsize=2)
def _load(root: str | None) -> tuple[Concept, ...]:
    emoji = json.loads(vocabulary_path("emoji.json", root).read_text())
    openmoji = json.loads(vocabulary_path("openmoji.json", root).read_text())
    by_code = {norm_code(e["unified"]): e for e in emoji}
    rows = []  # (name, group, subgroup, code, synonyms)
    for e in openmoji:
        if e.get("skintone") or e["group"] in EXCLUDED_GROUPS or e["subgroups"] in EXCLUDED_SUBGROUPS:
            continue
        code = norm_code(e["hexcode"])
        ds = by_code.get(code)
        if ds is None:  # OpenMoji's own extras have no code point in the other sources
            continue
        name = _clean(e["annotation"])
        if ":" in name or not re.fullmatch(r"[a-z][a-z' .&-]*[a-z.]", name):
            continue
        syns = [_clean(s) for s in [ds.get("name") or ""] + list(ds.get("short_names") or [])]
        syns = [s for s in syns if s and not any(ch.isdigit() for ch in s) and s != name]
        tags = [t for t in (_clean(t) for t in (e.get("tags") or "").split(",")) if t and t != name]
        rows.append((name, e["group"], e["subgroups"], code, syns, tags))
    names = {r[0] for r in rows}
    merged: dict[str, dict] = {}
    for name, group, sub, code, syns, tags in rows:
        key = name
        base = _base_key(name)
        if base != name:  # "man X" / "woman X" -> "X", "person X" or "people X", whichever exists, else "person X"
            key = next((k for k in (base, "person " + base, "people " + base) if k in names), "person " + base)
        if key.endswith(" face") and key[:-5] in names and group == "animals-nature":
            key = key[:-5]
        c = merged.setdefault(key, {"group": group, "sub": sub, "codes": [], "syns": [], "tags": []})
        if key == name:
            c["group"], c["sub"] = group, sub
        c["codes"].append(code)
        c["syns"] += [name] + syns
        c["tags"] += tags
    out = []
    for key in sorted(merged):
        c = merged[key]
        syns = tuple(dict.fromkeys(s for s in c["syns"] if s != key))
        tags = tuple(dict.fromkeys(t for t in c["tags"] if t != key and t not in syns))
        out.append(Concept(key, syns, tags, describe(key, c["sub"], c["group"], syns + tags), c["group"], c["sub"],
                           tuple(dict.fromkeys(c["codes"]))))
    return tuple(out)


def load_concepts(root=None) -> list[Concept]:
    """Every concept of the emoji world (needs `robustprompt world fetch`)."""
    from .sources import require

    require(root)
    return list(_load(str(root) if root else None))


def near_duplicates(a: str, b: str) -> bool:
    """True when one name is the other's trailing words ("cat" / "black cat") or they share a base."""
    if a == b:
        return True
    wa, wb = a.split(), b.split()
    short, long_ = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    return long_[-len(short):] == short
