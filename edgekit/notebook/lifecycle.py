"""A promotion as a notebook runs it (``notebooks/lifecycle.ipynb`` with ``act=True``): register the variant
unless this commit already has a live version of it, then, stage by stage up to the target, sign the
approvals the policy asks for and promote. Every step is a call of ``edgekit.registry``, the CLI's own API,
so it leaves the same events; a refusal stops the run with the registry's reason.

Example:
    >>> from edgekit.notebook.lifecycle import promote_to
    >>> promote_to(".", "production", variant="ort-int8", key="~/.ssh/id_ed25519")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.notebook.display import TableView


class StepsView(TableView):
    """What a run did, one row per registry event it wrote."""

    HEADERS = ["step", "version", "stage", "event", "by"]

    def __init__(self, model: str, steps: list[dict[str, Any]]):
        super().__init__(steps)
        self.title = f"{model}: {len(steps)} registry event(s) written"

    def _rows(self) -> list[list[Any]]:
        return [[s["step"], s["version"], s.get("stage"), s["event"]["seq"], s["signer"] or "unsigned"] for s in self.data]


def live_version(shown: dict[str, Any], model: str, variant: str, commit: str, retired: str) -> dict[str, Any] | None:
    """The newest version of ``variant`` registered at ``commit`` and not retired, if any."""
    versions = shown["models"].get(model, {}).get("versions", [])
    found = [v for v in versions if v["variant"] == variant and v["commit"] == commit and v["stage"] != retired]
    return found[-1] if found else None


def promote_to(project: str | Path, stage: str, model: str | None = None, variant: str | None = None,
               key: str | Path | None = None) -> StepsView:
    """Carry ``variant`` (default: the recommended one) of ``model`` up to ``stage``; see the module.

    Raises:
        PromotionRefused, SignatureError, WorkspaceError, RegistryError: the registry's refusal; the steps
        before it stay written (each is a complete event), nothing of the refused one is.
    """
    from edgekit import registry as api
    from edgekit.registry.api import default_model_name
    from edgekit.registry.core import Registry
    from edgekit.registry.errors import RegistryError

    project = Path(project)
    handle = Registry.open(project)
    lifecycle = handle.lifecycle()
    if stage not in lifecycle.stages or stage == lifecycle.retired:
        raise RegistryError(f"target stage {stage!r} is not one a promotion reaches",
                            f"stages in order: {', '.join(s for s in lifecycle.stages if s != lifecycle.retired)}")
    model = model or default_model_name(project)
    signs = key if lifecycle.sign == "all" else None  # else only approvals are signed (policy lifecycle.sign)
    steps: list[dict[str, Any]] = []
    version = None
    if variant:
        found = live_version(api.show(project), model, variant, handle.repo.head(), lifecycle.retired)
        version = found and found["version"]
    if version is None:
        done = api.register(project, model, variant or None, key=signs)
        version, variant = done["version"], done["variant"]
        steps.append({"step": f"register {variant}", "version": version, "event": done["event"], "signer": signs and "signed"})
    ref = f"{model}@{version}"
    while (described := api.describe(project, ref))["stage"] != stage:
        following = lifecycle.next_stage(described["stage"])
        if following is None or lifecycle.stages.index(following) > lifecycle.stages.index(stage):
            raise RegistryError(f"{ref} is in {described['stage']}, past {stage}", "register a new version to promote it again")
        approvals = described["approvals"].get(following, [])
        if len(approvals) < lifecycle.approvals_needed(following):
            if not key:
                raise RegistryError(f"{following} needs {lifecycle.approvals_needed(following)} signed approval(s) of {ref}",
                                    "set the notebook's key parameter to your SSH private key (in the allowed signers)")
            done = api.approve(project, ref, following, key=key)
            steps.append({"step": "approve", "version": version, "stage": following, "event": done["event"], "signer": done["signer"]["principal"]})
        done = api.promote(project, ref, following, key=signs)
        steps.append({"step": "promote", "version": version, "stage": following, "event": done["event"], "signer": signs and "signed"})
    return StepsView(model, steps)
