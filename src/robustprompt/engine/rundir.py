"""The run directory, the unit of record.

    config.yaml          the resolved config
    prompt.safetensors   learnable tensors only, with method, classes and backbone identity in metadata
    results.json         every metric as a record (see `add_records`), versions, backbone identity
    log.txt              human-readable log
    checkpoint/          training state for --resume (learnable tensors, optimizer, epoch)
    .partial/            finished batches of an attacked evaluation that was interrupted (eval resumes)
    .lock                held while a process writes here

Every file is written atomically (temporary file + rename). Nothing is ever unpickled.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, atomic_write_text
from ..errors import CheckpointError, RobustPromptError

CONFIG = "config.yaml"
PROMPT = "prompt.safetensors"
RESULTS = "results.json"
LOG = "log.txt"
CHECKPOINT = "checkpoint"
PARTIAL = ".partial"
SCHEMA_VERSION = 1


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0][:120]})") from None


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def exists(self) -> bool:
        return (self.path / CONFIG).is_file()

    @property
    def complete(self) -> bool:
        return (self.path / PROMPT).is_file() and (self.path / RESULTS).is_file()

    def writable(self) -> bool:
        """Whether files can be created here (probed: a read-only mount passes os.access for root)."""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".probe.")
        except OSError:
            return False
        os.close(fd)
        os.unlink(tmp)
        return True

    def require(self) -> "RunDir":
        if not self.path.is_dir():
            raise RobustPromptError(f"run directory not found: {self.path}")
        if not (self.path / CONFIG).is_file():
            raise RobustPromptError(f"not a run directory (no {CONFIG}): {self.path}")
        return self

    @contextmanager
    def lock(self):
        """An exclusive lock: a second process writing the same run directory fails at once."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_CREAT | os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RobustPromptError(f"another robustprompt process is writing {self.path}") from None
            yield self
        finally:
            os.close(fd)

    # ---- config
    def write_config(self, config: dict) -> None:
        atomic_write_text(self.path / CONFIG, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict:
        from ..config import load_yaml

        return load_yaml(self.path / CONFIG)

    # ---- learnable tensors
    def save_prompt(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        atomic_save_tensors(self.path / PROMPT, tensors, {k: json.dumps(v) for k, v in metadata.items()})

    def load_prompt(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = load_tensors(self.path / PROMPT)
        try:
            return tensors, {k: json.loads(v) for k, v in meta.items()}
        except json.JSONDecodeError:
            raise CheckpointError(f"{self.path / PROMPT} has malformed metadata") from None

    # ---- results
    def read_results(self) -> dict:
        p = self.path / RESULTS
        if not p.is_file():
            return {}
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            raise RobustPromptError(f"{p} is not valid JSON") from None

    def write_results(self, results: dict) -> None:
        atomic_write_text(self.path / RESULTS, json.dumps(results, indent=2, sort_keys=False) + "\n")

    def add_records(self, header: dict, records: list[dict]) -> dict:
        """Merge evaluation records into results.json; a record with the same key replaces the old one."""
        results = self.read_results() or {"schema_version": SCHEMA_VERSION}
        results.update(header)
        kept = {record_key(r): r for r in results.get("evaluations", [])}
        for r in records:
            kept[record_key(r)] = r
        results["evaluations"] = list(kept.values())
        self.write_results(results)
        return results

    # ---- log
    def log(self, line: str) -> None:
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        with open(self.path / LOG, "a") as f:
            f.write(f"{stamp} {line}\n")


RECORD_KEY_FIELDS = ("dataset", "split", "metric", "attack", "eps", "steps", "noise")


def record_key(r: dict) -> tuple:
    return tuple(str(r.get(k)) for k in RECORD_KEY_FIELDS)
