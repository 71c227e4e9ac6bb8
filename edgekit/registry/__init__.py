"""The model registry: git-native (GTO's tags), with reproduction records, ordered stages, promotion gated
on pinned metrics, approvals signed with SSH keys, and a hash-linked event log that ``verify`` checks.

Example:
    >>> from edgekit import registry
    >>> registry.register(".", variant="ort-int8")            # v1.0.0, with its reproduction record
    >>> registry.promote(".", "all-minilm-l6-v2@v1.0.0")      # to staging, if the staging gates pass
    >>> registry.approve(".", "all-minilm-l6-v2@v1.0.0", key="~/.ssh/id_ed25519")
    >>> registry.promote(".", "all-minilm-l6-v2@v1.0.0")      # to production
    >>> registry.verify(".")
"""

from edgekit.registry.api import (
    approve,
    archive,
    check,
    checkpoint,
    describe,
    fetch,
    history,
    observations,
    promote,
    record_ramp,
    record_telemetry,
    register,
    rollback,
    show,
)
from edgekit.registry.errors import ConflictError, PromotionRefused, RegistryError, SignatureError, TamperError, WorkspaceError
from edgekit.registry.verify import verify


def reproduce(project, ref, tolerance: float = 1e-4, keep: bool = False):
    """Re-run the pinned pipeline for one version and compare (see ``edgekit.registry.reproduce``)."""
    from edgekit.registry.reproduce import reproduce as run

    return run(project, ref, tolerance, keep)


__all__ = ["approve", "archive", "check", "checkpoint", "describe", "fetch", "history", "observations", "promote", "record_ramp",
           "record_telemetry", "register", "reproduce", "rollback", "show",
           "verify", "ConflictError", "PromotionRefused", "RegistryError", "SignatureError", "TamperError", "WorkspaceError"]
