"""Pieces shared by the subcommands."""

from __future__ import annotations

import argparse


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: cpu)")


def split_list(value: str | None, default=()) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']; empty or None -> list(default)."""
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    return items or list(default)


def formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)
