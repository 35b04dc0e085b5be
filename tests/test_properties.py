"""Property-based tests (hypothesis) of config parsing and split handling.

Complements test_data_fewshot.py (partition sizes, exactly k per class, every item once) with
round trips, determinism, ordering and "only ConfigError, never a traceback" properties.
"""

import dataclasses
import math
import random
import string

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from robustprompt.config import (DataConfig, ModelConfig, RunConfig, TrainConfig, build_run_config, deep_merge,
                                 from_dict, parse_override, to_dict)
from robustprompt.data import DatasetSplits, Datum, base_novel_labels, few_shot, subsample_classes
from robustprompt.errors import ConfigError, DataError

SETTINGS = settings(max_examples=80, deadline=None)

ident = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8).filter(lambda s: not s.startswith("_"))
keys = st.lists(ident, min_size=1, max_size=4).map(".".join)
scalars = st.one_of(
    st.integers(-10**9, 10**9),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.booleans(),
    st.text(string.ascii_letters + string.digits + " _-/", min_size=1, max_size=12),
)


def _dump(value) -> str:
    """A value as the user would type it after `key=` (YAML flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _nested(key: str, value) -> dict:
    out = cur = {}
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


# ------------------------------------------------------------------ --set parsing
@SETTINGS
@given(keys, st.one_of(scalars, st.lists(scalars, max_size=4)))
def test_parse_override_round_trips_yaml_values(key, value):
    parsed = parse_override(f"{key}={_dump(value)}")
    assert parsed == _nested(key, value)


@SETTINGS
@given(st.text(max_size=40))
def test_parse_override_only_raises_config_error(item):
    try:
        out = parse_override(item)
    except ConfigError:
        return
    key = item.split("=", 1)[0].strip()
    assert "=" in item and all(key.split("."))
    leaf = out
    for part in key.split("."):
        leaf = leaf[part]


@SETTINGS
@given(keys)
def test_parse_override_rejects_missing_equals_and_empty_parts(key):
    with pytest.raises(ConfigError, match="key=value"):
        parse_override(key)
    with pytest.raises(ConfigError, match="empty key"):
        parse_override(f"{key}..x=1")
    assert parse_override(f" {key} =") == _nested(key, "")


# ------------------------------------------------------------------ from_dict / to_dict
finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def run_configs(draw):
    epochs = draw(st.integers(1, 500))
    train = TrainConfig(
        epochs=epochs,
        batch_size=draw(st.integers(1, 4096)),
        optimizer=draw(st.sampled_from(["sgd", "adamw"])),
        lr=draw(st.floats(1e-12, 1e3)),
        weight_decay=draw(st.floats(0, 10)),
        momentum=draw(st.floats(0, 0.999)),
        warmup_epochs=draw(st.integers(0, epochs - 1)),
        warmup_lr=draw(st.floats(1e-12, 1.0)),
        precision=draw(st.sampled_from(["fp32", "bf16"])),
        eval_batch_size=draw(st.integers(1, 4096)),
        grad_clip=draw(st.one_of(st.none(), st.floats(1e-6, 100))),
    )
    data = DataConfig(
        dataset=draw(st.text(string.ascii_lowercase + "-", min_size=1, max_size=12)),
        root=draw(st.one_of(st.none(), st.text(string.printable, max_size=20))),
        shots=draw(st.integers(-1, 64)),
        split=draw(st.sampled_from(["base", "novel", "all"])),
        train_crop_scale=draw(st.floats(1e-6, 1.0)),
        num_workers=draw(st.integers(0, 8)),
    )
    model = ModelConfig(name=draw(st.sampled_from(["robustprompt-test", "ViT-B-16"])),
                        pretrained=draw(st.one_of(st.none(), st.sampled_from(["openai", "random"]))),
                        quick_gelu=draw(st.one_of(st.none(), st.booleans())))
    method_cfg = draw(st.dictionaries(ident, st.one_of(st.integers(0, 99), st.booleans()), max_size=3))
    return RunConfig(method=draw(ident), seed=draw(st.integers(0, 2**31)), method_cfg=method_cfg,
                     model=model, data=data, train=train)


@SETTINGS
@given(run_configs())
def test_from_dict_to_dict_round_trip_and_config_yaml(cfg):
    d = to_dict(cfg)
    assert from_dict(RunConfig, d) == cfg
    assert to_dict(from_dict(RunConfig, d)) == d
    # what the run directory stores (yaml.safe_dump) reads back to the same config, floats exactly
    assert from_dict(RunConfig, yaml.safe_load(yaml.safe_dump(d, sort_keys=False))) == cfg


@SETTINGS
@given(run_configs(), st.sampled_from(["train", "data", "model"]), st.data())
def test_a_partial_dict_keeps_the_defaults(cfg, section, data):
    full = to_dict(cfg)[section]
    picked = data.draw(st.sets(st.sampled_from(sorted(full)), max_size=len(full)))
    partial = {k: full[k] for k in picked}
    if section == "train" and "warmup_epochs" in partial and "epochs" not in partial:
        partial["epochs"] = full["epochs"]
    if section == "train" and "epochs" in partial and "warmup_epochs" not in partial:
        partial["warmup_epochs"] = full["warmup_epochs"]
    got = to_dict(from_dict(RunConfig, {section: partial}))
    default = to_dict(RunConfig())
    assert got[section] == {**default[section], **partial}
    assert {k: v for k, v in got.items() if k != section} == {k: v for k, v in default.items() if k != section}


one_line = st.text(st.characters(blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=6)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(one_line, inner, max_size=3)),
    max_leaves=8,
)
FIELDS = [(None, f.name) for f in dataclasses.fields(RunConfig)] + [
    (section, f.name) for section, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig))
    for f in dataclasses.fields(cls)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), json_values)
def test_any_value_in_any_field_is_accepted_or_a_config_error(where, value):
    section, name = where
    values = {name: value} if section is None else {section: {name: value}}
    try:
        cfg = from_dict(RunConfig, values)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)  # one line for the CLI
        return
    stored = to_dict(cfg)
    got = stored[name] if section is None else stored[section][name]
    if isinstance(value, float):
        assert math.isfinite(value) and got == value


@SETTINGS
@given(st.dictionaries(ident, st.one_of(scalars, st.dictionaries(ident, scalars, max_size=3)), max_size=4),
       st.dictionaries(ident, st.one_of(scalars, st.dictionaries(ident, scalars, max_size=3)), max_size=4))
def test_deep_merge_later_wins_and_inputs_stay_unchanged(a, b):
    a0, b0 = yaml.safe_load(yaml.safe_dump(a)), yaml.safe_load(yaml.safe_dump(b))
    m = deep_merge(a, b)
    assert a == a0 and b == b0
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            assert m[k] == {**a[k], **v}
        else:
            assert m[k] == v
    assert all(m[k] == a[k] for k in a if k not in b)


@SETTINGS
@given(st.floats(1e-9, 1e3), st.floats(1e-9, 1e3), st.integers(2, 50))
def test_set_overrides_win_over_flags(lr_flag, lr_set, epochs):
    cfg = build_run_config(None, [f"train.lr={_dump(lr_set)}", f"train.epochs={epochs}"],
                           {"method": "coop", "train": {"lr": lr_flag, "epochs": 1}})
    assert cfg.train.lr == lr_set and cfg.train.epochs == epochs


def test_set_accepts_exponent_notation():
    assert build_run_config(None, ["train.lr=1e-5"], {"method": "coop"}).train.lr == 1e-5


def test_unknown_key_with_a_newline_is_one_line():
    with pytest.raises(ConfigError) as e:
        from_dict(RunConfig, {"model": {"na\nme": 1}})
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ split handling
def _items(sizes, shuffle_seed=None):
    items = [Datum(f"/x/{y}/{i}.jpg", y, f"c{y}") for y, n in enumerate(sizes) for i in range(n)]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(items)
    return items


@SETTINGS
@given(st.integers(0, 3000))
def test_base_novel_are_ordered_and_balanced(n):
    base, novel = base_novel_labels(n)
    assert set(base).isdisjoint(novel)
    assert all(b < v for b in base for v in novel) if base and novel else True
    assert len(base) - len(novel) in ((0, 1) if n else (0,))


@SETTINGS
@given(st.lists(st.integers(1, 9), min_size=1, max_size=7), st.integers(1, 9), st.integers(0, 10**6),
       st.integers(0, 99))
def test_few_shot_is_deterministic_ordered_and_ignores_the_global_rng(sizes, k, seed, shuffle):
    items = _items(sizes, shuffle)
    if min(sizes) < k:
        with pytest.raises(DataError):
            few_shot(items, k, seed)
        return
    random.seed(12345)
    first = few_shot(items, k, seed)
    random.seed(999)
    random.random()
    assert few_shot(items, k, seed) == first
    labels = [d.label for d in first]
    assert labels == sorted(labels)  # classes in label order
    position = {d: i for i, d in enumerate(items)}
    for y in set(labels):
        picks = [position[d] for d in first if d.label == y]
        assert picks == sorted(picks)  # each class's picks in input order
        if sizes[y] == k:
            assert len(picks) == sizes[y]  # a class of exactly k gives all its items


@SETTINGS
@given(st.lists(st.integers(0, 6), min_size=2, max_size=9), st.integers(0, 99))
def test_subsample_keeps_order_and_relabels_consistently(sizes, shuffle):
    items = _items(sizes, shuffle)
    names = [f"c{y}" for y in range(len(sizes))]
    ds = DatasetSplits("t", names, items, items[:3], items)
    base_labels, novel_labels = base_novel_labels(len(names))
    for which, labels in (("base", base_labels), ("novel", novel_labels)):
        part = subsample_classes(ds, which)
        assert part.classnames == [names[y] for y in labels]
        kept = [d for d in items if d.label in labels]
        assert [(d.path, d.classname) for d in part.test] == [(d.path, d.classname) for d in kept]
        assert all(part.classnames[d.label] == d.classname for d in (*part.train, *part.val, *part.test))
    assert subsample_classes(ds, "all") is ds
