"""The one mixed-precision switch of training and evaluation."""

from __future__ import annotations

import contextlib

import torch


def autocast(precision: str, device: torch.device):
    """bf16 autocast on `device` for precision "bf16"; nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
