"""What the benchmark scripts share: the machine's load beside every timing, and results as JSON lines."""

from __future__ import annotations

import json
import os


def load() -> str:
    """The 1, 5 and 15 minute load averages, "1.02/0.98/0.90" ("?" where the system has none)."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def read_jsonl(path: str | None) -> list[dict]:
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_jsonl(path: str | None, row: dict) -> None:
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
