"""The emoji world: sources (hashes, one-line errors), the concept join, the style split, the suite."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from robustprompt.errors import DataError
from robustprompt.world import concepts as W
from robustprompt.world import sources as S


def test_families_never_straddle_roles():
    roles = {}
    for s in S.SOURCES:
        roles.setdefault(s.family, set()).add(s.role)
    assert all(len(r) == 1 for r in roles.values()), roles
    assert set(S.styles("pretrain")).isdisjoint(S.styles("downstream"))
    # the styles the issue names are downstream-only
    for fam in ("fluent", "openmoji"):
        assert {s.role for s in S.SOURCES if s.family == fam} == {"downstream"}


def test_licences_are_free_and_hashes_pinned():
    free = {"MIT", "Apache-2.0", "CC-BY-4.0", "CC-BY-SA-4.0"}
    for s in S.SOURCES:
        assert s.licence in free, s
        assert len(s.sha256) == 64 and int(s.sha256, 16) >= 0
        assert "apple" not in s.package and "facebook" not in s.package


def test_norm_code_and_kebab():
    assert S.norm_code("1F408-200D-2B1B") == "1f408-200d-2b1b"
    assert S.norm_code("2764-fe0f") == "2764"
    assert S.kebab("A button (blood type)") == "a-button-blood-type"
    assert S.kebab("women’s room") == "womens-room"


def test_a_tarball_with_the_wrong_hash_is_refused_and_removed(tmp_path, monkeypatch):
    src = S.source("fxemoji")

    def fake_npm(cmd, **kw):
        (tmp_path / src.tarball).write_bytes(b"not the pinned tarball")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(S.subprocess, "run", fake_npm)
    monkeypatch.setattr(S.shutil, "which", lambda name: "/usr/bin/npm")
    with pytest.raises(DataError, match="does not match the pinned"):
        S._npm_pack(src, tmp_path)
    assert not (tmp_path / src.tarball).exists()


def test_a_missing_world_is_one_line_naming_the_fetch_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "robustprompt", "world", "concepts", "--world", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "robustprompt world fetch" in lines[0], r.stderr
    with pytest.raises(DataError, match="robustprompt world fetch"):
        S.require(tmp_path)


# ---------------------------------------------------------------------------------------------- needs the world

world = pytest.mark.skipif(bool(S.missing()), reason="emoji world not fetched (robustprompt world fetch)")


@world
def test_concept_join():
    cs = W.load_concepts()
    names = [c.name for c in cs]
    assert len(cs) >= 800 and len(set(names)) == len(names)
    by = {c.name: c for c in cs}
    # gender variants merged into one concept; animal faces joined to the animal
    assert "man technologist" not in by and "woman technologist" not in by
    assert len(by["technologist"].codes) >= 3
    assert "cat face" not in by and {"1f408", "1f431"} <= set(by["cat"].codes)
    assert "tiger face" not in by and len(by["tiger"].codes) == 2
    assert "woman dancing" not in by and "man dancing" not in by
    for c in cs:
        assert c.name not in c.synonyms and c.description.endswith(".")
        assert c.description.startswith(("a ", "an "))
    # every code point belongs to one concept
    codes = [code for c in cs for code in c.codes]
    assert len(codes) == len(set(codes))


def test_near_duplicates():
    assert W.near_duplicates("cat", "black cat") and W.near_duplicates("black cat", "cat")
    assert not W.near_duplicates("cat", "cat with wry smile")
    assert W.near_duplicates("dog", "hot dog")  # conservative: any trailing-words match keeps two names apart


@world
@pytest.mark.parametrize("name", ["emoji-plants", "emoji-animals"])
def test_suite_dataset_roles_and_classes(name):
    from robustprompt.data import emoji_suite as E
    from robustprompt.data.fewshot import base_novel_labels

    ds = E.build_suite_dataset(name)
    assert 20 <= ds.num_classes <= 100 and len(set(ds.classnames)) == ds.num_classes
    for i, a in enumerate(ds.classnames):
        assert not any(W.near_duplicates(a, b) for b in ds.classnames[i + 1:])
    base, novel = base_novel_labels(ds.num_classes)
    assert set(base).isdisjoint(novel)
    assert {ds.classnames[k] for k in base}.isdisjoint(ds.classnames[k] for k in novel)
    # no source picture serves two roles, and none comes from a pretraining style
    pics = E._pictures(None)
    by = {c.name: c for c in W.load_concepts()}
    for n in ds.classnames:
        roles = E.picture_roles(by[n], pics)
        assert set(roles["train"]).isdisjoint(roles["test"])
        used = {s for r in roles.values() for s, _ in r}
        assert used.isdisjoint(S.styles("pretrain"))
    assert ds.images.dtype == np.uint8 and ds.images.shape[1:] == (32, 32, 3)
    assert len(ds.test) == ds.num_classes * 10
    counts = E.source_pictures(ds)
    assert counts["train"] >= ds.num_classes and counts["test"] >= ds.num_classes


@world
def test_suite_templates_are_not_pretraining_captions():
    from robustprompt.data import emoji_suite as E
    from robustprompt.pretrain.world_stream import CAPTION_TEMPLATES, EDIT_PHRASES

    seen = set(CAPTION_TEMPLATES) | {t for v in EDIT_PHRASES.values() for t in v}
    for spec in (*E.SUITE, E.WORLD):
        for t in spec.templates:
            assert t not in seen and t.replace("{}", "a {}") not in seen


@world
def test_world_stream_is_deterministic_and_captions_name_the_concept():
    from robustprompt.pretrain.world_stream import WorldStream

    s = WorldStream(0)
    a, ca = s.batch(3, 16)
    b, cb = s.batch(3, 16)
    assert np.array_equal(a, b) and ca == cb
    c, _ = s.batch(4, 16)
    assert not np.array_equal(a, c)
    assert a.shape == (16, 32, 32, 3) and len(set(ca)) > 8


def test_misspell_changes_one_letter_at_most():
    from robustprompt.pretrain.world_stream import misspell

    rng = np.random.default_rng(0)
    for _ in range(50):
        w = misspell("giraffe", rng)
        assert w != "giraffe" and abs(len(w) - 7) <= 1
