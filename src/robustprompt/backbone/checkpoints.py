"""Reading a CLIP weights file into a state dict, and telling which activation it was trained with.

Three file kinds:
- `.safetensors`: read as is; its metadata may say `quick_gelu` ("true"/"false").
- a torch file written by `torch.save`: loaded with `weights_only=True` (no pickled code runs).
- a TorchScript archive, the format of OpenAI's released `.pt` files: its `data.pkl` is read by a
  restricted unpickler that rebuilds tensors from the archive's storages and turns every scripted
  module into plain attribute dicts. TorchScript code in the archive is never compiled or run, and
  any other pickled global is refused.

The activation (QuickGELU or GELU) is not in the tensors. It is known for: a TorchScript archive (its
modules carry their class names, QuickGELU among them), a file whose sha256 is one of OpenAI's
releases (open_clip's registry lists their URLs, which contain the sha256), a state dict with OpenAI's
own extra keys (`input_resolution`, `context_length`, `vocab_size`), and a safetensors file whose
metadata says so. Elsewhere it is unknown and the model name decides.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError

OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


@dataclass
class WeightsFile:
    state: dict[str, torch.Tensor]
    quick_gelu: bool | None  # None: the file does not say
    evidence: str  # why quick_gelu is what it is


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/data.pkl") for n in names) and any("/code/" in n for n in names)


class _ScriptedModule:
    """A scripted module's pickled attributes, kept as a dict (its TorchScript methods are never run).
    The unpickler makes one subclass per pickled class name."""

    cls_name = ""

    def __setstate__(self, state):
        self.attrs = dict(state) if isinstance(state, dict) else {}


def _rebuild_tensor(storage, offset, size, stride, *_):
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset)).clone()


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        import io

        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.classes: dict[str, type] = {}

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            if name not in self.classes:
                self.classes[name] = type(name, (_ScriptedModule,), {"cls_name": name})
            return self.classes[name]
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, hooks: data
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist",
                                                      "build_tensorlist", "build_genericlist"):
            return list
        raise pickle.UnpicklingError(f"refusing pickled global {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or storage_type not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unknown storage {pid!r}")
        raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        dtype = _STORAGE_DTYPES[storage_type]
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return flat[: int(numel)]


def _flatten(module: _ScriptedModule, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for name, value in getattr(module, "attrs", {}).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptedModule):
            _flatten(value, f"{prefix}{name}.", out)


def read_torchscript(path: Path) -> tuple[dict[str, torch.Tensor], set[str]]:
    """(state dict, class names of the scripted modules) of a TorchScript archive, without running it."""
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1)
        unpickler = _ArchiveUnpickler(z.read(pkl), z, pkl.split("/")[0])
        root = unpickler.load()
    if not isinstance(root, _ScriptedModule):
        raise pickle.UnpicklingError("the archive's root is not a module")
    state: dict[str, torch.Tensor] = {}
    _flatten(root, "", state)
    return state, set(unpickler.classes)


def openai_release_hashes() -> set[str]:
    """sha256 of OpenAI's released CLIP files, read from the URLs in open_clip's pretrained registry."""
    from open_clip.pretrained import _PRETRAINED

    found = set()
    for tags in _PRETRAINED.values():
        for tag, cfg in tags.items():
            if tag == "openai":
                m = re.search(r"/([0-9a-f]{64})/", cfg.get("url", ""))
                if m:
                    found.add(m.group(1))
    return found


def read_weights(path: Path, sha256: str) -> WeightsFile:
    """The file's state dict (fp32) and what it says about its activation; errors are one-line ModelErrors."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            state = load_file(str(path))
            said = meta.get("quick_gelu", "").lower()
            quick = {"true": True, "false": False}.get(said)
            evidence = f"its metadata says quick_gelu={said}" if quick is not None else ""
        elif is_torchscript(path):
            state, classes = read_torchscript(path)
            if any(c.endswith("QuickGELU") for c in classes):
                quick, evidence = True, "a TorchScript archive whose modules include QuickGELU (OpenAI's release format)"
            elif "GELU" in classes:
                quick, evidence = False, "a TorchScript archive whose modules use GELU"
            else:
                quick, evidence = None, ""
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
            quick, evidence = None, ""
    except Exception as e:  # a truncated file, a pickled object, a foreign archive
        first = (str(e).strip().splitlines() or [e.__class__.__name__])[0][:200]
        raise ModelError(f"weights file {path} does not load (read without running pickled code): {first}; "
                         "save a state dict with torch.save(model.state_dict(), PATH) or as .safetensors") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"weights file {path} does not hold a state dict of tensors")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    if quick is None and sha256 in openai_release_hashes():
        quick, evidence = True, "its sha256 is one of OpenAI's released CLIP files"
    if quick is None and any(k in state for k in OPENAI_EXTRA_KEYS):
        quick, evidence = True, f"it has OpenAI's extra keys ({', '.join(k for k in OPENAI_EXTRA_KEYS if k in state)})"
    for k in OPENAI_EXTRA_KEYS:
        state.pop(k, None)
    return WeightsFile({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, quick, evidence)
