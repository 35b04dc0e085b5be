"""Method registry: `@register_method("coop", CoOpConfig)` on a Method subclass."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import torch

from ..dataclass_io import from_dict
from ..errors import ConfigError


@dataclass(frozen=True)
class MethodEntry:
    name: str
    cls: type
    config_cls: type
    description: str


_METHODS: dict[str, MethodEntry] = {}
TOWER_NAMES = {"vit": "ViT", "resnet": "ResNet"}


def register_method(name: str, config_cls: type):
    def deco(cls):
        if name in _METHODS:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        cls.config_cls = config_cls
        doc = (cls.__doc__ or "").strip().splitlines()
        _METHODS[name] = MethodEntry(name, cls, config_cls, doc[0] if doc else "")
        return cls

    return deco


def methods_for_tower(tower: str) -> list[str]:
    """The registered methods that run on an image tower of this kind ("vit" or "resnet")."""
    return [n for n in list_methods() if tower in _METHODS[n].cls.image_towers]


def list_methods(pattern: str = "*") -> list[str]:
    _import_builtin()
    return sorted(n for n in _METHODS if fnmatch.fnmatch(n, pattern))


def method_entry(name: str) -> MethodEntry:
    _import_builtin()
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def method_config(name: str, values: dict[str, Any] | None = None):
    """The typed, validated config of a method from a plain dict (unknown keys are errors)."""
    entry = method_entry(name)
    return from_dict(entry.config_cls, values or {}, prefix="method_cfg")


def create_method(name: str, backbone, classnames: list[str], template: str, config=None):
    """Build a registered method on a frozen backbone for the given training classes."""
    entry = method_entry(name)
    if config is None or isinstance(config, dict):
        config = method_config(name, config)
    elif not isinstance(config, entry.config_cls):
        raise ConfigError(f"method {name!r} needs a {entry.config_cls.__name__}, got {type(config).__name__}")
    if backbone.image_tower not in entry.cls.image_towers:
        fits = ", ".join(methods_for_tower(backbone.image_tower))
        raise ConfigError(f"method {name!r} prompts the image tower's layers and supports "
                          f"{' and '.join(TOWER_NAMES[t] for t in entry.cls.image_towers)} image towers only; "
                          f"{backbone.identity.model} has a {TOWER_NAMES[backbone.image_tower]} image tower "
                          f"(methods that run on it: {fits})")
    try:
        method = entry.cls(backbone, list(classnames), template, config)
        method.to(backbone.device)  # new parameters are made on the CPU; the backbone may be elsewhere
        with torch.no_grad():
            method.class_context()  # prompts that cannot be built fail here, not mid-training
    except ValueError as e:
        raise ConfigError(f"method {name!r}: {e}") from None
    return method


_NOT_METHODS = {"base", "registry"}


def _import_builtin() -> None:
    """Import every module of this package: a method registers itself with its decorator, so adding one is
    its file and its preset, and nothing else."""
    import importlib
    import pkgutil
    from pathlib import Path

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in _NOT_METHODS and not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")
