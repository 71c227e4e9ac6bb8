"""The registry's verbs, called by the CLI (``edgekit registry ...``), the JupyterLab panel and CI alike.

Example:
    >>> from edgekit import registry
    >>> registry.register(".", variant="ort-int8")["version"]
    'v1.0.0'
    >>> registry.promote(".", "all-minilm-l6-v2@v1.0.0")["stage"]
    'staging'
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from edgekit.fsutil import read_json
from edgekit.layout import Layout
from edgekit.registry.core import Registry, Snapshot
from edgekit.registry.errors import PromotionRefused, RegistryError
from edgekit.registry.lifecycle import Lifecycle
from edgekit.registry.state import State, Version

_MODEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")  # what both DVC's and GTO's artifact names accept
_VERSION = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def parse_ref(ref: str) -> tuple[str, str]:
    """``model@v1.2.0`` → ``("model", "v1.2.0")``."""
    model, _, version = ref.partition("@")
    if not _MODEL.match(model) or not _VERSION.match(version):
        raise RegistryError(f"{ref!r} is not a version reference", "write it as <model>@v<major>.<minor>.<patch>, e.g. all-minilm-l6-v2@v1.0.0")
    return model, version


def default_model_name(project: Path, decoder: bool = False) -> str:
    """The model's name in the registry when none is given: its source (``decoder.source`` for a decoder),
    lower-cased, as DVC accepts names."""
    from edgekit.params import load_params

    params = load_params(project / "params.yaml", deep=())
    source = params.decoder.source if decoder else params.model.source
    name = re.sub(r"[^a-z0-9-]+", "-", Path(source.rstrip("/")).name.lower()).strip("-")
    return name or "model"


# -- register --------------------------------------------------------------------------------------
def register(project: str | Path = ".", model: str | None = None, variant: str | None = None, version: str | None = None,
             bump: str = "minor", key: str | Path | None = None, push: str | None = None, decoder: bool = False) -> dict[str, Any]:
    """Register a measured variant as a new version, with its reproduction record.

    Args:
        model: the registry's name for the model (default: from params.yaml's model.source, or decoder.source).
        variant: a variant the pipeline measured (default: the recommended one in metrics/decision.json, or in
            metrics/decoder_summary.json with ``decoder``).
        decoder: register one of the decoder's variants (``decoder.variants``); implied when ``variant`` names a
            measured decoder variant and no encoder variant.
        version: ``vX.Y.Z`` (default: the latest version bumped by ``bump``: major, minor or patch).
        key: an SSH key to sign the event with (optional for registration).
        push: a git remote to push the registry to.

    Raises:
        WorkspaceError: uncommitted changes, or a pipeline `dvc status` does not call clean.
        ScanError: a model file is not in an allowed format, holds a pickle or leaves the folder.
        RegistryError: an unknown variant, a version that exists, a bad name.
    """
    from edgekit.manifest import verify_manifest
    from edgekit.registry import gitobjects
    from edgekit.registry.record import build_decoder_record, build_record, check_workspace, record_bytes, record_sha256
    from edgekit.registry.scan import scan_folder

    registry = Registry.open(project)
    lifecycle = registry.lifecycle()
    layout = Layout(registry.project)
    decoder = decoder or (variant is not None and variant not in _measured(layout) and variant in _measured(layout, decoder=True))
    model = model or default_model_name(registry.project, decoder)
    if not _MODEL.match(model):
        raise RegistryError(f"model name {model!r} is not valid", "use lower-case letters, digits and dashes (DVC and GTO accept those)")
    check_workspace(registry.repo, registry.project)
    variant = variant or (_recommended_decoder(layout) if decoder else _recommended(layout))
    measured = _measured(layout, decoder)
    if variant not in measured:  # before the manifest check, whose hint would name a stage that does not exist
        summary = layout.decoder_summary if decoder else layout.summary
        raise RegistryError(f"{'decoder ' if decoder else ''}variant {variant!r} has no measurements in {summary.relative_to(layout.root)}",
                            f"measured {'decoder ' if decoder else ''}variants: {', '.join(measured) or 'none'}")
    folder = layout.decoder_variant_dir(variant) if decoder else layout.variant_dir(variant)
    verify_manifest(folder)
    scan = scan_folder(folder)
    snap = registry.snapshot(lifecycle)
    version = _new_version(snap.state, model, version, bump)
    build = build_decoder_record if decoder else build_record
    built = build(registry.repo, registry.project, model, version, variant, scan)
    record = record_bytes(built)
    artifact_path = str(folder.relative_to(registry.project))
    meta = {"variant": variant, "runtime": scan.get("runtime") or built["runtime"], "record_sha256": record_sha256(record)}
    tag_commit = gitobjects.declaration_commit(registry.repo, registry.prefix, model, version, artifact_path, meta, record)
    event = registry.new_event(snap, {
        "type": "register", "model": model, "version": version, "variant": variant, "commit": registry.repo.head(),
        "tag_commit": tag_commit, "record_sha256": meta["record_sha256"], "path": artifact_path,
        "tags": [{"name": f"{model}@{version}", "target": tag_commit, "version": version}]})
    event = registry.signed(event, key, lifecycle)
    written = registry.write(event, snap, push)
    return {"model": model, "version": version, "variant": variant, "commit": event["commit"], "tag_commit": tag_commit,
            "record_sha256": meta["record_sha256"], "event": written, "files": len(scan["files"])}


def _recommended(layout: Layout) -> str:
    decision = read_json(layout.decision)
    if decision.get("recommended") in (None, "", "none"):  # the decision record says "none" when nothing passes
        raise RegistryError(f"{layout.decision.relative_to(layout.root)} recommends no variant (none passes {decision.get('target_stage')})",
                            "name one with --variant")
    return decision["recommended"]


def _recommended_decoder(layout: Layout) -> str:
    if not layout.decoder_summary.is_file():
        raise RegistryError(f"{layout.decoder_summary.relative_to(layout.root)} does not exist: no decoder was measured",
                            "add a decoder: section to params.yaml and run `dvc repro`")
    recommendation = read_json(layout.decoder_summary)["recommendation"]
    if not recommendation.get("variant"):
        raise RegistryError(f"{layout.decoder_summary.relative_to(layout.root)} recommends no decoder variant ({recommendation.get('why')})",
                            "name one with --variant")
    return recommendation["variant"]


def _measured(layout: Layout, decoder: bool = False) -> list[str]:
    """The variants the pipeline measured (status ok): the encoder's, or the decoder's."""
    if decoder:
        rows = read_json(layout.decoder_summary)["variants"] if layout.decoder_summary.is_file() else []
        return [row["variant"] for row in rows if row.get("status") == "ok"]
    if not layout.summary.is_file():
        return []
    return [name for name, row in read_json(layout.summary)["variants"].items() if row.get("status") == "ok"]


def _new_version(state: State, model: str, version: str | None, bump: str) -> str:
    existing = [v.version for v in state.of_model(model)]
    if version:
        if not _VERSION.match(version):
            raise RegistryError(f"version {version!r} is not valid", "write it as v<major>.<minor>.<patch>, e.g. v1.2.0")
        if version in existing:
            raise RegistryError(f"{model}@{version} is already registered", "omit --version to take the next one, or pick another")
        return version
    if not existing:
        return "v1.0.0"
    major, minor, patch = max(tuple(int(p) for p in v[1:].split(".")) for v in existing)
    parts = {"major": (major + 1, 0, 0), "minor": (major, minor + 1, 0), "patch": (major, minor, patch + 1)}
    if bump not in parts:
        raise RegistryError(f"bump {bump!r} is not valid", "one of: major, minor, patch")
    return "v{}.{}.{}".format(*parts[bump])


# -- promote -----------------------------------------------------------------------------------------
def promote(project: str | Path = ".", ref: str = "", stage: str | None = None, key: str | Path | None = None,
            push: str | None = None) -> dict[str, Any]:
    """Move a version one stage on, after its gates (re-evaluated on its pinned metrics) and approvals.

    Raises:
        PromotionRefused: a blocking gate fails, or signed approvals are missing; each is named.
        RegistryError: the stage is not the version's next one.
        ConflictError: the registry changed meanwhile.
    """
    registry = Registry.open(project)
    lifecycle = registry.lifecycle()
    model, version = parse_ref(ref)
    snap = registry.snapshot(lifecycle)
    entry = snap.state.version(model, version)
    target = _next_stage(lifecycle, entry, stage)
    gates = _check_gates(registry, entry, target)
    approvals = _check_approvals(registry, lifecycle, snap, entry, target)
    moves = [{"version": version, "from": entry.stage, "to": target}]
    displaced = snap.state.occupant(model, target) if target in lifecycle.exclusive else None
    if displaced and displaced != version:
        moves.append({"version": displaced, "from": target, "to": lifecycle.retired})
    event = registry.new_event(snap, {"type": "promote", "model": model, "version": version, "stage": target,
                                           "moves": moves, "gates": gates, "approvals": approvals,
                                           "approvals_required": lifecycle.approvals_needed(target),
                                           "tags": _stage_tags(snap.state, model, moves, lifecycle.exclusive)})
    event = registry.signed(event, key, lifecycle)
    written = registry.write(event, snap, push)
    hook = registry.run_hook(target, lifecycle, _hook_env(entry, target, written, model))
    return {"model": model, "version": version, "stage": target, "displaced": displaced, "gates": gates,
            "approvals": approvals, "event": written, "deploy": hook}


def _next_stage(lifecycle: Lifecycle, entry: Version, stage: str | None) -> str:
    expected = lifecycle.next_stage(entry.stage)
    if expected is None:
        raise RegistryError(f"{entry.model}@{entry.version} is in {entry.stage}, the last stage a promotion reaches",
                            "register a new version, or `edgekit registry rollback` to bring back an earlier one")
    if stage is not None and stage != expected:
        if stage == lifecycle.retired:
            raise RegistryError(f"a version leaves through archive, not promote ({stage})", f"edgekit registry archive {entry.model}@{entry.version}")
        if stage not in lifecycle.stages:
            raise RegistryError(f"stage {stage!r} is not in the policy's lifecycle", f"stages in order: {', '.join(lifecycle.stages)}")
        raise RegistryError(f"{entry.model}@{entry.version} is in {entry.stage or 'no stage (registered)'}; stages go in order "
                            f"({' → '.join(lifecycle.stages)}), so its next one is {expected}, not {stage}",
                            f"edgekit registry promote {entry.model}@{entry.version} --stage {expected}")
    return expected


def evidence_from_record(record: dict[str, Any]):
    """The gates' Evidence from a version's record: its pinned rows and latency samples."""
    from edgekit.bench.stats import process_samples
    from edgekit.decide.gates import Evidence

    pinned = record["evidence"]
    return Evidence(record["variant"], pinned["row"], pinned["baseline_row"], process_samples(pinned["samples"]),
                    process_samples(pinned["baseline_samples"]), pinned["headline"], pinned["sources"], pinned["seed"])


def load_record(registry: Registry, entry: Version) -> dict[str, Any]:
    """The version's record, checked against the digest its registration event holds."""
    import hashlib
    import json

    data = registry.record(entry.tag_commit, entry.model, entry.version)
    if hashlib.sha256(data).hexdigest() != entry.record_sha256:
        raise RegistryError(f"the record of {entry.model}@{entry.version} does not match its registration (sha256 differs)",
                            "the declaration commit was replaced; run `edgekit registry verify`")
    return json.loads(data)


def _check_gates(registry: Registry, entry: Version, target: str) -> dict[str, Any]:
    from edgekit.decide.policy import describe_failure, evaluate_stage

    policy = registry.policy()
    summary = {"policy": policy.record(), "stage": target}
    record = load_record(registry, entry)
    if record.get("kind") == "generation":
        return {**summary, **_check_decoder_gates(policy, entry, target, record)}
    if target not in policy.stages:
        return {**summary, "verdict": "no gates", "failed_blocking": [], "warnings": []}
    verdict = evaluate_stage(policy, target, evidence_from_record(record))
    failing = [describe_failure(g) for g in verdict["gates"] if g["result"] == "fail" and g["action"] == "block"]
    if failing:
        raise PromotionRefused(f"{entry.model}@{entry.version} ({entry.variant}) fails the {target} gates of {policy.path} "
                               f"{policy.version}: {'; '.join(failing)}",
                               "the gates read the metrics pinned in the version's record; register a variant that passes "
                               "(`edgekit gate --stage " + target + "` lists them)", failing)
    return {**summary, "verdict": verdict["verdict"], "failed_blocking": [], "warnings": verdict["warnings"],
            "values": {g["gate"]: g["value"] for g in verdict["gates"]}}


def decoder_row_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """A decoder version's row as its gates read it: the pinned row, with the speed-ups and their CIs recomputed
    from the pinned timing samples of the variant and the baseline (the same function ``decoder_select`` runs)."""
    from edgekit.tasks.generation.gates import speedups

    pinned = record["evidence"]
    return {**pinned["row"], **speedups(pinned["baseline_samples"]["runs"], pinned["samples"]["runs"], pinned["row"]["prompt_length"],
                                        pinned["seed"])}


def _check_decoder_gates(policy, entry: Version, target: str, record: dict[str, Any]) -> dict[str, Any]:
    """The policy's ``decoder_stages`` gates for ``target`` on the version's pinned evidence."""
    from edgekit.tasks.generation.gates import check_stage, parse_stage

    if target not in policy.decoder_stages:
        return {"verdict": "no gates", "failed_blocking": [], "warnings": []}
    verdict = check_stage(parse_stage(target, policy.decoder_stages[target]), decoder_row_from_record(record))
    failing = [f"{g['gate']} = {g['value']} ({g['estimate']}) is not {'≥' if 'min' in g else '≤'} {g.get('min', g.get('max'))}"
               for g in verdict["gates"] if not g["passed"] and g["action"] == "block"]
    if failing:
        raise PromotionRefused(f"{entry.model}@{entry.version} ({entry.variant}) fails the {target} decoder gates of {policy.path} "
                               f"{policy.version}: {'; '.join(failing)}",
                               "the gates read the metrics pinned in the version's record; register a decoder variant that passes "
                               "(metrics/decoder_summary.json lists each one's verdicts)", failing)
    warnings = [g["gate"] for g in verdict["gates"] if not g["passed"] and g["action"] == "warn"]
    return {"verdict": "pass with warnings" if warnings else "pass", "failed_blocking": [], "warnings": warnings,
            "values": {g["gate"]: g["value"] for g in verdict["gates"]}}


def _check_approvals(registry: Registry, lifecycle: Lifecycle, snap: Snapshot, entry: Version, target: str) -> list[dict[str, Any]]:
    """The valid approvals of this version for ``target``: signatures re-verified now, distinct signers."""
    from edgekit.registry import signing
    from edgekit.registry.events import signed_payload

    needed = lifecycle.approvals_needed(target)
    if needed == 0:
        return []
    approvals = entry.approvals.get(target, [])
    by_seq = snap.events_at([a["seq"] for a in approvals])
    valid: dict[str, dict[str, Any]] = {}
    for approval in approvals:
        event = by_seq.get(approval["seq"])
        if event is None or event.get("type") != "approve" or event["record_sha256"] != entry.record_sha256:
            continue
        signer = signing.verify(signed_payload(event), event["signature"], registry.allowed_signers(lifecycle))
        valid.setdefault(signer["principal"], {"seq": event["seq"], **signer})
    if len(valid) < needed:
        raise PromotionRefused(f"{entry.model}@{entry.version} needs {needed} signed approval(s) for {target}, has {len(valid)}"
                               + (f" ({', '.join(valid)})" if valid else ""),
                               f"an approver in {lifecycle.allowed_signers} runs: edgekit registry approve {entry.model}@{entry.version} "
                               f"--stage {target} --key ~/.ssh/id_ed25519", ["approvals"])
    return sorted(valid.values(), key=lambda a: a["seq"])


def _stage_tags(state: State, model: str, moves: list[dict[str, Any]], exclusive: frozenset[str]) -> list[dict[str, Any]]:
    """GTO's tags for the moves, numbered after the model's highest tag counter: an unassignment
    (``model#staging!#N``) when a version leaves an exclusive stage, so that `gto show` agrees that the
    stage no longer holds it, then the assignment (``model#production#N+1``)."""
    counter, tags = state.counters.get(model, 0), []
    for move in moves:
        target = state.version(model, move["version"]).tag_commit
        names = ([f"{model}#{move['from']}!"] if move["from"] in exclusive else []) + [f"{model}#{move['to']}"]
        for name in names:
            counter += 1
            tags.append({"name": f"{name}#{counter}", "target": target, "version": move["version"], "counter": counter})
    return tags


def _hook_env(entry: Version, stage: str, written: dict[str, Any], model: str) -> dict[str, str]:
    return {"EDGEKIT_MODEL": model, "EDGEKIT_VERSION": entry.version, "EDGEKIT_VARIANT": entry.variant, "EDGEKIT_STAGE": stage,
            "EDGEKIT_COMMIT": entry.tag_commit, "EDGEKIT_TAG": ",".join(written["tags"]),
            "EDGEKIT_EVENT_SEQ": str(written["seq"]), "EDGEKIT_EVENT_HASH": written["hash"]}


# -- approve, archive, rollback ------------------------------------------------------------------------
def approve(project: str | Path = ".", ref: str = "", stage: str | None = None, key: str | Path | None = None,
            push: str | None = None) -> dict[str, Any]:
    """Sign an approval of a version (its exact record) for a stage; the signer is the key's principal.

    Raises:
        SignatureError: no key, or a key that is not in the allowed signers file.
    """
    registry = Registry.open(project)
    lifecycle = registry.lifecycle()
    model, version = parse_ref(ref)
    if not key:
        raise RegistryError("an approval must be signed", "pass --key with your SSH private key (its public key must be in "
                                                           f"{lifecycle.allowed_signers})")
    snap = registry.snapshot(lifecycle)
    entry = snap.state.version(model, version)
    stage = stage or lifecycle.next_stage(entry.stage)
    if stage is None:
        raise RegistryError(f"{ref} is in {entry.stage}, from where no promotion goes on, so there is nothing to approve",
                            "approve a version that is registered or in an earlier stage")
    if stage not in lifecycle.stages[:-1]:
        raise RegistryError(f"cannot approve {ref} for {stage!r}", f"stages a version is promoted to: {', '.join(lifecycle.stages[:-1])}")
    event = registry.new_event(snap, {"type": "approve", "model": model, "version": version, "stage": stage,
                                           "record_sha256": entry.record_sha256})
    event = registry.sign(event, Path(key), lifecycle)
    written = registry.write(event, snap, push)
    return {"model": model, "version": version, "stage": stage, "signer": event["signer"], "event": written}


def archive(project: str | Path = ".", ref: str = "", reason: str = "", key: str | Path | None = None,
            push: str | None = None, _snapshot: Snapshot | None = None, _registry: Registry | None = None) -> dict[str, Any]:
    """Retire a version (the lifecycle's last stage); it stays in the history and can be rolled back to."""
    registry = _registry or Registry.open(project)
    lifecycle = registry.lifecycle()
    model, version = parse_ref(ref)
    snap = _snapshot or registry.snapshot(lifecycle)
    entry = snap.state.version(model, version)
    if entry.stage == lifecycle.retired:
        raise RegistryError(f"{ref} is already {lifecycle.retired}", "nothing to do")
    moves = [{"version": version, "from": entry.stage, "to": lifecycle.retired}]
    tags = _stage_tags(snap.state, model, moves, lifecycle.exclusive)
    event = registry.new_event(snap, {"type": "archive", "model": model, "version": version, "stage": lifecycle.retired,
                                           "reason": reason, "moves": moves, "tags": tags})
    event = registry.signed(event, key, lifecycle)
    written = registry.write(event, snap, push)
    return {"model": model, "version": version, "from": entry.stage, "stage": lifecycle.retired, "event": written}


def rollback(project: str | Path = ".", model: str = "", reason: str = "", key: str | Path | None = None,
             push: str | None = None) -> dict[str, Any]:
    """Put the previous production version back as a new event; the current one is archived. History stays."""
    registry = Registry.open(project)
    lifecycle = registry.lifecycle()
    top = lifecycle.stages[-2]
    snap = registry.snapshot(lifecycle)
    current = snap.state.occupant(model, top)
    earlier = [v for v in snap.state.entries.get((model, top), []) if v != current]
    if not earlier:
        raise RegistryError(f"{model} has no earlier {top} version to roll back to",
                            f"history: edgekit registry history {model}")
    previous = snap.state.version(model, earlier[-1])
    moves = [{"version": previous.version, "from": previous.stage, "to": top}]
    if current:
        moves.append({"version": current, "from": top, "to": lifecycle.retired})
    event = registry.new_event(snap, {"type": "rollback", "model": model, "version": previous.version, "stage": top,
                                           "replaces": current, "reason": reason, "moves": moves,
                                           "tags": _stage_tags(snap.state, model, moves, lifecycle.exclusive)})
    event = registry.signed(event, key, lifecycle)
    written = registry.write(event, snap, push)
    hook = registry.run_hook(top, lifecycle, _hook_env(previous, top, written, model))
    return {"model": model, "version": previous.version, "stage": top, "replaces": current, "event": written, "deploy": hook}


# -- observations: what a server saw of a version ------------------------------------------------------
def record_ramp(project: str | Path = ".", ref: str = "", against: str | None = None, outcome: str = "",
                reason: str = "", evidence: dict[str, Any] | None = None, key: str | Path | None = None,
                push: str | None = None) -> dict[str, Any]:
    """Write a ``ramp`` event: a candidate's blue-green ramp against the production version ``against``, with its
    outcome (``rolled_back`` or ``completed``), why, and each step's live figures. It moves no stage: a completed
    ramp is followed by the candidate's ``promote`` through the gates."""
    return _observe(project, ref, {"type": "ramp", "against": against, "outcome": outcome, "reason": reason,
                                   "evidence": evidence or {}}, key, push)


def record_telemetry(project: str | Path = ".", ref: str = "", summary: dict[str, Any] | None = None,
                     key: str | Path | None = None, push: str | None = None) -> dict[str, Any]:
    """Write a ``telemetry`` event: ``edgekit monitor``'s live figures of a version beside its benchmarked ones."""
    return _observe(project, ref, {"type": "telemetry", "summary": summary or {}}, key, push)


def _observe(project: str | Path, ref: str, fields: dict[str, Any], key: str | Path | None, push: str | None) -> dict[str, Any]:
    registry = Registry.open(project)
    lifecycle = registry.lifecycle()
    model, version = parse_ref(ref)
    snap = registry.snapshot(lifecycle)
    entry = snap.state.version(model, version)
    event = registry.new_event(snap, {**fields, "model": model, "version": version, "stage": entry.stage,
                                           "record_sha256": entry.record_sha256})
    written = registry.write(registry.signed(event, key, lifecycle), snap, push)
    return {"model": model, "version": version, "type": fields["type"], "event": written}


def observations(project: str | Path = ".", model: str | None = None, version: str | None = None,
                 kind: str | None = None) -> list[dict[str, Any]]:
    """The ramp and telemetry events, oldest first (``kind``: only ``ramp`` or only ``telemetry``)."""
    from edgekit.registry.state import OBSERVATIONS

    return [e for e in history(project, model, version) if e["type"] in OBSERVATIONS and kind in (None, e["type"])]


# -- reading -----------------------------------------------------------------------------------------
def show(project: str | Path = ".", model: str | None = None) -> dict[str, Any]:
    """Models, their versions and which version holds each stage."""
    registry = Registry.open(project)
    lifecycle = registry.lifecycle()
    snap = registry.snapshot(lifecycle)
    models = [model] if model else snap.state.models()
    if model and model not in snap.state.models():
        raise RegistryError(f"model {model!r} is not registered", f"registered: {', '.join(snap.state.models()) or 'none'}")
    grouped: dict[str, list[Version]] = {}  # one pass: of_model() per model is models × versions
    for entry in sorted(snap.state.versions.values(), key=lambda v: v.registered_seq):
        grouped.setdefault(entry.model, []).append(entry)
    return {"head": {"seq": snap.head.seq, "hash": snap.head.hash}, "stages": list(lifecycle.stages),
            "models": {m: _model_view(snap.state, m, lifecycle, grouped[m]) for m in models}}


def _model_view(state: State, model: str, lifecycle: Lifecycle, versions: list[Version]) -> dict[str, Any]:
    return {"latest": versions[-1].version if versions else None,
            "stages": {s: state.occupant(model, s) for s in lifecycle.stages if s in lifecycle.exclusive},
            "versions": [v.summary() for v in versions]}


def history(project: str | Path = ".", model: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
    """The events, oldest first, each with its hash; optionally of one model or version."""
    registry = Registry.open(project)
    events = registry.log.events()
    chosen = [(e, h) for e, h in zip(events, registry.log.hashes, strict=True) if (model is None or e["model"] == model) and
              (version is None or e.get("version") == version or any(m["version"] == version for m in e.get("moves", [])))]
    return [{**{k: v for k, v in e.items() if k != "signature"}, "hash": h, "signed": "signature" in e} for e, h in chosen]


def describe(project: str | Path, ref: str) -> dict[str, Any]:
    """One version: its state, approvals and full reproduction record."""
    registry = Registry.open(project)
    model, version = parse_ref(ref)
    entry = registry.state().version(model, version)
    return {**entry.summary(), "record": load_record(registry, entry)}


def checkpoint(project: str | Path = ".") -> dict[str, Any]:
    """The log's last event, to keep where the writer cannot rewrite it (see README: the audit log)."""
    registry = Registry.open(project)
    head = registry.log.head()
    return {"seq": head.seq, "hash": head.hash, "commit": head.commit}


# -- expiry ------------------------------------------------------------------------------------------
def check(project: str | Path = ".", now: str | None = None, archive_expired: bool = False,
          key: str | Path | None = None) -> dict[str, Any]:
    """Versions past their stage's review-by date, and those within the warning window.

    Args:
        now: an ISO date or time to check at (default: now, UTC).
        archive_expired: archive each expired version as a signed event (``key`` needed).
    """
    registry = Registry.open(project)
    lifecycle = registry.lifecycle()
    at = _parse_time(now) if now else dt.datetime.now(dt.UTC)
    snap = registry.snapshot(lifecycle)
    expired, expiring = [], []
    for entry in sorted(snap.state.versions.values(), key=lambda v: v.registered_seq):
        days = lifecycle.review_days.get(entry.stage or "")
        if days is None or not entry.entered_time:
            continue
        due = _parse_time(entry.entered_time) + dt.timedelta(days=days)
        item = {"ref": f"{entry.model}@{entry.version}", "stage": entry.stage, "review_by": due.isoformat(timespec="seconds"),
                "days_left": round((due - at).total_seconds() / 86400, 2)}
        if due <= at:
            expired.append(item)
        elif due - at <= dt.timedelta(days=lifecycle.warn_days):
            expiring.append(item)
    served = _served_after_review(registry, expired)
    archived = []
    if archive_expired and expired:
        if not key:
            raise RegistryError("archiving expired versions writes signed events", "pass --key with your SSH private key")
        for item in expired:
            archived.append(archive(project, item["ref"], f"expired: review-by date {item['review_by']} passed", key))
    return {"at": at.isoformat(timespec="seconds"), "expired": expired, "expiring": expiring, "served_expired": served,
            "archived": archived}


def _served_after_review(registry: Registry, expired: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The expired versions a server still answered with after their review-by date: the latest telemetry event
    (``edgekit monitor``) of each, recorded after that date, that counts answers."""
    due = {item["ref"]: _parse_time(item["review_by"]) for item in expired}
    served: dict[str, dict[str, Any]] = {}
    for event in registry.log.events() if due else []:
        ref = f"{event['model']}@{event.get('version')}"
        answered = event.get("summary", {}).get("live", {}).get("answered", 0) if event["type"] == "telemetry" else 0
        if ref in due and answered and _parse_time(event["time"]) > due[ref]:
            served[ref] = {"ref": ref, "review_by": due[ref].isoformat(timespec="seconds"), "telemetry_seq": event["seq"],
                           "seen": event["time"], "answered": answered}
    return list(served.values())


def _parse_time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise RegistryError(f"time {text!r} is not an ISO date", "write it as 2026-12-31 or 2026-12-31T12:00:00+00:00") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# -- fetch (what a deployment runs) --------------------------------------------------------------------
def fetch(project: str | Path = ".", model: str = "", out: str | Path = "", stage: str | None = None,
          version: str | None = None) -> dict[str, Any]:
    """Download the version a stage holds (or a named version) with ``dvc artifacts get`` and check every
    file against the digests in its registry record before anyone runs it.

    Raises:
        IntegrityError: a downloaded file is missing, extra or differs from the record.
    """
    import subprocess
    import sys

    from edgekit.errors import IntegrityError
    from edgekit.registry.record import files_differing

    registry = Registry.open(project)
    lifecycle = registry.lifecycle()
    state = registry.snapshot(lifecycle).state
    stage = None if version else (stage or lifecycle.stages[-2])
    name = version or state.occupant(model, stage)
    if name is None:
        raise RegistryError(f"no version of {model} is in {stage}", f"see `edgekit registry show {model}`")
    entry = state.version(model, name)
    record = load_record(registry, entry)
    target = Path(out or Path("deploy") / model).resolve()
    done = subprocess.run([sys.executable, "-m", "dvc", "artifacts", "get", str(registry.repo.root), model, "--rev", name,
                           "-o", str(target), "--force"], cwd=registry.project, capture_output=True, text=True)
    if done.returncode:
        raise RegistryError(f"`dvc artifacts get` of {model}@{name} failed: {done.stderr.strip()[-500:]}",
                            "push the variant to the DVC remote (`dvc push`) and check `dvc remote list`")
    wrong = [name for name, _, _ in files_differing(target, record)]
    if wrong:
        raise IntegrityError(f"{model}@{name} fetched into {target} does not match its registry record: {', '.join(wrong[:5])}",
                             "do not deploy it; run `edgekit registry verify` and re-push the variant with `dvc push`")
    return {"model": model, "version": name, "stage": entry.stage, "variant": entry.variant, "out": str(target),
            "files": len(record["files"]), "record_sha256": entry.record_sha256, "tag_commit": entry.tag_commit}
