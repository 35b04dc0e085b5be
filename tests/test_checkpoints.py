"""Users' weights: activation read from the file, TorchScript archives read without running them,
the open_clip tag and hf-hub: paths offline from a pre-filled cache, ResNet image towers."""

import json
import os
import pickle
import warnings
import zipfile

import pytest
import torch

from robustprompt.backbone import load_backbone
from robustprompt.backbone.checkpoints import openai_release_hashes, read_weights
from robustprompt.backbone.loading import register_project_configs
from robustprompt.errors import ModelError


def _reference(quick_gelu: bool):
    import open_clip

    register_project_configs()
    torch.manual_seed(1)
    return open_clip.create_model("robustprompt-test", force_quick_gelu=quick_gelu).eval()


def _same_weights(backbone, model) -> bool:
    a, b = backbone.clip.state_dict(), model.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def openai_style_archive(tmp_path_factory):
    """A TorchScript archive of a QuickGELU CLIP, made the way OpenAI's released .pt files are (traced)."""
    model = _reference(quick_gelu=True)
    path = tmp_path_factory.mktemp("jit") / "clip.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(model, {"encode_image": torch.rand(1, 3, 16, 16)}, check_trace=False)
        torch.jit.save(traced, str(path))
    return path, model


def test_torchscript_archive_loads_with_quick_gelu_and_a_warning(openai_style_archive, capsys):
    path, model = openai_style_archive
    bb = load_backbone("robustprompt-test", str(path))
    assert bb.identity.quick_gelu is True
    assert _same_weights(bb, model)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(bb.encode_image(x), model.encode_image(bb.normalize(x)), atol=1e-5)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "QuickGELU" in err[0] and "TorchScript" in err[0]
    # told the same activation explicitly: no warning
    capsys.readouterr()
    assert load_backbone("robustprompt-test", str(path), quick_gelu=True).identity.quick_gelu is True
    assert capsys.readouterr().err == ""


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_torchscript_reader_refuses_other_pickled_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pt"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(_Payload(), protocol=2))
        z.writestr("evil/code/__torch__.py", "")
    with pytest.raises(ModelError, match="refusing pickled global"):
        load_backbone("robustprompt-test", str(bad))
    assert not (tmp_path / "PWNED").exists()


def test_state_dict_with_openai_keys_is_quick_gelu(tmp_path, capsys):
    model = _reference(quick_gelu=True)
    state = {**model.state_dict(), "input_resolution": torch.tensor(16), "context_length": torch.tensor(16),
             "vocab_size": torch.tensor(49408)}
    path = tmp_path / "openai_state.pt"
    torch.save(state, path)
    bb = load_backbone("robustprompt-test", str(path))
    assert bb.identity.quick_gelu is True and _same_weights(bb, model)
    assert "OpenAI's extra keys" in capsys.readouterr().err


def test_known_openai_release_hash_is_quick_gelu(tmp_path):
    model = _reference(quick_gelu=False)
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)
    vit_b16 = "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"  # in OpenAI's release URL
    assert vit_b16 in openai_release_hashes()
    assert read_weights(path, vit_b16).quick_gelu is True
    assert read_weights(path, "0" * 64).quick_gelu is None  # nothing says: the model name decides


def test_plain_state_dict_follows_the_model_name_silently(tmp_path, capsys):
    model = _reference(quick_gelu=False)
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)
    capsys.readouterr()
    bb = load_backbone("robustprompt-test", str(path))
    assert bb.identity.quick_gelu is False and _same_weights(bb, model)
    assert capsys.readouterr().err == ""


def test_safetensors_metadata_sets_the_activation(tmp_path, capsys):
    from safetensors.torch import save_file

    model = _reference(quick_gelu=True)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={"quick_gelu": "true"})
    assert load_backbone("robustprompt-test", str(path)).identity.quick_gelu is True
    assert "metadata says quick_gelu=true" in capsys.readouterr().err


def _fill_hf_cache(cache, repo: str, files: dict) -> None:
    """The Hugging Face hub cache layout: models--ORG--NAME/{refs/main, snapshots/REV/FILE}."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    rev = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True)
    for name, write in files.items():
        write(snap / name)


@pytest.fixture
def offline_hub(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_pretrained_tag_loads_offline_from_a_filled_cache(tmp_path, monkeypatch, offline_hub):
    from open_clip.pretrained import _PRETRAINED, _pcfg
    from safetensors.torch import save_file

    model = _reference(quick_gelu=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    _fill_hf_cache(tmp_path, "robustprompt/test-tag", {"open_clip_model.safetensors": lambda p: save_file(state, str(p))})
    # a tag as open_clip registers its own (hub id + quick_gelu), for the tiny test architecture
    monkeypatch.setitem(_PRETRAINED, "robustprompt-test",
                        {"cachetest": _pcfg(hf_hub="robustprompt/test-tag/", quick_gelu=True)})
    bb = load_backbone("robustprompt-test", "cachetest", cache_dir=str(tmp_path))
    assert bb.identity.pretrained == "cachetest" and bb.identity.quick_gelu is True
    assert _same_weights(bb, model)
    with pytest.raises(ModelError, match="could not create"):
        load_backbone("robustprompt-test", "cachetest", cache_dir=str(tmp_path / "empty"))


def test_hf_hub_model_loads_offline_from_a_filled_cache(tmp_path, offline_hub):
    import open_clip
    from safetensors.torch import save_file

    model = _reference(quick_gelu=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    cfg = {"model_cfg": {**open_clip.get_model_config("robustprompt-test"), "quick_gelu": True}, "preprocess_cfg": {}}
    _fill_hf_cache(tmp_path, "robustprompt/test-hub", {
        "open_clip_config.json": lambda p: p.write_text(json.dumps(cfg)),
        "open_clip_model.safetensors": lambda p: save_file(state, str(p)),
    })
    bb = load_backbone("hf-hub:robustprompt/test-hub", cache_dir=str(tmp_path))
    assert bb.identity.quick_gelu is True and _same_weights(bb, model)
    with pytest.raises(ModelError, match="could not create hf-hub:robustprompt/missing"):
        load_backbone("hf-hub:robustprompt/missing", cache_dir=str(tmp_path))
    with pytest.raises(ModelError, match="brings its own weights"):
        load_backbone("hf-hub:robustprompt/test-hub", "openai", cache_dir=str(tmp_path))


# ---- ResNet image towers


def test_resnet_tower_encodes_like_open_clip():
    bb = load_backbone("robustprompt-test-rn", "random")
    assert (bb.image_tower, bb.vision_layers, bb.identity.image_tower) == ("resnet", 0, "resnet")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(bb.encode_image(x), bb.clip.encode_image(bb.normalize(x)))
    from robustprompt.backbone.edits import LayerEdit, TowerEdits

    with pytest.raises(ValueError, match="0 blocks"):
        bb.vision(x, TowerEdits(layers={0: LayerEdit("insert", torch.zeros(2, 8))}))


def test_text_side_methods_train_on_a_resnet_and_image_prompts_refuse_it(tmp_path, capsys):
    from helpers import fails

    from robustprompt.cli import main

    args = ["--model", "robustprompt-test-rn", "--pretrained", "random", "--dataset", "shapes", "--set",
            "train.epochs=1", "--shots", "2"]
    for method, extra in (("zeroshot", []), ("coop", ["--set", "method_cfg.n_ctx=4"]),
                          ("kgcoop", ["--set", "method_cfg.n_ctx=4"]),
                          ("advpt", ["--set", "method_cfg.n_ctx=4", "--set", "method_cfg.bank_steps=2"])):
        assert main(["train", "--method", method, *args, *extra, "--out", str(tmp_path / method)]) == 0
        assert (tmp_path / method / "results.json").is_file()
    assert main(["eval", str(tmp_path / "coop"), "--split", "novel", "--attack", "pgd", "--eps", "1/255",
                 "--steps", "2", "--n-max", "8"]) == 0
    for method in ("maple", "ivlp", "anprompt", "naptuning", "advivlp", "advmaple"):
        fails(capsys, ["train", "--method", method, *args, "--out", str(tmp_path / method)],
              "supports ViT image towers only")
        assert not (tmp_path / method).exists()


def test_list_models_shows_the_methods_each_tower_supports(capsys):
    from robustprompt.cli import main

    assert main(["list", "models", "--pattern", "RN50"]) == 0
    line = capsys.readouterr().out
    assert "ResNet image tower" in line and "coop" in line and "maple" not in line
    assert main(["list", "models", "--pattern", "ViT-B-16"]) == 0
    assert "ViT image tower: all methods" in capsys.readouterr().out
