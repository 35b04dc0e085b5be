"""Errors that reach the user as one line and exit code 2."""


class RobustPromptError(Exception):
    """Base class: a problem with the user's input, reported as one line by the CLI."""


class ConfigError(RobustPromptError):
    """A bad config key, value, preset or override."""


class DataError(RobustPromptError):
    """A missing path, an undecodable image, a malformed split file, an unknown class."""


class CheckpointError(RobustPromptError):
    """A checkpoint that is missing, truncated, or from another method or backbone."""


class ModelError(RobustPromptError):
    """An unknown architecture, pretrained tag or weights file."""
