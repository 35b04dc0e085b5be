"""The emoji world's picture sources: npm packages, pinned by version and sha256, never committed.

`robustprompt world fetch` (run by `scripts/setup`) packs each package with `npm pack`, checks the
tarball's sha256, and renders every picture once into `<world dir>/pictures/<style>.npz` (RGBA, 64 px,
keyed by normalised code point). Everything else reads those files; a missing one is a one-line
error naming the command that makes it.

Each source is one picture style. `family` groups copies of one design (the Fluent family: 3D,
colour, flat, high contrast; OpenMoji's colour and black sets): a family is wholly pretraining,
wholly downstream, or wholly held out, never split (see DATASETS.md, "The emoji world").
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, atomic_write_bytes, atomic_write_text
from ..errors import DataError

WORLD_ENV = "ROBUSTPROMPT_WORLD"
PICTURE_SIZE = 64  # every picture is stored as RGBA at this size
FETCH_COMMAND = "robustprompt world fetch"

ROLES = ("pretrain", "downstream", "holdout")


@dataclass(frozen=True)
class Source:
    style: str  # the picture style's name (the key used everywhere else)
    package: str  # npm package
    version: str
    sha256: str  # of the tarball `npm pack` writes
    licence: str  # of the pictures (SPDX), checked in the package's own files
    family: str  # one design; copies of it in other packages share the family
    role: str  # pretrain | downstream | holdout
    layout: str  # how pictures sit in the tarball: datasource | fluent3d | openmoji-color | openmoji-black | iconify

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def tarball(self) -> str:
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


SOURCES: tuple[Source, ...] = (
    # pretraining styles: flat emoji designs of four independent families
    Source("noto", "emoji-datasource-google", "16.0.0",
           "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438", "Apache-2.0", "noto", "pretrain",
           "datasource"),
    Source("noto-v1", "@iconify-json/noto-v1", "1.2.5",
           "2bf62c26c2c2884aa99e90aec942cdaee17a5921f05690694f4978ad4b017c37", "Apache-2.0", "noto-v1", "pretrain",
           "iconify"),
    Source("twemoji", "emoji-datasource-twitter", "16.0.0",
           "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877", "CC-BY-4.0", "twemoji", "pretrain",
           "datasource"),
    Source("emojione", "@iconify-json/emojione", "1.2.3",
           "26a14f44284407e8bcde91799388dca2bfd91dbcd55a97f425524a1c5b73610e", "CC-BY-4.0", "emojione", "pretrain",
           "iconify"),
    Source("emojione-v1", "@iconify-json/emojione-v1", "1.2.3",
           "6641d59d48a42823fdc2b84e7427e9f302944eb98d2c7d94d6e67c139e7b37b3", "CC-BY-SA-4.0", "emojione-v1",
           "pretrain", "iconify"),
    Source("emojione-monotone", "@iconify-json/emojione-monotone", "1.2.1",
           "40b90004bafb406b59266155ef9b7e1dd67bf2947fc8db8d07388776f4d0d04e", "CC-BY-4.0", "emojione-monotone",
           "pretrain", "iconify"),
    # downstream only: the Fluent family and OpenMoji
    Source("fluent-3d", "@lobehub/fluent-emoji-3d", "1.1.0",
           "c1bb7eee7de090205a232518a9ab4adb3df458bfbe8a1f78232991194c8b2e58", "MIT", "fluent", "downstream",
           "fluent3d"),
    Source("fluent-color", "@iconify-json/fluent-emoji", "1.2.7",
           "8044210dbf11e016d4de85f15d01a243423bd832457e7e2491df1b751c0e272b", "MIT", "fluent", "downstream",
           "iconify"),
    Source("fluent-flat", "@iconify-json/fluent-emoji-flat", "1.2.6",
           "7d064769dee690815f823bc5bcc511d957198caf9f5edd8dd9c1aa48a6aeb175", "MIT", "fluent", "downstream",
           "iconify"),
    Source("fluent-mono", "@iconify-json/fluent-emoji-high-contrast", "1.2.6",
           "0b92d48c90d2200bd499e3cdd09a127ca6a8c8ddefd34c35eb5a1e4994012ae0", "MIT", "fluent", "downstream",
           "iconify"),
    Source("openmoji-color", "openmoji", "17.0.0",
           "55ee7d13485dec86e9f38c1f3a645a13382d33ff97c0cd845ee824b0aef45e68", "CC-BY-SA-4.0", "openmoji",
           "downstream", "openmoji-color"),
    Source("openmoji-black", "openmoji", "17.0.0",
           "55ee7d13485dec86e9f38c1f3a645a13382d33ff97c0cd845ee824b0aef45e68", "CC-BY-SA-4.0", "openmoji",
           "downstream", "openmoji-black"),
    # held out of everything: stands in for a style no source uses (the generality check)
    Source("fxemoji", "@iconify-json/fxemoji", "1.2.2",
           "f3e72b3c59d05e1db03b7e308d55c0d05bd7ba3f625a90da1b79313c12858eef", "Apache-2.0", "fxemoji", "holdout",
           "iconify"),
)

# The vocabulary (names, short names, categories) comes from the Noto tarball's emoji.json and
# OpenMoji's openmoji.json (CLDR annotations and tags).
VOCABULARY_FILES = {"emoji.json": "emoji-datasource-google", "openmoji.json": "openmoji"}


def source(style: str) -> Source:
    for s in SOURCES:
        if s.style == style:
            return s
    raise DataError(f"unknown picture style {style!r}; known: {', '.join(s.style for s in SOURCES)}")


def styles(role: str | None = None) -> list[str]:
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    return [s.style for s in SOURCES if role is None or s.role == role]


def world_dir(root: str | os.PathLike | None = None) -> Path:
    """Where fetched tarballs and rendered pictures live: `root`, else $ROBUSTPROMPT_WORLD, else
    ~/.cache/robustprompt/world."""
    p = root or os.environ.get(WORLD_ENV) or Path.home() / ".cache" / "robustprompt" / "world"
    return Path(p).expanduser()


def norm_code(hexcode: str) -> str:
    """'1F408-200D-2B1B' / '1f408-200d-2b1b-fe0f' -> '1f408-200d-2b1b' (variation selectors dropped)."""
    parts = [p.lower() for p in hexcode.replace("_", "-").split("-") if p]
    return "-".join(p for p in parts if p != "fe0f")


def kebab(name: str) -> str:
    """CLDR name -> iconify icon name: 'A button (blood type)' -> 'a-button-blood-type'."""
    out, dash = [], False
    for ch in name.lower().replace("’", "").replace("'", ""):
        if ch.isalnum():
            out.append(ch)
            dash = False
        elif not dash and out:
            out.append("-")
            dash = True
    return "".join(out).strip("-")


def squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


# ---------------------------------------------------------------------------------------------- files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pictures_path(style: str, root=None) -> Path:
    return world_dir(root) / "pictures" / f"{style}.npz"


def vocabulary_path(name: str, root=None) -> Path:
    return world_dir(root) / "vocabulary" / name


def missing(root=None) -> list[str]:
    """Styles (and vocabulary files) not yet fetched and rendered."""
    out = [s.style for s in SOURCES if not pictures_path(s.style, root).is_file()]
    out += [n for n in VOCABULARY_FILES if not vocabulary_path(n, root).is_file()]
    return out


def require(root=None) -> Path:
    """The world folder, or a one-line DataError naming the command that fetches what is missing."""
    gone = missing(root)
    if gone:
        raise DataError(f"the emoji world is not installed in {world_dir(root)} (missing: {', '.join(gone[:4])}"
                        f"{' ...' if len(gone) > 4 else ''}); run `{FETCH_COMMAND}` (scripts/setup does)")
    return world_dir(root)


def load_pictures(style: str, root=None) -> tuple[list[str], np.ndarray]:
    """(normalised code points, RGBA uint8 (N, 64, 64, 4)) of one style."""
    path = pictures_path(style, root)
    if not path.is_file():
        require(root)
    with np.load(path) as z:
        return [str(k) for k in z["codes"]], z["rgba"]


# ---------------------------------------------------------------------------------------------- fetch


def _npm_pack(src: Source, dest: Path) -> Path:
    path = dest / src.tarball
    if path.is_file() and _sha256(path) == src.sha256:
        return path
    if shutil.which("npm") is None:
        raise DataError(f"npm is needed to fetch {src.spec} (install Node.js's npm, e.g. `apt-get install npm`)")
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["npm", "pack", src.spec, "--pack-destination", str(dest), "--silent"],
                       capture_output=True, text=True)
    if r.returncode != 0 or not path.is_file():
        tail = (r.stderr.strip().splitlines() or ["no tarball written"])[-1]
        raise DataError(f"`npm pack {src.spec}` failed: {tail}")
    got = _sha256(path)
    if got != src.sha256:
        path.unlink()
        raise DataError(f"{src.spec}: tarball sha256 {got} does not match the pinned {src.sha256}")
    return path


def _to_rgba(im) -> np.ndarray:
    from PIL import Image

    im = im.convert("RGBA")
    if im.size != (PICTURE_SIZE, PICTURE_SIZE):
        im = im.resize((PICTURE_SIZE, PICTURE_SIZE), Image.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def _render_svg(svg: str) -> np.ndarray:
    import resvg_py
    from PIL import Image

    png = resvg_py.svg_to_bytes(svg_string=svg, width=PICTURE_SIZE, height=PICTURE_SIZE, skip_system_fonts=True)
    return _to_rgba(Image.open(io.BytesIO(bytes(png))))


def _iconify_svgs(data: dict):
    w0, h0 = data.get("width", 16), data.get("height", 16)
    for name, icon in data["icons"].items():
        w, h = icon.get("width", w0), icon.get("height", h0)
        left, top = icon.get("left", 0), icon.get("top", 0)
        yield name, (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                     f'viewBox="{left} {top} {w} {h}">{icon["body"]}</svg>')


def _extract(src: Source, tar: tarfile.TarFile, names_to_code) -> tuple[list[str], np.ndarray]:
    from PIL import Image

    codes, pics = [], []
    members = {m.name: m for m in tar.getmembers() if m.isfile()}

    def read(name: str) -> bytes:
        return tar.extractfile(members[name]).read()

    if src.layout == "datasource":
        data = json.loads(read("package/emoji.json"))
        folder = f"package/img/{src.package.rsplit('-', 1)[1]}/64/"
        for e in data:
            m = folder + e["image"]
            if m in members:
                codes.append(norm_code(e["unified"]))
                pics.append(_to_rgba(Image.open(io.BytesIO(read(m)))))
    elif src.layout == "fluent3d":
        for m in sorted(members):
            if m.startswith("package/assets/") and m.endswith(".webp"):
                codes.append(norm_code(Path(m).stem))
                pics.append(_to_rgba(Image.open(io.BytesIO(read(m)))))
    elif src.layout in ("openmoji-color", "openmoji-black"):
        folder = "package/" + src.layout.split("-")[1] + "/svg/"
        for e in json.loads(read("package/data/openmoji.json")):
            m = folder + e["hexcode"] + ".svg"
            if m in members and not e.get("skintone"):
                codes.append(norm_code(e["hexcode"]))
                pics.append(_render_svg(read(m).decode("utf-8")))
    elif src.layout == "iconify":
        data = json.loads(read("package/icons.json"))
        chars = json.loads(read("package/chars.json")) if "package/chars.json" in members else {}
        by_name = {v: k for k, v in chars.items()}
        for name, svg in _iconify_svgs(data):
            code = by_name.get(name) or names_to_code(name)
            if code:
                codes.append(norm_code(code))
                pics.append(_render_svg(svg))
    else:
        raise ValueError(f"unknown layout {src.layout!r}")
    keep = {}  # one picture per code point (the first)
    for i, c in enumerate(codes):
        keep.setdefault(c, i)
    idx = sorted(keep.values())
    return [codes[i] for i in idx], np.stack([pics[i] for i in idx])


def _name_index(root) -> "callable":
    """iconify icon name -> code point, through CLDR annotations (OpenMoji) and emoji.json names."""
    table: dict[str, str] = {}
    for e in json.loads(vocabulary_path("openmoji.json", root).read_text()):
        if not e.get("skintone"):
            for key in (kebab(e["annotation"]), squash(e["annotation"])):
                table.setdefault(key, e["hexcode"])
    for e in json.loads(vocabulary_path("emoji.json", root).read_text()):
        for n in [e.get("name") or ""] + list(e.get("short_names") or []):
            for key in (kebab(n), squash(n)):
                if key:
                    table.setdefault(key, e["unified"])

    def lookup(name: str) -> str | None:
        return table.get(name) or table.get(squash(name))

    return lookup


def fetch(root=None, *, log=print, force: bool = False) -> Path:
    """Pack, verify and render every source into the world folder; skips what is already there."""
    base = world_dir(root)
    tarballs = base / "tarballs"
    (base / "pictures").mkdir(parents=True, exist_ok=True)
    (base / "vocabulary").mkdir(parents=True, exist_ok=True)
    by_pkg = {s.package: s for s in SOURCES}
    for fname, pkg in VOCABULARY_FILES.items():
        out = vocabulary_path(fname, base)
        if out.is_file() and not force:
            continue
        path = _npm_pack(by_pkg[pkg], tarballs)
        with tarfile.open(path) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("/" + fname))
            atomic_write_bytes(out, tar.extractfile(member).read())
    lookup = _name_index(base)
    for src in SOURCES:
        out = pictures_path(src.style, base)
        if out.is_file() and not force:
            continue
        path = _npm_pack(src, tarballs)
        log(f"world: rendering {src.style} ({src.spec}, {src.licence})")
        with tarfile.open(path) as tar:
            codes, rgba = _extract(src, tar, lookup)
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, codes=np.array(codes), rgba=rgba)
        log(f"world: {src.style}: {len(codes)} pictures")
    manifest = {s.style: {"package": s.spec, "sha256": s.sha256, "licence": s.licence, "family": s.family,
                          "role": s.role} for s in SOURCES}
    atomic_write_text(base / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return base
