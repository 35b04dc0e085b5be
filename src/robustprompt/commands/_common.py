"""Pieces shared by the subcommands."""

from __future__ import annotations

import argparse


def device_arg(value: str) -> str:
    """argparse type of --device: a torch device that exists here (one-line error otherwise)."""
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {value!r} (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{value}: no CUDA device is available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return value


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", type=device_arg, help="torch device, e.g. cpu or cuda:0 (default: cpu)")


def split_list(value: str | None, default=()) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']; empty or None -> list(default)."""
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    return items or list(default)


def formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)
