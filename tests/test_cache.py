"""train.cache_image_features: frozen image features once per run for text-only methods, same results."""

import pytest
import torch
from safetensors.torch import load_file

from robustprompt.config import build_run_config
from robustprompt.engine import build, train
from robustprompt.engine.distributed import Dist
from robustprompt.engine.feature_cache import training_feature_dataset, use_feature_cache
from robustprompt.errors import ConfigError
from robustprompt.data import ImageDataset
from robustprompt.data.transforms import eval_transform

from helpers import make_imagefolder

METHOD_CFG = {"coop": {"n_ctx": 4}, "kgcoop": {"n_ctx": 4}, "advpt": {"n_ctx": 4, "bank_steps": 2}}


def _cfg(tree, method="coop", cache="auto", augment=False, **train_over):
    values = {"method": method, "seed": 3,
              "model": {"name": "robustprompt-test", "pretrained": "random"},
              "data": {"dataset": "imagefolder", "root": str(tree), "shots": 5, "split": "all",
                       "train_augment": augment},
              "train": {"epochs": 2, "batch_size": 4, "eval_batch_size": 16, "warmup_epochs": 0, "lr": 0.01,
                        "cache_image_features": cache, **train_over},
              "method_cfg": METHOD_CFG.get(method, {})}
    return build_run_config(method if method != "ivlp" else None, values=values)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("data") / "colours", n_per_class=20)


@pytest.mark.parametrize("method", ["coop", "kgcoop", "advpt"])
def test_cached_training_equals_uncached(tree, tmp_path, method):
    cached = train(_cfg(tree, method, cache=True), tmp_path / "on")
    plain = train(_cfg(tree, method, cache=False), tmp_path / "off")
    assert "cached the training features of 20 images" in (tmp_path / "on" / "log.txt").read_text()
    assert "cached" not in (tmp_path / "off" / "log.txt").read_text()
    a = load_file(str(tmp_path / "on" / "prompt.safetensors"))
    b = load_file(str(tmp_path / "off" / "prompt.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # the image tower's rounding may differ with the batch size: equal up to float rounding
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert cached["evaluations"] == plain["evaluations"]
    assert cached["train"]["final_loss"] == pytest.approx(plain["train"]["final_loss"], rel=1e-5)


def test_cached_rows_are_the_methods_training_features(tree):
    s = build(_cfg(tree))
    data = ImageDataset(s.data.train, eval_transform(s.backbone.image_size), s.data.images)
    rows = training_feature_dataset(s.method, data, batch_size=7, precision="fp32", dist=Dist())
    assert len(rows) == len(data)
    images = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        direct = s.method.training_features(images)
    torch.testing.assert_close(rows.tensors[0], direct, rtol=1e-5, atol=1e-6)
    assert rows.tensors[1].tolist() == [d.label for d in s.data.train]


def test_auto_caches_only_when_every_epoch_sees_the_same_images(tree):
    s = build(_cfg(tree))
    assert use_feature_cache(s.cfg, s.method)
    assert not use_feature_cache(_cfg(tree, augment=True), s.method)
    assert not use_feature_cache(_cfg(tree, cache=False), s.method)
    adv = build_run_config("coop", values={**_raw(tree), "adv": {"enabled": True}})
    assert not use_feature_cache(adv, s.method)


def _raw(tree):
    return {"method": "coop", "model": {"name": "robustprompt-test", "pretrained": "random"},
            "data": {"dataset": "imagefolder", "root": str(tree), "shots": 5, "split": "all",
                     "train_augment": False},
            "train": {"epochs": 2, "batch_size": 4, "cache_image_features": "auto"}, "method_cfg": {"n_ctx": 4}}


@pytest.mark.parametrize("method, augment, expect", [
    ("coop", True, "data.train_augment is true"),
    ("ivlp", False, "method 'ivlp' learns on the image side"),
])
def test_cache_on_when_it_cannot_hold_fails_before_writing(tree, tmp_path, method, augment, expect):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=expect):
        train(_cfg(tree, method, cache=True, augment=augment), out)
    assert not out.exists()
