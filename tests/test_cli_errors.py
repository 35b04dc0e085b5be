"""Bad input: one line on stderr naming the problem, exit code 2, no half-written run directory."""

import json
from contextlib import contextmanager

import pytest
from safetensors.torch import load_file, save_file

from robustprompt.cli import main

from helpers import TINY_ARGS, make_imagefolder, fails


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("data") / "colours")


@pytest.fixture(scope="module")
def trained_run(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "coop"
    assert main(["train", "--dataset", "imagefolder", "--data-root", str(tree), "--out", str(out), *TINY_ARGS]) == 0
    return out


def _train(tree, out, *extra):
    return ["train", "--dataset", "imagefolder", "--data-root", str(tree), "--out", str(out), *TINY_ARGS, *extra]


@pytest.mark.parametrize("extra, expect", [
    (["--method", "nope"], "unknown method 'nope'"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--model", "ViT-Nope"], "unknown model 'ViT-Nope'"),
    (["--set", "train.nope=1"], "unknown config key 'train.nope'"),
    (["--set", "method_cfg.nope=1"], "unknown config key 'method_cfg.nope'"),
    (["--set", "train.lr=abc"], "train.lr: expected a number"),
    (["--set", "train.lr=-1"], "lr must be > 0"),
    (["--set", "train.lr=.nan"], "train.lr: must be finite"),
    (["--set", "train.epochs=0"], "epochs must be >= 1"),
    (["--set", "train.precision=fp8"], "train.precision: 'fp8' is not one of"),
    (["--set", "noequals"], "--set expects key=value"),
    (["--preset", "/nonexistent/preset.yaml"], "config file not found"),
])
def test_bad_config_fails_before_writing(tree, tmp_path, capsys, extra, expect):
    out = tmp_path / "run"
    fails(capsys, _train(tree, out, *extra), expect)
    assert not out.exists()


def test_malformed_yaml_preset(tree, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [unclosed\n")
    fails(capsys, _train(tree, tmp_path / "run", "--preset", str(bad)), "malformed YAML")
    assert not (tmp_path / "run").exists()


def test_missing_data_root(tmp_path, capsys):
    fails(capsys, _train(tmp_path / "nowhere", tmp_path / "run"), "does not exist")
    assert not (tmp_path / "run").exists()


def test_empty_class_folder(tree, tmp_path, capsys):
    import shutil

    t = tmp_path / "t"
    shutil.copytree(tree, t)
    (t / "purple").mkdir()
    fails(capsys, _train(t, tmp_path / "run"), "purple")
    assert not (tmp_path / "run").exists()


def test_corrupt_image_mid_training_leaves_nothing(tree, tmp_path, capsys):
    import shutil

    t = tmp_path / "t"
    shutil.copytree(tree, t)
    for p in (t / "red").glob("*.png"):
        p.write_bytes(b"not a png at all")
    fails(capsys, _train(t, tmp_path / "run"), "does not decode")
    assert not (tmp_path / "run").exists()


def test_existing_run_dir_is_not_overwritten(tree, trained_run, capsys):
    before = (trained_run / "results.json").read_text()
    fails(capsys, _train(tree, trained_run), "already exists")
    assert (trained_run / "results.json").read_text() == before


def test_eval_missing_run(tmp_path, capsys):
    fails(capsys, ["eval", str(tmp_path / "none")], "run directory not found")


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_eval_truncated_checkpoint(trained_run, tmp_path, capsys):
    run = _copy_run(trained_run, tmp_path / "r")
    data = (run / "prompt.safetensors").read_bytes()
    (run / "prompt.safetensors").write_bytes(data[: len(data) // 2])
    fails(capsys, ["eval", str(run)], "not a readable safetensors file")


def test_eval_checkpoint_from_another_backbone(trained_run, tmp_path, capsys):
    from safetensors import safe_open

    run = _copy_run(trained_run, tmp_path / "r")
    path = str(run / "prompt.safetensors")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    backbone = json.loads(meta["backbone"])
    backbone["model"], backbone["vision_width"] = "ViT-B-16", 768
    meta["backbone"] = json.dumps(backbone)
    save_file(load_file(path), path, metadata=meta)
    fails(capsys, ["eval", str(run)], "trained on another backbone")


def test_eval_checkpoint_from_another_method(trained_run, tmp_path, capsys):
    run = _copy_run(trained_run, tmp_path / "r")
    cfg = (run / "config.yaml").read_text().replace("method: coop", "method: zeroshot")
    cfg = cfg.replace("method_cfg:\n  n_ctx: 16\n  ctx_init: ''\n  class_specific: false\n", "method_cfg: {}\n")
    (run / "config.yaml").write_text(cfg)
    fails(capsys, ["eval", str(run)], "holds a 'coop' prompt")


def test_eval_checkpoint_with_wrong_shapes(trained_run, tmp_path, capsys):
    run = _copy_run(trained_run, tmp_path / "r")
    path = str(run / "prompt.safetensors")
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(path)
    tensors["prompt.ctx"] = tensors["prompt.ctx"][:2].contiguous()
    save_file(tensors, path, metadata=meta)
    fails(capsys, ["eval", str(run)], "prompt.ctx has shape")


def test_resume_without_checkpoint(tmp_path, capsys, tree):
    fails(capsys, _train(tree, tmp_path / "none", "--resume"), "nothing to resume")


def test_help_explains(capsys):
    for cmd in (["--help"], ["train", "--help"], ["eval", "--help"], ["list", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(cmd)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--resume" in out


def test_list_methods_models_datasets(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "coop" in out and "zeroshot" in out
    assert main(["list", "models", "--pattern", "robustprompt-*"]) == 0
    assert "robustprompt-test" in capsys.readouterr().out
    assert main(["list", "datasets"]) == 0
    assert "imagefolder" in capsys.readouterr().out


def test_context_longer_than_text_tower(tree, tmp_path, capsys):
    fails(capsys, _train(tree, tmp_path / "run", "--set", "method_cfg.n_ctx=16"), "does not fit the text context")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device, expect", [
    ("gpu", "not a torch device: 'gpu'"),
    ("cuda:64", "cuda:64: "),  # no CUDA here, or fewer than 65 devices
])
def test_bad_device_fails_before_writing(tree, tmp_path, capsys, device, expect):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(_train(tree, out, "--device", device))
    assert e.value.code == 2 and expect in capsys.readouterr().err
    assert not out.exists()


def test_corrupt_test_image_after_training_leaves_no_run(tmp_path, capsys):
    """Training succeeds and checkpoints; the final evaluation meets a bad image: nothing is left."""
    t = tmp_path / "t"
    make_imagefolder(t / "train")
    make_imagefolder(t / "test", n_per_class=3, seed=5)
    for p in (t / "test" / "red").glob("*.png"):
        p.write_bytes(b"not a png at all")
    fails(capsys, _train(t, tmp_path / "run"), "does not decode")
    assert not (tmp_path / "run").exists()


def test_eval_only_folder_needs_one_image_per_class(trained_run, tmp_path, capsys):
    one = make_imagefolder(tmp_path / "one", n_per_class=1, seed=3)
    capsys.readouterr()
    assert main(["eval", str(_copy_run(trained_run, tmp_path / "r")), "--dataset", "imagefolder",
                 "--data-root", str(one), "--split", "all"]) == 0
    assert "(n=4)" in capsys.readouterr().out  # every image is a test image
    # training on such a folder still needs the train/val/test split
    fails(capsys, _train(one, tmp_path / "run"), "needs at least 3")


@contextmanager
def read_only(path, monkeypatch):
    """`path` read-only for real (a read-only bind mount as root, chmod otherwise); where neither is
    possible, creating files under it fails as a read-only file system does."""
    import errno
    import os
    import subprocess
    import tempfile

    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(path), str(path)], capture_output=True).returncode == 0
    if mounted and not os.access(path, os.W_OK):
        try:
            yield
        finally:
            subprocess.run(["umount", str(path)], check=True)
        return
    if mounted:
        subprocess.run(["umount", str(path)], check=True)
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and str(dir).startswith(str(path)):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    yield


def test_eval_of_a_read_only_run(trained_run, tmp_path, capsys, monkeypatch):
    run = _copy_run(trained_run, tmp_path / "r")
    before = (run / "results.json").read_text()
    with read_only(run, monkeypatch):
        fails(capsys, ["eval", str(run), "--split", "all"], "not writable; pass --out DIR")
        assert main(["eval", str(run), "--split", "all", "--out", str(tmp_path / "copy")]) == 0
        assert main(["eval", str(run), "--split", "all", "--no-write"]) == 0
    assert (run / "results.json").read_text() == before
    assert {"config.yaml", "prompt.safetensors", "results.json"} <= {p.name for p in (tmp_path / "copy").iterdir()}
    fails(capsys, ["eval", str(run), "--out", str(tmp_path / "copy")], "already exists and is not empty")
    fails(capsys, ["eval", str(run), "--out", str(tmp_path / "c2"), "--no-write"], "contradict")
