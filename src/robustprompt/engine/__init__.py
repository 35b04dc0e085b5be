"""One training loop and one evaluation loop for every method; run directories."""

from .evaluate import EvalSpec, evaluate
from .rundir import RunDir
from .train import build, train

__all__ = ["EvalSpec", "evaluate", "RunDir", "build", "train"]
