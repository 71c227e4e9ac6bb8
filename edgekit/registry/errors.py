"""Errors of the registry; each names what was refused and how to fix it (see ``edgekit.errors``)."""

from __future__ import annotations

from edgekit.errors import EdgekitError


class RegistryError(EdgekitError):
    """A registry operation was refused: bad input, unknown model or version, a stage out of order."""


class WorkspaceError(RegistryError):
    """The workspace cannot be registered as it is: uncommitted changes, a stale pipeline, changed outputs."""


class ConflictError(RegistryError):
    """Someone else wrote the registry between this operation's read and its write; nothing was written."""


class PromotionRefused(RegistryError):
    """The target stage's gates fail on the version's pinned metrics, or its approvals are missing."""

    def __init__(self, message: str, hint: str, failing: list[str] | None = None):
        super().__init__(message, hint)
        self.failing = failing or []


class SignatureError(RegistryError):
    """A signature could not be made or does not verify against the allowed signers."""


class TamperError(RegistryError):
    """The event log or its tags do not verify; ``problems`` names each event that fails."""

    def __init__(self, problems: list[dict]):
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"the registry does not verify: event {first.get('seq')}: {first['problem']}{more}",
                         "restore the log from the remote or CI's checkpoint; `edgekit registry verify --json` lists every problem")
        self.problems = problems
