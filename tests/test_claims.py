"""The claims file: loading, judging from runs on disk, and rewriting README sections."""

from __future__ import annotations

import numpy as np
import pytest

from robustprompt.cli import main
from robustprompt.errors import RobustPromptError
from robustprompt.report.claims import evaluate_claims, load_claims, load_tables, write_sections
from test_report import _with_images, write_run

CLAIMS = """\
claims:
  - id: coop-base
    section: validity
    source: "KgCoOp, Table 1"
    statement: "prompt tuning beats zero-shot on base classes"
    published: "82.7 vs 69.3"
    runs: runs
    a: [coop, maple]
    b: zeroshot
    evaluation: clean_acc
    split: base
    scope: average
  - id: coop-novel
    section: validity
    source: "KgCoOp, Table 1"
    statement: "CoOp is below zero-shot on novel classes"
    runs: runs
    a: coop
    b: zeroshot
    evaluation: clean_acc
    split: novel
    scope: average
    direction: less
  - id: missing
    section: seeds
    source: "nowhere"
    statement: "runs not made yet"
    runs: not-there
    a: coop
    b: zeroshot
    evaluation: clean_acc
    split: base
    scope: average
"""


def _bits(rng, n, p):
    return "".join("1" if v else "0" for v in rng.random(n) < p)


@pytest.fixture
def claims_dir(tmp_path):
    rng = np.random.default_rng(0)
    runs = tmp_path / "runs"
    acc = {"zeroshot": (0.5, 0.7), "coop": (0.9, 0.3), "maple": (0.52, 0.7)}  # (base, novel)
    for ds in ("d1", "d2"):
        for seed in (1, 2, 3):
            for m, (pb, pn) in acc.items():
                write_run(runs, m, ds, seed, [_with_images(ds, "base", _bits(rng, 400, pb)),
                                              _with_images(ds, "novel", _bits(rng, 400, pn))])
    (tmp_path / "claims.yaml").write_text(CLAIMS)
    return tmp_path


def test_claims_are_judged_in_their_direction(claims_dir):
    claims = load_claims(claims_dir / "claims.yaml")
    assert [c.id for c in claims] == ["coop-base-coop", "coop-base-maple", "coop-novel", "missing"]
    out = {o.claim.id: o for o in evaluate_claims(claims, n_boot=500)}
    assert out["coop-base-coop"].verdict == "established"  # 90 vs 50
    assert out["coop-base-maple"].verdict == "not established"  # 52 vs 50 on 2 x 400 images
    novel = out["coop-novel"]  # claimed "less": judged as zeroshot > coop
    assert novel.verdict == "established" and novel.row.result.diff > 0.3
    assert out["missing"].verdict == "no runs"


def test_flipped_data_flip_the_verdict(claims_dir):
    text = (claims_dir / "claims.yaml").read_text().replace("direction: less", "direction: greater")
    (claims_dir / "claims.yaml").write_text(text)
    out = {o.claim.id: o for o in evaluate_claims(load_claims(claims_dir / "claims.yaml"), n_boot=500)}
    assert out["coop-novel"].verdict == "refuted"


def test_a_verdict_needs_its_minimum_of_images(claims_dir):
    """A claim with `min_images` (AutoAttack: 500) gets no verdict on fewer images: the row keeps its numbers."""
    path = claims_dir / "claims.yaml"
    path.write_text(path.read_text().replace("    split: base\n", "    split: base\n    min_images: 801\n", 1))
    out = {o.claim.id: o for o in evaluate_claims(load_claims(path), n_boot=200)}
    low = out["coop-base-coop"]
    assert low.verdict == "too few images" and low.row.result.n_images == 800 and low.row.result.diff > 0.3
    assert "too few images (at least 801)" in write_sections(
        "<!-- claims:validity:begin -->\n<!-- claims:validity:end -->\n", [low])
    path.write_text(path.read_text().replace("min_images: 801", "min_images: 800"))
    assert evaluate_claims(load_claims(path), n_boot=200)[0].verdict == "established"
    path.write_text(path.read_text().replace("min_images: 800", "min_images: many"))
    with pytest.raises(RobustPromptError, match="min_images"):
        load_claims(path)


def test_sections_are_rewritten_between_markers(claims_dir, capsys):
    readme = claims_dir / "README.md"
    readme.write_text("intro\n<!-- claims:validity:begin -->\nold\n<!-- claims:validity:end -->\n"
                      "<!-- claims:seeds:begin -->\n<!-- claims:seeds:end -->\nend\n")
    assert main(["report", "--claims", str(claims_dir / "claims.yaml"), "--write", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert "**established**" in text and "no runs" in text and "82.7 vs 69.3" in text
    row = next(line for line in text.splitlines() if line.startswith("| prompt tuning beats") and "coop > zeroshot" in line)
    assert row.split(" | ")[-4:-1] == ["2", "3", "800"]  # datasets, seeds, images: pooled over d1 and d2
    again = write_sections(text, evaluate_claims(load_claims(claims_dir / "claims.yaml"), n_boot=500))
    assert again.count("claims:validity:begin") == 1


def test_bad_claims_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("claims:\n  - id: x\n    section: s\n")
    with pytest.raises(RobustPromptError, match="lacks"):
        load_claims(bad)
    bad.write_text(CLAIMS.replace("scope: average\n", "scope: average\n    colour: red\n", 1))
    with pytest.raises(RobustPromptError, match="unknown keys colour"):
        load_claims(bad)
    with pytest.raises(RobustPromptError, match="markers"):
        write_sections("no markers", _one_outcome(tmp_path))


def _one_outcome(tmp_path):
    (tmp_path / "d.yaml").write_text(CLAIMS)
    return evaluate_claims(load_claims(tmp_path / "d.yaml")[-1:], n_boot=10)


def test_a_claim_reads_runs_from_several_folders(claims_dir):
    """An ablation's runs live beside the full method's: `runs` may list folders, read together."""
    rng = np.random.default_rng(1)
    for ds in ("d1", "d2"):
        for seed in (1, 2, 3):
            write_run(claims_dir / "ablation", "coop-short", ds, seed,
                      [_with_images(ds, "base", _bits(rng, 400, 0.6)), _with_images(ds, "novel", _bits(rng, 400, 0.3))])
    text = CLAIMS.split("  - id: coop-novel")[0].replace("runs: runs", "runs: [runs, ablation]").replace(
        "a: [coop, maple]", "a: coop").replace("b: zeroshot", "b: coop-short")
    (claims_dir / "ablation.yaml").write_text(text)
    (out,) = evaluate_claims(load_claims(claims_dir / "ablation.yaml"), n_boot=500)
    assert out.verdict == "established" and out.row.result.diff == pytest.approx(0.3, abs=0.06)
    (claims_dir / "ablation.yaml").write_text(text.replace("runs: [runs, ablation]", "runs: [runs]"))
    (alone,) = evaluate_claims(load_claims(claims_dir / "ablation.yaml"), n_boot=500)
    assert alone.verdict == "no runs"


def test_report_tables_are_written_between_their_markers(claims_dir, capsys):
    """A claims file's `tables:` put report tables into the README; rows: average keeps the rows
    averaged over datasets and names the methods that lack a dataset."""
    from test_report import write_run as write

    rng = np.random.default_rng(1)
    write(claims_dir / "runs", "promptsrc", "d1", 1, [_with_images("d1", "base", _bits(rng, 400, 0.6)),
                                                      _with_images("d1", "novel", _bits(rng, 400, 0.6))])
    path = claims_dir / "claims.yaml"
    path.write_text(path.read_text() + "tables:\n  - section: b2n\n    runs: runs\n    table: b2n\n"
                    "    rows: average\n  - section: later\n    runs: not-there\n    table: robustness\n")
    readme = claims_dir / "README.md"
    readme.write_text("<!-- claims:validity:begin -->\n<!-- claims:validity:end -->\n<!-- claims:seeds:begin -->\n"
                      "<!-- claims:seeds:end -->\n<!-- table:b2n:begin -->\nold\n<!-- table:b2n:end -->\n"
                      "<!-- table:later:begin -->\n<!-- table:later:end -->\n")
    assert main(["report", "--claims", str(path), "--write", str(readme)]) == 0
    block = readme.read_text().split("<!-- table:b2n:begin -->\n")[1].split("<!-- table:b2n:end -->")[0]
    rows = [line for line in block.splitlines() if line.startswith("| ") and "Average" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| coop", "| maple", "| zeroshot"]
    assert "old" not in block and "| d1 |" not in block
    assert "Not in the average (runs on fewer datasets): promptsrc (1 of 2)." in block
    assert "_No runs yet under" in readme.read_text().split("<!-- table:later:begin -->")[1]

    before = readme.read_text().replace("<!-- table:later:end -->", "")
    readme.write_text(before)
    capsys.readouterr()
    assert main(["report", "--claims", str(path), "--write", str(readme)]) != 0
    assert "table:later:end" in capsys.readouterr().err and readme.read_text() == before  # nothing half-written
    path.write_text(path.read_text().replace("table: robustness", "table: nope"))
    with pytest.raises(RobustPromptError, match="table must be one of"):
        load_tables(path)
