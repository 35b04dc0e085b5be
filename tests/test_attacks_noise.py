"""Weak image and text noise: parsing, stable names, determinism, range."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustprompt.attacks.noise import (
    ALT_TEMPLATES,
    DEFAULT_IMAGE_NOISES,
    DEFAULT_TEXT_NOISES,
    ImageNoise,
    TextNoise,
    apply_image_noise,
    apply_text_noise,
    gaussian_blur,
    parse_noise,
    parse_noise_list,
    pick_template,
    typo,
)
from robustprompt.errors import ConfigError


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 3.14, 16)
    smooth = 0.5 + 0.3 * torch.sin(t[:, None] + 2 * t[None, :])  # natural-ish: smooth + grain
    x = (smooth + 0.03 * torch.randn(4, 3, 16, 16, generator=g)).clamp(0, 1)
    x[0] = 0.0  # saturated images test the clipping
    x[1] = 1.0
    return x


@pytest.mark.parametrize("spec,name", [
    ("gaussian:0.02", "gaussian:0.02"), ("Gaussian:0.050", "gaussian:0.05"),
    ("blur:1.0", "blur:1"), ("blur:1", "blur:1"), ("jpeg:50", "jpeg:50"), ("jpeg:50.0", "jpeg:50"),
    ("typo:0.1", "typo:0.1"), ("template", "template"), ("gaussian", "gaussian:0.02"),
    (" typo ", "typo:0.1"),
])
def test_stable_names(spec, name):
    p = parse_noise(spec)
    assert p.name == name
    assert parse_noise(p.name) == p  # the name parses back to the same spec


@pytest.mark.parametrize("bad", ["snow:1", "gaussian:x", "jpeg:0", "jpeg:101", "jpeg:50.5",
                                 "typo:2", "template:3", "gaussian:-1", "", "blur:nan"])
def test_bad_specs(bad):
    with pytest.raises(ConfigError):
        parse_noise(bad)


def test_defaults_and_lists():
    names = [p.name for p in parse_noise_list(DEFAULT_IMAGE_NOISES)]
    assert names == ["gaussian:0.02", "gaussian:0.05", "blur:1", "jpeg:50"]
    assert [p.name for p in parse_noise_list("typo:0.1, template,typo:0.10")] == ["typo:0.1",
                                                                                  "template"]
    assert all(isinstance(parse_noise(s), TextNoise) for s in DEFAULT_TEXT_NOISES)
    with pytest.raises(ConfigError):
        apply_image_noise(torch.rand(1, 3, 4, 4), "typo:0.1")
    with pytest.raises(ConfigError):
        apply_text_noise(["cat"], "jpeg:50")


@pytest.mark.parametrize("spec", ["gaussian:0.02", "gaussian:0.05", "blur:1.0", "blur:0.5",
                                  "jpeg:50", "jpeg:90"])
def test_image_noise_range_shape_determinism(images, spec):
    a = apply_image_noise(images, spec, seed=3)
    b = apply_image_noise(images, spec, seed=3)
    assert a.shape == images.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.equal(a, images)
    assert float((a - images).abs().mean()) < 0.1  # weak noise


def test_gaussian_seed_and_generator(images):
    a = apply_image_noise(images, "gaussian:0.05", seed=1)
    b = apply_image_noise(images, "gaussian:0.05", seed=2)
    assert not torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(ImageNoise("gaussian", 0.05)(images, generator=g1),
                       apply_image_noise(images, "gaussian:0.05", generator=g2))
    # the noise has the requested std away from the clipping
    mid = torch.full((1, 3, 64, 64), 0.5)
    d = apply_image_noise(mid, "gaussian:0.05", seed=0) - mid
    assert float(d.std()) == pytest.approx(0.05, rel=0.1)


def test_blur_properties(images):
    assert torch.equal(gaussian_blur(images, 0.0), images)
    const = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(gaussian_blur(const, 1.0), const, atol=1e-6)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert float(gaussian_blur(x, 1.0).var()) < float(x.var())  # smooths
    tiny = torch.rand(1, 3, 2, 2)  # smaller than the kernel radius: replicate padding
    assert gaussian_blur(tiny, 2.0).shape == tiny.shape


def test_typo_examples():
    for name in ["dog", "airplane", "sea lion", "a", "ll", "Annual Crop Land"]:
        out = typo(name, rate=0.1, seed=0)
        assert out and out.strip(), name
        assert out != name, name
        assert out == typo(name, rate=0.1, seed=0)  # deterministic
    assert typo("dog", rate=0.0) == "dog"
    assert typo("a", rate=0.5) == "aa"
    outs = {typo("elephant", rate=0.3, seed=s) for s in range(10)}
    assert len(outs) > 1  # the seed matters


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abcdefghij -", min_size=1, max_size=20).filter(lambda s: s.strip()),
       st.floats(min_value=0.01, max_value=1.0), st.integers(0, 1000))
def test_typo_never_empty_and_changes(name, rate, seed):
    out = typo(name, rate=rate, seed=seed)
    assert out.strip()
    assert out != name
    assert out == typo(name, rate=rate, seed=seed)
    assert abs(len(out) - len(name)) <= max(1, int(len(name)))


def test_text_noise_prompts():
    names = ["cat", "dog", "sea lion"]
    t = parse_noise("template")
    prompts = t.prompts(names, seed=0)
    assert prompts == apply_text_noise(names, "template", seed=0)
    for n, p in zip(names, prompts):
        assert p == pick_template(n, seed=0).format(n)
        assert any(p == tpl.format(n) for tpl in ALT_TEMPLATES)
    assert t.names(names) == names
    ty = parse_noise("typo:0.2")
    noisy = ty.names(names, seed=1)
    assert all(a != b and a for a, b in zip(noisy, names))
    assert ty.prompts(names, template="a photo of a {}.", seed=1) == [
        f"a photo of a {n}." for n in noisy]
