"""What the fidelity scripts share: loading an official module by path, and the checkout's commit."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def checkout_commit(checkout: str, given: str | None) -> str:
    """The checkout's HEAD, else the commit the caller names (an exported tree has no .git)."""
    head = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return head or given or "unknown"
