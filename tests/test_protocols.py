import json

from robustprompt.cli import main

from helpers import make_imagefolder

TINY = ["--model", "robustprompt-test", "--pretrained", "random", "--shots", "4",
        "--set", "train.epochs=2", "--set", "train.batch_size=8", "--set", "method_cfg.n_ctx=4"]


def test_bench_b2n_runs_evaluates_tabulates_and_resumes(tmp_path, capsys):
    tree = make_imagefolder(tmp_path / "colours")
    out = tmp_path / "bench"
    argv = ["bench", "b2n", "--methods", "coop", "--datasets", "imagefolder", "--data-root", str(tree),
            "--seeds", "1,2", "--noise", "gaussian:0.05", "--out", str(out), *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for seed in (1, 2):
        res = json.loads((out / "imagefolder" / "coop" / f"seed{seed}" / "results.json").read_text())
        keys = {(r["split"], r["metric"], r.get("noise")) for r in res["evaluations"]}
        assert keys == {("base", "clean_acc", None), ("novel", "clean_acc", None),
                        ("base", "noise_acc", "gaussian:0.05"), ("novel", "noise_acc", "gaussian:0.05")}
        assert res["run"]["label"] == "coop"
    assert (out / "report" / "report.html").is_file() and "HM" in printed
    mtime = (out / "imagefolder" / "coop" / "seed1" / "results.json").stat().st_mtime_ns
    assert main(argv) == 0  # everything recorded: nothing is trained or evaluated again
    assert (out / "imagefolder" / "coop" / "seed1" / "results.json").stat().st_mtime_ns == mtime


def test_bench_robustness_records_pgd_and_autoattack(tmp_path, capsys):
    tree = make_imagefolder(tmp_path / "colours")
    out = tmp_path / "bench"
    assert main(["bench", "robustness", "--methods", "coop", "--datasets", "imagefolder", "--data-root", str(tree),
                 "--seeds", "1", "--eps", "8/255", "--pgd-steps", "2", "--aa-steps", "2", "--aa-n-max", "4",
                 "--out", str(out), *TINY]) == 0
    res = json.loads((out / "imagefolder" / "coop" / "seed1" / "results.json").read_text())
    metrics = {(r["metric"], r.get("eps")) for r in res["evaluations"]}
    assert metrics == {("clean_acc", None), ("pgd_acc", "8/255"), ("autoattack_acc", "8/255")}
    assert "robustness" in capsys.readouterr().out.lower()


def test_train_applies_the_models_overlay_as_bench_does(tmp_path, capsys):
    """`train --method advpt` on the embedded model gets the overlay's n_ctx (16; the paper's 32 do not
    fit its 32-token context), as `bench` does; --set still wins."""
    from robustprompt.config import build_run_config

    assert build_run_config("advpt").method_cfg["n_ctx"] == 16
    assert build_run_config("advpt", ["method_cfg.n_ctx=8"]).method_cfg["n_ctx"] == 8
    assert build_run_config("advpt", ["model.name=ViT-B-16"]).method_cfg["n_ctx"] == 32


def test_bench_xd_and_robustness_across_datasets(tmp_path, capsys):
    """xd: the source run is tested clean on every target; robustness --targets: clean, PGD and
    AutoAttack on the source and on every target, tabulated as source -> target rows."""
    src = make_imagefolder(tmp_path / "src")
    out = tmp_path / "bench"
    common = ["--methods", "coop", "--datasets", "imagefolder", "--data-root", str(src), "--seeds", "1",
              "--out", str(out), *TINY]
    assert main(["bench", "xd", "--targets", "shapes,colors", *common]) == 0
    res = json.loads((out / "imagefolder" / "coop" / "seed1" / "results.json").read_text())
    got = {(r["dataset"], r["split"], r["metric"]) for r in res["evaluations"]}
    assert {("shapes", "all", "clean_acc"), ("colors", "all", "clean_acc")} <= got
    assert "imagefolder → shapes" in capsys.readouterr().out
    assert main(["bench", "robustness", "--targets", "shapes", "--eps", "8/255", "--pgd-steps", "2",
                 "--aa-steps", "2", "--aa-n-max", "3", "--n-max", "6", *common]) == 0
    res = json.loads((out / "imagefolder" / "coop" / "seed1" / "results.json").read_text())
    got = {(r["dataset"], r["metric"]) for r in res["evaluations"]}
    assert {("shapes", "clean_acc"), ("shapes", "pgd_acc"), ("shapes", "autoattack_acc"),
            ("imagefolder", "pgd_acc"), ("imagefolder", "autoattack_acc")} <= got


def test_bench_xd_needs_targets(tmp_path, capsys):
    assert main(["bench", "xd", "--datasets", "shapes", "--out", str(tmp_path / "b")]) != 0
    assert "--targets" in capsys.readouterr().err


def test_every_shipped_preset_builds_a_run_config():
    from robustprompt.config import build_run_config, list_presets
    from robustprompt.methods.registry import list_methods

    for preset in list_presets():
        assert build_run_config(preset).method in list_methods(), preset


def test_maple_xd_is_the_authors_cross_dataset_recipe_and_bench_xd_uses_it():
    """MaPLe's code trains its cross-dataset source with vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml:
    the base-to-novel config but PROMPT_DEPTH 3, lr 0.0026 and 2 epochs."""
    from dataclasses import asdict

    from robustprompt.commands.bench import B2N_PRESETS, XD_PRESETS
    from robustprompt.config import build_run_config

    b2n, xd = asdict(build_run_config("maple")), asdict(build_run_config("maple-xd"))
    assert xd["method"] == "maple"
    changed = {(section, k) for section in ("method_cfg", "train") for k in xd[section]
               if xd[section][k] != b2n[section][k]}
    assert changed == {("method_cfg", "depth"), ("train", "lr"), ("train", "epochs")}
    assert (xd["method_cfg"]["depth"], xd["train"]["lr"], xd["train"]["epochs"]) == (3, 0.0026, 2)
    assert xd["train"]["batch_size"] == 4
    assert XD_PRESETS == [("maple-xd" if p == "maple" else p) for p in B2N_PRESETS]
