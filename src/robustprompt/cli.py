"""Command-line entry point: `robustprompt SUBCOMMAND ...` (also `python -m robustprompt`).

Each subcommand lives in `robustprompt.commands.<name>` and exposes
`register(subparsers)`, which adds its parser and sets `func` to a handler `fn(args) -> int`.
Every `RobustPromptError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import RobustPromptError

# Order here is the order in `robustprompt --help`.
COMMAND_MODULES = [
    "demo",
    "train",
    "eval",
    "list",
    "pretrain",
    "make_splits",
    "bench",
    "report",
    "predict",
    "world",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors also exit 2 with one line
        self.exit(2, f"robustprompt: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="robustprompt",
        description="Robust prompt tuning for CLIP-style vision-language models "
        "(ANPrompt, NAP-Tuning and their baselines).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"robustprompt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as e:  # a command whose module is not written yet
            if e.name and e.name.endswith(f"commands.{name}"):
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RobustPromptError as e:
        print(f"robustprompt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("robustprompt: interrupted", file=sys.stderr)
        return 130


def main_exit() -> None:
    sys.exit(main())
