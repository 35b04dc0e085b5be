"""`robustprompt report`: aggregation rules on hand-made results.json files, files written, HTML, bad input."""

import csv
import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from robustprompt.cli import main
from robustprompt.report import build_report

from helpers import TINY_ARGS, make_imagefolder, fails


def rec(dataset, split, metric, value, **kw):
    return {"dataset": dataset, "split": split, "metric": metric, "value": value, "n": 100, **kw}


def pgd(dataset, split, value, eps="1/255", steps=10):
    num, den = eps.split("/")
    return rec(dataset, split, "pgd_acc", value, attack="pgd", eps=eps, eps_value=int(num) / int(den), steps=steps)


def write_run(root: Path, method: str, dataset: str, seed: int, records, *, train_split="base", shots=16,
              label=None) -> Path:
    d = root / f"{label or method}-{dataset}-s{seed}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"method: {method}\nseed: {seed}\ndata:\n  dataset: {dataset}\n")
    (d / "results.json").write_text(json.dumps({
        "schema_version": 1,
        "run": {"method": method, **({"label": label} if label else {}), "dataset": dataset, "train_split": train_split, "shots": shots, "seed": seed,
                "classnames": ["a", "b"]},
        "backbone": {"model": "robustprompt-tiny", "pretrained": "embedded"},
        "versions": {"robustprompt": "0.1.0"},
        "train": {"epochs": 1, "final_loss": 0.5},
        "evaluations": list(records),
    }))
    return d


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    # coop on two datasets, two seeds. HM per seed differs from HM of the means (the rule is tested).
    write_run(root, "coop", "dsA", 1, [rec("dsA", "base", "clean_acc", 0.8), rec("dsA", "novel", "clean_acc", 0.4),
                                       pgd("dsA", "base", 0.5), rec("dsA", "base", "autoattack_acc", 0.45,
                                                                    attack="autoattack", eps="1/255",
                                                                    eps_value=1 / 255),
                                       rec("dsA", "base", "noise_acc", 0.7, noise="gaussian:0.02"),
                                       rec("dsA", "novel", "noise_acc", 0.3, noise="gaussian:0.02")])
    write_run(root, "coop", "dsA", 2, [rec("dsA", "base", "clean_acc", 0.6), rec("dsA", "novel", "clean_acc", 0.6),
                                       pgd("dsA", "base", 0.3),
                                       rec("dsA", "base", "noise_acc", 0.5, noise="gaussian:0.02")])
    write_run(root / "more", "coop", "dsB", 1, [rec("dsB", "base", "clean_acc", 0.9),
                                                rec("dsB", "novel", "clean_acc", 0.5)])
    write_run(root / "more", "coop", "dsB", 2, [rec("dsB", "base", "clean_acc", 0.7),
                                                rec("dsB", "novel", "clean_acc", 0.7)])
    # kgcoop: one dataset, base only -> blanks, and no average row
    write_run(root, "kgcoop", "dsA", 1, [rec("dsA", "base", "clean_acc", 0.75), pgd("dsA", "base", 0.2, eps="4/255")])
    # a preset's label names the row: advivlp is the ivlp method with adversarial training, never mixed with ivlp
    write_run(root, "ivlp", "dsC", 1, [rec("dsC", "all", "clean_acc", 0.9)], label="advivlp", train_split="all")
    write_run(root, "ivlp", "dsC", 2, [rec("dsC", "all", "clean_acc", 0.8)], train_split="all")
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.yaml").write_text("method: coop\n")
    return root


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_b2n_means_hm_per_seed_blanks_and_average(runs, tmp_path):
    result = build_report([runs], tmp_path / "out", plots=False)
    assert len(result.runs) == 7 and any("unfinished" in w for w in result.warnings)
    rows = {(r["method"], r["dataset"]): r for r in _csv(tmp_path / "out" / "b2n.csv")}
    a = rows[("coop", "dsA")]
    assert float(a["Base mean"]) == pytest.approx(0.7) and float(a["Base std"]) == pytest.approx(0.141421, abs=1e-6)
    assert float(a["Novel mean"]) == pytest.approx(0.5)
    # per seed: HM(0.8, 0.4) = 0.5333, HM(0.6, 0.6) = 0.6 -> 0.5667 (HM of the means would be 0.5833)
    assert float(a["HM mean"]) == pytest.approx((2 * .8 * .4 / 1.2 + 0.6) / 2, abs=1e-6)
    assert a["seeds"] == "2" and a["HM n"] == "2"
    avg = rows[("coop", "Average (2 datasets)")]
    hm1, hm2 = 2 * .85 * .45 / 1.3, 0.65  # per seed: HM of the mean Base and mean Novel over the datasets
    assert float(avg["Base mean"]) == pytest.approx(0.75) and float(avg["HM mean"]) == pytest.approx((hm1 + hm2) / 2, abs=1e-6)
    k = rows[("kgcoop", "dsA")]
    assert float(k["Base mean"]) == 0.75 and k["Base std"] == ""
    assert k["Novel mean"] == "" and k["HM mean"] == "" and k["Novel n"] == "0"  # blank, never made up
    assert ("kgcoop", "Average (2 datasets)") not in rows  # missing a dataset: no average
    md = (tmp_path / "out" / "b2n.md").read_text()
    assert "| coop | dsA | 2 | 70.00 ± 14.14 | 50.00 ± 14.14 | 56.67 ± 4.71 |" in md
    assert "| kgcoop | dsA | 1 | 75.00 |  |  |" in md
    assert "computed per seed" in md and "All rows: train split base, shots 16" in md


def test_clean_table_separates_labels(runs, tmp_path):
    result = build_report([runs], tmp_path / "out", tables=["clean"], plots=False)
    rows = {(r.keys[0], r.where[0]): r for r in result.tables["clean"].rows}
    assert rows[("advivlp", "dsC")].cells[0].values == [0.9]
    assert rows[("ivlp", "dsC")].cells[0].values == [0.8]
    assert "train split" in result.tables["clean"].key_columns  # base and all differ, so the column shows


def test_robustness_columns_partial_seeds_and_blanks(runs, tmp_path):
    result = build_report([runs], tmp_path / "out", tables=["robustness"], plots=False)
    t = result.tables["robustness"]
    assert t.value_columns == ["Clean", "PGD-10 eps 1/255", "PGD-10 eps 4/255", "AutoAttack eps 1/255"]
    md = (tmp_path / "out" / "robustness.md").read_text()
    assert "| coop | dsA | base | 2 | 70.00 ± 14.14 | 40.00 ± 14.14 |  | 45.00 (n=1) |" in md
    assert "| kgcoop | dsA | base | 1 | 75.00 |  | 20.00 |  |" in md
    rows = _csv(tmp_path / "out" / "robustness.csv")
    assert rows[0]["AutoAttack eps 1/255 n"] == "1" and rows[0]["PGD-10 eps 4/255 mean"] == ""
    assert not (tmp_path / "out" / "b2n.csv").exists() and not (tmp_path / "out" / "plots").exists()


def test_noise_table_hm_where_both_splits_exist(runs, tmp_path):
    result = build_report([runs], tmp_path / "out", tables=["noise"], plots=False)
    t = result.tables["noise"]
    assert t.value_columns == ["Base", "Novel", "HM"]
    by = {r.where[1]: r for r in t.rows if r.where[0] == "dsA"}
    assert set(by) == {"clean", "gaussian:0.02"}
    noisy = by["gaussian:0.02"]
    assert noisy.cells[0].values == [0.7, 0.5] and noisy.cells[1].values == [0.3]
    assert noisy.cells[2].values == pytest.approx([2 * .7 * .3 / 1.0])  # only seed 1 has both splits


def test_cli_report_default_out_html_and_plots(runs, capsys):
    assert main(["report", str(runs)]) == 0
    out = runs / "report"
    printed = capsys.readouterr().out
    assert "7 run(s)" in printed and str(out / "report.html") in printed
    for name in ("report.md", "report.html", "b2n.md", "b2n.csv", "robustness.csv", "noise.csv", "clean.csv",
                 "plots/b2n_bars.png", "plots/eps_dsA_base.png", "plots/noise_dsA.png"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
    assert "<table>" in html and "56.67 ± 4.71" in html
    from PIL import Image

    with Image.open(out / "plots" / "b2n_bars.png") as im:
        assert im.format == "PNG" and im.size[0] > 300
    # a second report over the same folder does not count its own output and gives the same page
    assert main(["report", str(runs)]) == 0
    assert (out / "report.html").read_text() == html


def test_report_of_a_real_run(tmp_path, capsys):
    tree = make_imagefolder(tmp_path / "colours")
    run = tmp_path / "runs" / "coop-s1"
    assert main(["train", "--dataset", "imagefolder", "--data-root", str(tree), "--out", str(run), *TINY_ARGS,
                 "--split", "base"]) == 0
    assert main(["eval", str(run), "--split", "novel"]) == 0
    result = build_report([tmp_path / "runs"], tmp_path / "report")
    (row,) = result.tables["b2n"].rows
    results = json.loads((run / "results.json").read_text())
    by_split = {r["split"]: r["value"] for r in results["evaluations"]}
    assert row.cells[0].values == [by_split["base"]] and row.cells[1].values == [by_split["novel"]]
    assert row.keys[:2] == ["coop", "imagefolder"]
    assert (tmp_path / "report" / "plots" / "b2n_bars.png").is_file()
    if shutil.which("chromium"):
        _screenshot(result.html, tmp_path / "shot.png")


def _screenshot(html: Path, png: Path) -> None:
    profile = tempfile.mkdtemp()
    try:
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,1600",
                        html.resolve().as_uri()], capture_output=True, timeout=180, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    from PIL import Image

    assert png.is_file(), "chromium wrote no screenshot"
    with Image.open(png) as im:
        assert im.size == (1200, 1600)
        grey = im.convert("L")
        lo, hi = grey.getextrema()
        dark = sum(grey.histogram()[:128])
    assert lo < 60 and hi > 240 and dark > 2000, "the page rendered blank"


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_html_report_renders_in_headless_chromium(runs, tmp_path):
    result = build_report([runs], tmp_path / "out")
    _screenshot(result.html, tmp_path / "report.png")


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written
def test_report_over_a_folder_with_no_runs(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    fails(capsys, ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "out")], "no run directories")
    assert not (tmp_path / "out").exists()


def test_report_results_json_not_json(runs, tmp_path, capsys):
    bad = runs / "coop-dsA-s2" / "results.json"
    bad.write_text('{"schema_version": 1, "evaluations": [')
    fails(capsys, ["report", str(runs), "--out", str(tmp_path / "out")], f"{bad} is not valid JSON")
    assert not (tmp_path / "out").exists()


def test_report_record_with_an_impossible_accuracy(runs, tmp_path, capsys):
    path = runs / "kgcoop-dsA-s1" / "results.json"
    data = json.loads(path.read_text())
    data["evaluations"][0]["value"] = 87.5  # a percentage where a fraction belongs
    path.write_text(json.dumps(data))
    fails(capsys, ["report", str(runs), "--out", str(tmp_path / "out")], "expected an accuracy in [0, 1]")
    assert not (tmp_path / "out").exists()


def test_report_unwritable_output_folder(runs, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    fails(capsys, ["report", str(runs), "--out", str(afile / "report")], "is not a directory")
    fails(capsys, ["report", str(runs), "--out", "/dev/null/report"], "is not a directory")
    assert afile.read_text() == "x"


def test_report_missing_folder_and_unknown_table(tmp_path, capsys):
    fails(capsys, ["report", str(tmp_path / "nowhere")], "path not found")
    fails(capsys, ["report", str(tmp_path), "--table", "nope"], "invalid choice: 'nope'")


def test_robustness_note_summarises_the_attack_sanity_checks(tmp_path):
    ok = {"passed": True, "checks": {"gradients_nonzero": True, "monotone_in_steps": True, "square_not_better": None}}
    bad = {"passed": False, "checks": {"gradients_nonzero": True, "monotone_in_steps": False,
                                       "square_not_better": True}}
    write_run(tmp_path, "coop", "dsA", 1, [rec("dsA", "all", "clean_acc", 0.8), {**pgd("dsA", "all", 0.5), "sanity": ok}])
    write_run(tmp_path, "coop", "dsA", 2, [rec("dsA", "all", "clean_acc", 0.8),
                                           {**pgd("dsA", "all", 0.4, eps="4/255"), "sanity": bad}])
    note = build_report([tmp_path], out=tmp_path / "rep").tables["robustness"].note
    assert "2 evaluations checked" in note
    assert "monotone_in_steps failed in 1 (coop seed 2 PGD 4/255)" in note
    write_run(tmp_path / "clean", "coop", "dsA", 1, [rec("dsA", "all", "clean_acc", 0.8),
                                                     {**pgd("dsA", "all", 0.5), "sanity": ok}])
    assert "1 evaluations checked, all passed." in build_report([tmp_path / "clean"], out=tmp_path / "rep2").tables["robustness"].note


def _with_images(dataset, split, correct: str):
    """A clean record that kept its per-image results."""
    return rec(dataset, split, "clean_acc", correct.count("1") / len(correct), n=len(correct), correct=correct,
               items_sha256=f"{dataset}-{split}")


def test_intervals_beside_the_means_and_on_the_average_rows(tmp_path):
    from robustprompt.report import build_report

    root = tmp_path / "runs"
    patterns = {1: "1101101101", 2: "1111101100"}
    for seed, bits in patterns.items():
        for ds in ("dsA", "dsB"):
            write_run(root, "coop", ds, seed, [_with_images(ds, "base", bits), _with_images(ds, "novel", bits[::-1])])
    table = build_report([root], tmp_path / "rep", tables=["b2n"], plots=False).tables["b2n"]
    by = {row.keys[1]: row for row in table.rows}
    for key in ("dsA", "dsB", "Average (2 datasets)"):
        base = by[key].cells[0]
        assert base.interval is not None and base.interval[0] < base.mean < base.interval[1], key
    assert by["Average (2 datasets)"].cells[2].interval is None  # an HM of averages: no interval
    assert "[" in (tmp_path / "rep" / "b2n.md").read_text()
