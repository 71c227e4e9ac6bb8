"""One exception hierarchy for edgekit; every error carries the fix.

Each error also says how far it reaches. One raised while a runtime makes, times or evaluates a
variant (in its child process) becomes that variant's ``failed`` or ``skipped`` record
(``variant_record``) and the other variants go on; only an error about the project itself — bad
params, a stale or tampered input (``stops_pipeline``) — stops the stage.

Example:
    >>> raise ConfigError("variants.ort-int8.runtime", "onnxrt", "one of: onnxruntime, pytorch")
    >>> UnsupportedModelError("the mlx runtime cannot run model_type 'distilbert'", "use pytorch").variant_record()["status"]
    'skipped'
"""

from __future__ import annotations

from typing import Any, ClassVar


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

    # True for errors about the project rather than one variant: the user fixes them once, before
    # any variant can run, so a stage stops on them even when a runtime's child process raised one.
    stops_pipeline: ClassVar[bool] = False

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message

    def variant_record(self) -> dict[str, Any]:
        """How a variant that hit this error is recorded: ``failed``, with the error and its fix.

        The fix is in ``error`` too, because a later stage may copy only the status and the error.
        """
        return {"status": "failed", "error": f"{type(self).__name__}: {self}", "hint": self.hint}


class ConfigError(EdgekitError):
    """A value in params.yaml (or another config) is wrong."""

    stops_pipeline = True

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

    def variant_record(self) -> dict[str, Any]:
        """Skipped with the install command, as when the parent finds the runtime missing."""
        return {"status": "skipped", "reason": self.message, "install": install_command(self.extra)}


class UnsupportedModelError(EdgekitError):
    """A runtime cannot run this model's architecture (its model_type, or a feature of it).

    Not a fault of the runtime or of the model: the variant is recorded as ``skipped`` with the
    reason, and the hint names the runtimes that can run the model.
    """

    def variant_record(self) -> dict[str, Any]:
        return {"status": "skipped", "reason": str(self), "hint": self.hint}


class VariantError(EdgekitError):
    """A runtime could not make or run this one variant; it is recorded as failed and the rest go on."""


class IntegrityError(EdgekitError):
    """A file does not match the digest recorded for it."""

    stops_pipeline = True


class StageInputError(EdgekitError):
    """A stage's input (an earlier stage's output) is missing or stale."""

    stops_pipeline = True


class GateError(EdgekitError):
    """No variant passes the blocking gates of the stage the pipeline asks for."""


def install_command(extra: str) -> str:
    """The pip command that installs an extra with the project's pins."""
    return f'pip install -c requirements/lock.txt -e ".[{extra}]"'
