"""Pieces shared by the subcommands."""

from __future__ import annotations

import argparse


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: cpu)")


def formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)
