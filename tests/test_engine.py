import json
import re

import pytest
import torch
from safetensors.torch import load_file

from robustprompt.cli import main
from robustprompt.config import build_run_config
from robustprompt.engine import train
from robustprompt.engine.runs import evaluate_run, load_run

from helpers import TINY_ARGS, make_imagefolder


def _cfg(tree, **over):
    values = {"method": "coop", "seed": 1,
              "model": {"name": "robustprompt-test", "pretrained": "random"},
              "data": {"dataset": "imagefolder", "root": str(tree), "shots": 4, "split": "all"},
              "train": {"epochs": 3, "batch_size": 4, "eval_batch_size": 16},
              "method_cfg": {"n_ctx": 4}}
    for k, v in over.items():
        values.setdefault(k, {}).update(v) if isinstance(v, dict) else values.__setitem__(k, v)
    return build_run_config("coop", values=values)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("data") / "colours")


def test_cli_train_writes_complete_run_and_eval_reproduces(tree, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--method", "coop", "--dataset", "imagefolder", "--data-root", str(tree),
                 "--out", str(out), *TINY_ARGS]) == 0
    for name in ("config.yaml", "prompt.safetensors", "results.json", "log.txt"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["backbone"]["model"] == "robustprompt-test"
    assert {"robustprompt", "torch", "open_clip"} <= set(results["versions"])
    (stored,) = [r for r in results["evaluations"] if r["metric"] == "clean_acc"]
    prompt = load_file(str(out / "prompt.safetensors"))
    assert list(prompt) == ["prompt.ctx"] and prompt["prompt.ctx"].shape == (4, 32)
    capsys.readouterr()
    assert main(["eval", str(out), "--no-write"]) == 0
    printed = capsys.readouterr().out
    assert f"clean_acc: {stored['value']:.4f}" in printed
    again = evaluate_run(out, write=False)
    assert again[0]["value"] == stored["value"] and again[0]["n"] == stored["n"]


def test_resume_after_interruption_matches_uninterrupted(tree, tmp_path):
    cfg = _cfg(tree)
    full = train(cfg, tmp_path / "full")
    part = tmp_path / "part"
    assert train(cfg, part, stop_after_epochs=1) == {}
    assert not (part / "results.json").exists() and (part / "checkpoint").is_dir()
    resumed = train(cfg, part, resume=True)
    a = load_file(str(tmp_path / "full" / "prompt.safetensors"))
    b = load_file(str(part / "prompt.safetensors"))
    assert torch.equal(a["prompt.ctx"], b["prompt.ctx"])
    assert full["evaluations"] == resumed["evaluations"]
    assert full["train"]["final_loss"] == resumed["train"]["final_loss"]


def test_same_seed_bit_identical_other_seed_differs(tree, tmp_path):
    train(_cfg(tree), tmp_path / "a")
    train(_cfg(tree), tmp_path / "b")
    train(_cfg(tree, seed=2), tmp_path / "c")
    a, b, c = (load_file(str(tmp_path / n / "prompt.safetensors"))["prompt.ctx"] for n in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_load_run_restores_logits(tree, tmp_path):
    train(_cfg(tree), tmp_path / "r")
    cfg, method = load_run(tmp_path / "r")
    cfg2, method2 = load_run(tmp_path / "r")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(method(x, method.class_context()), method2(x, method2.class_context()))


def test_zeroshot_train_records_accuracy_without_learning(tree, tmp_path):
    res = train(build_run_config("zeroshot", values={"model": {"name": "robustprompt-test", "pretrained": "random"},
                                                     "data": {"dataset": "imagefolder", "root": str(tree),
                                                              "shots": 4, "split": "all"}}),
                tmp_path / "zs")
    assert res["evaluations"][0]["metric"] == "clean_acc"
    assert not (tmp_path / "zs" / "checkpoint").exists()


def test_eval_noise_and_attacks_records(tree, tmp_path, capsys):
    run = tmp_path / "r"
    train(_cfg(tree), run)
    assert main(["eval", str(run), "--noise", "gaussian:0.05,typo:0.2", "--attack", "pgd", "--eps", "0,8/255",
                 "--steps", "3"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    by = {(r["metric"], r.get("noise"), r.get("eps")): r for r in results["evaluations"]}
    clean = by[("clean_acc", None, None)]["value"]
    assert ("noise_acc", "gaussian:0.05", None) in by and ("noise_acc", "typo:0.2", None) in by
    pgd0, pgd8 = by[("pgd_acc", None, "0")], by[("pgd_acc", None, "8/255")]
    assert pgd0["value"] == clean  # eps = 0 is clean accuracy
    assert pgd8["value"] <= clean and pgd8["eps_value"] == pytest.approx(8 / 255) and pgd8["steps"] == 3
    assert pgd8["implementation"]["name"] == "robustprompt.attacks"
    assert "pgd_acc eps=8/255 steps=3" in printed
    for rec in (pgd0, pgd8):  # the attack sanity checks are recorded with every attacked evaluation
        checks = rec["sanity"]["checks"]
        assert checks["eps_zero_is_clean"] and checks["gradients_nonzero"] and checks["logits_not_probabilities"]
        assert checks["square_not_better"] is None  # no AutoAttack ran
        assert checks["transfer_not_better"] is not None  # zero-shot CLIP on the same backbone is the source
        assert "zero_at_large_eps" in checks
        assert rec["sanity"]["passed"] == all(v for v in checks.values() if v is not None)
    assert "sanity" not in by[("noise_acc", "gaussian:0.05", None)]


@pytest.mark.slow
def test_eval_autoattack_on_subset(tree, tmp_path, monkeypatch, capsys):
    import robustprompt.engine.progress as prog
    from robustprompt.engine.evaluate import EvalSpec

    run = tmp_path / "r"
    train(_cfg(tree), run)
    monkeypatch.setattr(prog, "LINE_EVERY_S", 0.05)
    capsys.readouterr()
    (rec,) = evaluate_run(run, [EvalSpec(attack="autoattack", eps="8/255", steps=3, n_max=5)], write=False)
    assert rec["n"] == 5 and rec["metric"] == "autoattack_acc" and "broken_by" in rec["autoattack"]
    # one batch takes minutes on a real run: its progress lines name the attack running
    err = capsys.readouterr().err
    assert re.search(r"^robustprompt: autoattack_acc: 0/1 \(0%\), \d+:\d\d elapsed, attack (apgd-ce|apgd-t|fab-t|square) "
                     r"\([1-4]/4\), [0-5]/5 robust$", err, re.M), err
    assert rec["sanity"]["n_images"] == 5 and rec["sanity"]["checks"]["square_not_better"] in (True, None)


def test_adversarial_training_modes_run_and_resume_identically(tree, tmp_path):
    for mode in ("half", "full", "trades"):
        cfg = _cfg(tree, adv={"enabled": True, "eps": "8/255", "alpha": "2/255", "steps": 2, "loss": mode},
                   train={"epochs": 2})
        full = train(cfg, tmp_path / f"{mode}-full")
        train(cfg, tmp_path / f"{mode}-part", stop_after_epochs=1)
        resumed = train(cfg, tmp_path / f"{mode}-part", resume=True)
        assert full["evaluations"] == resumed["evaluations"]
        a = load_file(str(tmp_path / f"{mode}-full" / "prompt.safetensors"))
        b = load_file(str(tmp_path / f"{mode}-part" / "prompt.safetensors"))
        assert torch.equal(a["prompt.ctx"], b["prompt.ctx"])


@pytest.mark.parametrize("argv, expect", [
    (["--attack", "pgd"], "--attack needs --eps"),
    (["--eps", "1/255"], "--eps is given without --attack"),
    (["--attack", "pgd", "--eps", "2"], "eps must be in [0, 1]"),
    (["--attack", "pgd", "--eps", "abc"], "eps"),
    (["--noise", "snow:3"], "unknown noise"),
])
def test_eval_bad_perturbation_arguments(tree, tmp_path, capsys, argv, expect):
    run = tmp_path / "r"
    train(_cfg(tree), run)
    before = (run / "results.json").read_text()
    capsys.readouterr()
    assert main(["eval", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert (run / "results.json").read_text() == before


def test_eval_saves_each_record_as_it_is_measured(tree, tmp_path, monkeypatch):
    """A list of evaluations interrupted part-way keeps the ones that finished (long attacks)."""
    from robustprompt.engine import runs as runs_mod
    from robustprompt.engine.evaluate import EvalSpec

    run = tmp_path / "r"
    train(_cfg(tree), run)
    real = runs_mod.evaluate
    calls = []

    def second_one_dies(method, data, spec, **kw):
        calls.append(spec)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(method, data, spec, **kw)

    monkeypatch.setattr(runs_mod, "evaluate", second_one_dies)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(run, [EvalSpec(noise="gaussian:0.05"), EvalSpec(noise="blur:1")])
    noises = [r.get("noise") for r in json.loads((run / "results.json").read_text())["evaluations"]]
    assert "gaussian:0.05" in noises and "blur:1" not in noises


def test_interrupted_attack_evaluation_resumes_without_redoing_batches(tree, tmp_path, monkeypatch, capsys):
    import robustprompt.attacks as attacks
    from robustprompt.engine.evaluate import EvalSpec

    run = tmp_path / "r"
    train(_cfg(tree), run)
    spec = [EvalSpec(attack="pgd", eps="8/255", steps=3, n_max=12)]
    reference = tmp_path / "ref"
    import shutil

    shutil.copytree(run, reference)
    (expected,) = evaluate_run(reference, spec, batch_size=4)
    real, calls = attacks.pgd, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(attacks, "pgd", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(run, spec, batch_size=4)
    assert len(list((run / ".partial").iterdir())) == 1  # two finished batches kept
    calls.clear()
    capsys.readouterr()
    (resumed,) = evaluate_run(run, spec, batch_size=4)
    assert len(calls) == 1  # only the third batch was attacked again
    assert "pgd_acc: 2 of 3 batches done before" in capsys.readouterr().err
    assert resumed == expected and len(resumed["correct"]) == 12
    assert not (run / ".partial").exists()


@pytest.mark.slow
def test_autoattack_evaluation_interrupted_mid_batch_resumes_at_the_unfinished_attack(tree, tmp_path, monkeypatch):
    """One AutoAttack batch of a real run takes most of an hour: after each finished attack its state is
    kept, so an interruption during APGD-T reruns neither APGD-CE nor anything finished, and the record
    is the uninterrupted one."""
    import shutil

    import robustprompt.attacks.auto_attack as aa
    from robustprompt.engine.evaluate import EvalSpec

    run = tmp_path / "r"
    train(_cfg(tree), run)
    shutil.copytree(run, tmp_path / "ref")
    spec = [EvalSpec(attack="autoattack", eps="1/255", steps=3, n_max=6)]
    (expected,) = evaluate_run(tmp_path / "ref", spec, batch_size=6)
    real, calls, once = aa._run_own, [], {"interrupt": True}

    def interrupted(name, *a, **k):
        calls.append(name)
        if name == "apgd-t" and once.pop("interrupt", False):
            raise KeyboardInterrupt
        return real(name, *a, **k)

    monkeypatch.setattr(aa, "_run_own", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(run, spec, batch_size=6)
    assert [f.name for f in (run / ".partial").rglob("*") if f.is_file()] == ["0.stages.safetensors"]
    calls.clear()
    (resumed,) = evaluate_run(run, spec, batch_size=6)
    assert calls[0] == "apgd-t" and "apgd-ce" not in calls
    assert resumed == expected
    assert not (run / ".partial").exists()


def test_sharded_attack_evaluation_assembles_the_same_record(tree, tmp_path, capsys):
    import shutil

    run = tmp_path / "r"
    train(_cfg(tree), run)
    shutil.copytree(run, tmp_path / "ref")
    args = ["--attack", "pgd", "--eps", "8/255", "--steps", "3", "--n-max", "12", "--batch-size", "4"]
    assert main(["eval", str(tmp_path / "ref"), *args]) == 0
    expected = [r for r in json.loads((tmp_path / "ref" / "results.json").read_text())["evaluations"]
                if r["metric"] == "pgd_acc"]
    before = (run / "results.json").read_text()
    for k in (0, 1):  # one shard names the run's own dataset, the other leaves it implicit: same batches
        named = ["--dataset", "imagefolder", "--data-root", str(tree)] if k else []
        assert main(["eval", str(run), *args, *named, "--shard", f"{k}/2"]) == 0
        assert (run / "results.json").read_text() == before  # shards write batches, not records
    assert len(list((run / ".partial").rglob("*.json"))) == 3
    assert main(["eval", str(run), *args]) == 0
    got = [r for r in json.loads((run / "results.json").read_text())["evaluations"] if r["metric"] == "pgd_acc"]
    assert got == expected and not (run / ".partial").exists()
    from helpers import fails

    fails(capsys, ["eval", str(run), "--shard", "2/2", *args], "K must be in 0 .. N-1")
    fails(capsys, ["eval", str(run), "--shard", "0/2"], "attacked evaluations only")


def test_named_loss_terms_are_logged_per_epoch_and_a_diverging_loss_stops_training(tree, tmp_path, monkeypatch):
    """The loss terms are summed on the device and read once per log interval: each epoch's log line
    carries their means; a non-finite loss is a one-line error."""
    out = tmp_path / "kg"
    train(_cfg(tree, method="kgcoop", train={"epochs": 1}), out)
    line = [ln for ln in (out / "log.txt").read_text().splitlines() if "epoch 1/1" in ln][0]
    assert "(ce " in line and " kg " in line
    from robustprompt.errors import RobustPromptError
    from robustprompt.methods.base import Method

    def diverging(original):
        def loss(self, *args):
            value, stats = original(self, *args)
            return value * float("nan"), stats
        return loss

    for name in ("loss", "loss_from_features"):  # cached image features or not
        monkeypatch.setattr(Method, name, diverging(getattr(Method, name)))
    with pytest.raises(RobustPromptError, match="loss became nan in epoch 1"):
        train(_cfg(tree, train={"epochs": 1}), tmp_path / "nan")
