"""Pretraining of the embedded model: data stream, captions, loss, checkpoints/resume, shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustprompt.errors import CheckpointError
from robustprompt.synthetic import captions as C
from robustprompt.pretrain.config import PretrainConfig
from robustprompt.synthetic.generator import Mix, PretrainStream

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_model_name(tmp_path_factory):
    import open_clip

    d = tmp_path_factory.mktemp("cfg")
    (d / "rp-pretrain-tiny-test.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(d)
    return "rp-pretrain-tiny-test"


def tiny_cfg(name, **kw):
    base = dict(model=name, steps=4, stage2_steps=2, stage2_warmup_steps=1, batch_size=16, lr=3e-3, warmup_steps=1,
                checkpoint_every=3, log_every=1)
    base.update(kw)
    return PretrainConfig(**base)


def test_stream_is_a_function_of_seed_and_step():
    a_img, a_cap = PretrainStream(0).batch(3, 24)
    b_img, b_cap = PretrainStream(0).batch(3, 24)
    assert a_img.dtype == np.uint8 and a_img.shape == (24, 32, 32, 3)
    assert np.array_equal(a_img, b_img) and a_cap == b_cap
    c_img, c_cap = PretrainStream(1).batch(3, 24)
    d_img, d_cap = PretrainStream(0).batch(4, 24)
    assert not np.array_equal(a_img, c_img) and a_cap != c_cap
    assert not np.array_equal(a_img, d_img) and a_cap != d_cap


def test_stream_uses_fashion_mnist_train_split_only(monkeypatch):
    from robustprompt.synthetic import generator

    seen = []
    real = generator.load_fashion_mnist

    def spy(split, root=None):
        seen.append(split)
        return real(split, root)

    monkeypatch.setattr(generator, "load_fashion_mnist", spy)
    PretrainStream(0).batch(0, 8)
    assert seen == ["train"]


def test_captions_are_varied():
    caps = []
    for step in range(4):
        caps += PretrainStream(0).batch(step, 64)[1]
    assert len(set(caps)) >= 0.9 * len(caps)
    nouns = [n for ns in C.FASHION_NOUNS for n in ns]
    assert sum(any(n in c for n in nouns) for c in caps) > 60  # Fashion-MNIST captions
    assert sum(any(s in c for s in C.SHAPE_NAMES) for c in caps) > 40  # shapes
    assert any("letter" in c or "digit" in c or "number" in c for c in caps)  # glyphs
    assert sum(any(w in c for w in C.COLOURS[k][1]) for k in C.COLOURS for c in caps) > 100  # colours named
    used = {t for t in C.TEMPLATES for c in caps if c.startswith(t.split("{}")[0]) and t.split("{}")[0]}
    assert len(used) >= 20


def test_fashion_captions_name_the_tint():
    rng = np.random.default_rng(0)
    caps = [C.fashion_caption(rng, 7, "red") for _ in range(200)]
    assert sum("red" in c for c in caps) > 100
    assert len(set(caps)) > 50
    assert all(any(n in c for n in C.FASHION_NOUNS[7]) for c in caps)


def test_hard_shape_groups_differ_only_in_shape():
    imgs, caps = PretrainStream(0, Mix(fashion=0.0, glyphs=0.0, hard_shapes=1.0)).batch(0, 24)
    group = caps[:len(C.SHAPE_NAMES)]
    assert all(any(w in c for s in C.SHAPES.values() for w in s) for c in group)  # every caption names its shape
    colours = [(imgs[i].reshape(-1, 3).max(0) > 100) for i in range(len(C.SHAPE_NAMES))]
    assert all((c == colours[0]).all() for c in colours)  # one colour per group


def test_backdrop_composites_objects_on_flat_grey():
    mix = Mix(fashion=0.0, glyphs=0.0, two_objects=0.0, backdrop=1.0, backdrop_max=0.3, backdrop_contrast=0.6)
    imgs, _ = PretrainStream(0, mix).batch(0, 64)
    plain, _ = PretrainStream(0, Mix(fashion=0.0, glyphs=0.0, two_objects=0.0)).batch(0, 64)
    corners = imgs[:, :2, :2].reshape(64, -1).astype(int)
    assert (corners.max(1) - corners.min(1) <= 1).all()  # flat backdrop, no noise
    assert corners.max() <= 0.3 * 255 + 1 and corners.mean() > 10
    assert (plain[:, :2, :2] == 0).all()  # without the option: black
    # a channel of the object colour below the backdrop level comes out darker than the backdrop
    darker = [(im.reshape(-1, 3).astype(int).min(0) < c[0] - 5).any() for im, c in zip(imgs, corners)]
    assert sum(darker) > 5


def test_noise_and_levels_stay_in_range_and_are_deterministic():
    mix = Mix(fashion=0.0, noise=1.0, noise_std=0.05, levels=1.0, levels_low=0.15, levels_high=0.65)
    a, caps_a = PretrainStream(0, mix).batch(2, 32)
    b, caps_b = PretrainStream(0, mix).batch(2, 32)
    assert (a == b).all() and caps_a == caps_b
    corners = a[:, :3, :3].reshape(32, -1).astype(float)
    assert corners.std(1).mean() > 1  # noisy backgrounds
    assert corners.mean() < 0.15 * 255 + 20


def test_token_cache_stays_bounded_and_correct():
    from robustprompt.pretrain.train import Tokens

    tokens = Tokens("robustprompt-tiny", max_size=5)
    first = tokens(["a red star", "a blue ring", "a dress", "a bag"])
    second = tokens(["a dress", "a coat", "a sandal", "a shirt"])  # overflows: the cache is cleared first
    assert len(tokens.cache) <= 5
    assert torch.equal(second[0], first[2]) and torch.equal(second, tokens.tok(["a dress", "a coat", "a sandal", "a shirt"]))


def test_schedule_has_warmup_cosine_and_stage2():
    from robustprompt.pretrain.train import lr_at

    cfg = PretrainConfig(steps=100, warmup_steps=10, stage2_steps=20, stage2_warmup_steps=5)
    assert lr_at(cfg, 0) < lr_at(cfg, 9) == pytest.approx(cfg.lr)
    assert lr_at(cfg, 99) < 0.05 * cfg.lr
    assert lr_at(cfg, 104) == pytest.approx(cfg.stage2_lr) and lr_at(cfg, 119) < 0.1 * cfg.stage2_lr
    assert cfg.total_steps == 120


def test_a_few_steps_lower_the_loss(tiny_model_name):
    from robustprompt.pretrain.evaluate import to_model_input
    from robustprompt.pretrain.model import create_model
    from robustprompt.pretrain.train import Tokens, clip_loss, make_optimizer

    cfg = tiny_cfg(tiny_model_name)
    model = create_model(tiny_model_name, seed=0)
    opt = make_optimizer(model, cfg)
    images, caps = PretrainStream(0, Mix(fashion=0.0)).batch(0, 16)
    x, t = to_model_input(images, model), Tokens(tiny_model_name)(caps)
    losses = []
    for _ in range(8):
        loss = clip_loss(*model(x, t)[:3])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.2


def test_resume_gives_the_same_state(tiny_model_name, tmp_path):
    from safetensors.torch import load_file

    from robustprompt.pretrain.train import pretrain

    cfg = tiny_cfg(tiny_model_name)
    pretrain(cfg, tmp_path / "straight", progress=False, evaluate=False)
    pretrain(cfg, tmp_path / "split", progress=False, evaluate=False, max_steps_this_run=3)
    assert json.loads((tmp_path / "split" / "checkpoint.json").read_text())["step"] == 3
    with pytest.raises(CheckpointError):  # a second fresh run into the same folder is refused
        pretrain(cfg, tmp_path / "split", progress=False, evaluate=False)
    with pytest.raises(CheckpointError):  # resuming with another config is refused
        pretrain(tiny_cfg(tiny_model_name, lr=1e-3), tmp_path / "split", resume=True, progress=False, evaluate=False)
    pretrain(cfg, tmp_path / "split", resume=True, progress=False, evaluate=False)
    a = load_file(str(tmp_path / "straight" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoint.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_export_is_fp16_open_clip_state_dict(tiny_model_name, tmp_path):
    from safetensors.torch import load_file

    from robustprompt.pretrain.model import create_model, load_weights
    from robustprompt.pretrain.train import pretrain

    cfg = tiny_cfg(tiny_model_name, steps=2, stage2_steps=0, checkpoint_every=2)
    meta = pretrain(cfg, tmp_path, progress=False, evaluate=False, command="test")
    path = tmp_path / f"{tiny_model_name}.safetensors"
    state = load_file(str(path))
    model = create_model(tiny_model_name)
    assert set(state) == set(model.state_dict()) and all(v.dtype == torch.float16 for v in state.values())
    load_weights(model, path)  # strict
    saved = json.loads(path.with_suffix(".json").read_text())
    for key in ("config", "seed", "command", "steps", "wall_time_s", "data_sources"):
        assert key in saved
    assert saved["steps"] == meta["steps"] == 2
    assert "t10k" in saved["data_sources"]["fashion_mnist"]["split"]  # says it was never used


def test_cli_help_and_config(capsys):
    from robustprompt.cli import main

    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "Fashion-MNIST" in out
    assert main(["pretrain", "--out", "unused", "--steps", "700", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 700


def test_shipped_weights_load_strictly():
    from safetensors.torch import load_file

    from robustprompt.pretrain.model import EMBEDDED_MODEL, create_model, embedded_weights_path, load_weights

    path = embedded_weights_path()
    assert path.is_file(), f"shipped weights missing: {path}"
    assert path.stat().st_size <= 25_000_000
    assert all(v.dtype == torch.float16 for v in load_file(str(path)).values())
    model = load_weights(create_model(EMBEDDED_MODEL), path)
    assert model.visual.image_size == (32, 32) or model.visual.image_size == 32 or 32 in tuple(model.visual.image_size)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["architecture"] == EMBEDDED_MODEL
    assert meta["steps"] == meta["config"]["steps"] + meta["config"].get("stage2_steps", 0)
    assert meta["quality"]["fashion-mnist-clean"]["accuracy"] > 0
    # the defaults are the shipped recipe; fields added since (the emoji world) default to off
    defaults = PretrainConfig().to_dict()
    assert {k: defaults[k] for k in meta["config"]} == meta["config"]
    assert {k: defaults[k] for k in set(defaults) - set(meta["config"])} == {"world": 0.0}


def test_shipped_small_weights_load_strictly_and_record_their_recipe():
    from safetensors.torch import load_file

    from robustprompt.pretrain.config import load_config
    from robustprompt.pretrain.model import create_model, embedded_weights_path, load_weights

    path = embedded_weights_path("robustprompt-small")
    assert path.is_file() and path.stat().st_size <= 100_000_000
    assert all(v.dtype == torch.float16 for v in load_file(str(path)).values())
    model = load_weights(create_model("robustprompt-small"), path)
    assert len(model.visual.transformer.resblocks) == 12 and len(model.transformer.resblocks) == 12
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["architecture"] == "robustprompt-small" and meta["steps"] == 6000
    assert meta["config"] == load_config(model="robustprompt-small").to_dict()  # the recorded recipe is the default
    assert set(meta["data_sources"]["emoji_world"]) == {"noto", "noto-v1", "twemoji", "emojione", "emojione-v1",
                                                        "emojione-monotone"}  # pretraining styles only
