"""One exception hierarchy for edgekit; every error carries the fix.

Example:
    >>> raise ConfigError("variants.ort-int8.runtime", "onnxrt", "one of: onnxruntime, pytorch")
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base of every error edgekit raises on purpose.

    Args:
        message: what went wrong, naming the field, file or value.
        hint: how to fix it, as a command or an edit the user can make.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(EdgekitError):
    """A value in params.yaml (or another config) is wrong."""

    def __init__(self, field: str, value: object, expected: str, source: str = "params.yaml"):
        super().__init__(
            f"{source}: {field} = {value!r} is not valid", f"expected {expected}"
        )
        self.field = field
        self.value = value


class UnknownNameError(ConfigError):
    """A name (runtime, variant, precision) is not among the known ones."""

    def __init__(self, field: str, value: object, known: list[str], source: str = "params.yaml"):
        super().__init__(field, value, "one of: " + ", ".join(sorted(known)), source)
        self.known = sorted(known)


class DataError(EdgekitError):
    """An input data file is missing, unreadable or malformed."""


class ModelSourceError(EdgekitError):
    """The source model cannot be found or loaded."""


class MissingDependencyError(EdgekitError):
    """An optional runtime is not installed; the hint is the install command."""

    def __init__(self, distribution: str, extra: str, detail: str | None = None):
        message = f"{distribution} is not installed"
        if detail:
            message += f" ({detail})"
        super().__init__(message, f"install it with: {install_command(extra)}")
        self.distribution = distribution
        self.extra = extra


class VariantError(EdgekitError):
    """A runtime could not make or run this one variant; it is recorded as failed and the rest go on."""


class IntegrityError(EdgekitError):
    """A file does not match the digest recorded for it."""


class StageInputError(EdgekitError):
    """A stage's input (an earlier stage's output) is missing or stale."""


class GateError(EdgekitError):
    """No variant passes the blocking gates of the stage the pipeline asks for."""


def install_command(extra: str) -> str:
    """The pip command that installs an extra with the project's pins."""
    return f'pip install -c requirements/lock.txt -e ".[{extra}]"'
