"""One training loop and one evaluation loop for every method; run directories."""

from .evaluate import evaluate_accuracy
from .rundir import RunDir
from .train import build, train

__all__ = ["evaluate_accuracy", "RunDir", "build", "train"]
