"""Reliability: kill and resume, the run-directory lock, no unpickling, and bad input (one line, exit 2).

The kill tests start `python -m robustprompt train` with the tiny random model, wait for its first
checkpoint, send SIGTERM or SIGKILL, resume with `--resume`, and compare with an uninterrupted run:
the prompt tensors must be bit-identical and the metrics equal. (Same seed, bit-identical results
is tested in test_engine.py.)
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustprompt.cli import build_parser, main

from helpers import TINY_ARGS, make_imagefolder, fails

SRC = Path(__file__).resolve().parents[1] / "src" / "robustprompt"
EPOCHS = "8"  # long enough (seconds) to be killed between checkpoints, short enough for CI


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("data") / "colours")


def _argv(tree, out):
    return ["train", "--dataset", "imagefolder", "--data-root", str(tree), "--out", str(out), *TINY_ARGS,
            "--epochs", EPOCHS]


@pytest.fixture(scope="module")
def reference(tree, tmp_path_factory):
    """An uninterrupted run, in this process."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(_argv(tree, out)) == 0
    return out


def _env():
    env = dict(os.environ)
    # the same intra-op thread count as this process (conftest), so float reductions match bit for bit
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(torch.get_num_threads())
    env.pop("PYTHONHASHSEED", None)
    return env


def _start_training(tree, out) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "robustprompt", *_argv(tree, out)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before {path.name} appeared: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {path} after {timeout} s")
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_run_resumes_to_identical_results(tree, reference, tmp_path, sig):
    from robustprompt.engine.checkpoint import load_training_state

    out = tmp_path / "run"
    proc = _start_training(tree, out)
    try:
        _wait_for(out / "checkpoint" / "state.safetensors", proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig == signal.SIGTERM:  # a clean stop: one line, temporary files removed, the lock released
        assert proc.returncode == 130, stderr
        assert stderr.strip().splitlines()[-1] == "robustprompt: interrupted", stderr
        assert not list(out.rglob("*.tmp"))
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists() and not (out / "prompt.safetensors").exists(), "not killed mid-run"
    done, _, _, _ = load_training_state(out / "checkpoint")
    assert 1 <= done < int(EPOCHS)

    assert main(["train", "--out", str(out), "--resume"]) == 0
    a, b = load_file(str(reference / "prompt.safetensors")), load_file(str(out / "prompt.safetensors"))
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (reference, out))
    assert ra["evaluations"] == rb["evaluations"]
    assert ra["train"]["final_loss"] == rb["train"]["final_loss"]
    assert f"resumed after epoch {done}" in (out / "log.txt").read_text()


def test_lock_stops_a_second_process(reference, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom robustprompt.engine.rundir import RunDir\n"
         "with RunDir(sys.argv[1]).lock():\n    print('locked', flush=True)\n    time.sleep(300)\n", str(run)],
        stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (run / "results.json").read_text()
        fails(capsys, ["eval", str(run), "--split", "all"], "another robustprompt process is writing")
        fails(capsys, ["train", "--out", str(run), "--resume"], "another robustprompt process is writing")
        assert (run / "results.json").read_text() == before
    finally:
        holder.kill()
        holder.wait()
    assert main(["eval", str(run), "--split", "all"]) == 0  # the lock goes with its process


# ------------------------------------------------------------------ nothing is ever unpickled
def _calls(text: str, name_re: str):
    """(match, argument text) of each call `name(...)`, parentheses matched."""
    for m in re.finditer(name_re + r"\s*\(", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield m.group(0), text[m.end():i - 1]


def _offences(text: str, where) -> list[str]:
    offences = []
    for pat in (r"^\s*(import|from)\s+(pickle|cPickle|_pickle|dill|joblib|shelve|cloudpickle)\b",
                r"\bpickle\.loads?\(", r"\bmarshal\.loads?\(", r"\byaml\.(unsafe_load|load_all|full_load)\(",
                r"\bLoader\s*=\s*yaml\.(Unsafe|Full)?Loader", r"\btorch\.jit\.load\(", r"read_pickle\("):
        for m in re.finditer(pat, text, flags=re.M):
            offences.append(f"{where}: {m.group(0).strip()}")
    for call, args in _calls(text, r"\btorch\.load"):
        if not re.search(r"weights_only\s*=\s*True", args):
            offences.append(f"{where}: torch.load without weights_only=True")
    if re.search(r"from open_clip[\w.]* import[^\n]*\bload_checkpoint\b|open_clip\.load_checkpoint", text):
        for call, args in _calls(text, r"(?<!def )(?<![\w.])(open_clip\.)?load_checkpoint"):  # calls torch.load
            if not re.search(r"weights_only\s*=\s*True", args):
                offences.append(f"{where}: open_clip's load_checkpoint without weights_only=True")
    for call, args in _calls(text, r"\b(np|numpy)\.load"):
        if re.search(r"allow_pickle\s*=\s*True", args):
            offences.append(f"{where}: np.load with allow_pickle=True")
    for call, args in _calls(text, r"\byaml\.load"):
        offences.append(f"{where}: yaml.load (use yaml.safe_load)")
    return offences


def test_nothing_is_unpickled():
    bad = ("import pickle\nx = torch.load(f, map_location='cpu')\ny = np.load(p, allow_pickle=True)\n"
           "z = yaml.load(t)\nfrom open_clip import load_checkpoint\nload_checkpoint(m, p)\n")
    assert len(_offences(bad, "sample")) == 5  # the checker itself sees each kind
    assert not _offences("torch.load(f,\n  weights_only=True)\nyaml.safe_load(t)\nnp.load(p)\n", "ok")
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    # The one exception: the TorchScript archive reader, whose Unpickler resolves no global outside
    # a fixed list (test_checkpoints.py: a pickled os.system is refused and never runs).
    restricted = SRC / "backbone" / "checkpoints.py"
    text = restricted.read_text()
    assert "def find_class" in text and 'raise pickle.UnpicklingError(f"refusing pickled global' in text
    assert _offences(text, "x") == ["x: import pickle"]
    offences = [o for path in files if path != restricted
                for o in _offences(path.read_text(), path.relative_to(SRC.parent))]
    assert not offences, offences


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written
def _train(tree, out, *extra):
    return ["train", "--dataset", "imagefolder", "--data-root", str(tree), "--out", str(out), *TINY_ARGS, *extra]


@pytest.mark.parametrize("yaml_text, expect", [
    ("train:\n  lr: .nan\n", "train.lr: must be finite"),
    ("train:\n  weight_decay: .inf\n", "train.weight_decay: must be finite"),
    ("train:\n  weight_decay: -0.1\n", "weight_decay must be >= 0"),
    ("seed: -3\n", "seed must be >= 0"),
    ("data:\n  train_crop_scale: -0.5\n", "train_crop_scale must be in (0, 1]"),
    ("- a list\n- not a mapping\n", "the top level must be a mapping"),
], ids=["nan", "inf", "negative-weight-decay", "negative-seed", "negative-crop-scale", "list"])
def test_nan_and_negative_values_in_a_yaml_preset(tree, tmp_path, capsys, yaml_text, expect):
    preset = tmp_path / "preset.yaml"
    preset.write_text("method: coop\n" + yaml_text if not yaml_text.startswith("-") else yaml_text)
    fails(capsys, _train(tree, tmp_path / "run", "--preset", str(preset)), expect)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, expect", [
    ("train.epochs=two", "train.epochs: expected an integer, got 'two'"),
    ("train.epochs=1.5", "train.epochs: expected an integer, got 1.5"),
    ("train.batch_size=true", "train.batch_size: expected an integer, got True"),
    ("model=3", "model: expected a mapping, got 3"),
    ("data.split=[base]", "data.split: ['base'] is not one of"),
    ("train.grad_clip=abc", "train.grad_clip: expected a number"),
])
def test_wrong_types_in_set(tree, tmp_path, capsys, override, expect):
    fails(capsys, _train(tree, tmp_path / "run", "--set", override), expect)
    assert not (tmp_path / "run").exists()


def test_unwritable_output_directory(tree, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    fails(capsys, _train(tree, "/dev/null/run"), "cannot create run directory /dev/null/run")
    fails(capsys, _train(tree, afile / "run"), "cannot create run directory")
    fails(capsys, _train(tree, afile), "a file of that name exists")
    assert afile.read_text() == "keep me"


def test_resume_with_another_config(reference, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    fails(capsys, ["train", "--out", str(run), "--resume", "--set", "train.lr=0.5"],
           "--resume with a config that differs from the run's")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def _eval_has_attacks() -> bool:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return "--attack" in sub.choices["eval"]._option_string_actions


@pytest.mark.skipif(not _eval_has_attacks(), reason="`eval --attack` is not there yet")
@pytest.mark.parametrize("eps", ["-1/255", "300/255", "2", "nan", "4/0", "abc"])
def test_eps_out_of_range(reference, tmp_path, capsys, eps):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = (run / "results.json").read_text()
    fails(capsys, ["eval", str(run), "--attack", "pgd", f"--eps={eps}"], "eps")
    assert (run / "results.json").read_text() == before


def test_atomic_path_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    from robustprompt.atomic import atomic_path, atomic_write_text

    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "one")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "one" and sorted(p.name for p in target.parent.iterdir()) == ["f.txt"]
