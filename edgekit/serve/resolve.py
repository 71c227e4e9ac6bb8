"""Which registered version a server runs: its files checked against its registry record, its identity for
every response, and the benchmark figures its live ones are compared with.

Example:
    >>> served = resolve(".", "all-minilm-l6-v2")          # the production version
    >>> served.identity()["version"], served.headers()["x-edgekit-version"]
    ('v1.1.0', 'v1.1.0')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import IntegrityError
from edgekit.fsutil import read_json, tree_digest


@dataclass(frozen=True)
class ServedVersion:
    """One registered version as a server holds it (loading its runtime is ``edgekit.serve.engine``'s)."""

    model: str
    version: str
    variant: str
    stage: str | None
    runtime: str
    precision: str
    options: dict[str, Any]
    folder: Path
    record_sha256: str
    variant_digest: str          # one sha256 over the record's file digests (``fsutil.tree_digest``)
    event: dict[str, Any]        # the registry event that put the version where it is: {"seq", "hash", "type"}
    benchmark: dict[str, Any] = field(default_factory=dict)
    kind: str = "embedding"      # or "generation": a decoder, served on /v1/completions

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    def identity(self) -> dict[str, Any]:
        """What every response body carries, so each answer traces back to one registry record."""
        return {"model": self.model, "version": self.version, "variant": self.variant, "variant_digest": self.variant_digest,
                "registry_event": {"seq": self.event["seq"], "hash": self.event["hash"]}}

    def headers(self) -> dict[str, str]:
        return {"x-edgekit-model": self.model, "x-edgekit-version": self.version, "x-edgekit-variant": self.variant,
                "x-edgekit-variant-digest": self.variant_digest,
                "x-edgekit-registry-event": f"{self.event['seq']}:{self.event['hash']}"}


def resolve(project: str | Path = ".", model: str | None = None, version: str | None = None, stage: str | None = None,
            folder: str | Path | None = None) -> ServedVersion:
    """The version to serve: ``version``, or the one ``stage`` holds (default: production), with its files.

    Args:
        model: the registry's model name (default: the only registered model).
        folder: where its files are (default: the path it was registered from, in ``project``); every file is
            checked against the digests in the version's registry record.

    Raises:
        RegistryError: an unknown model or version, or no version in the stage.
        IntegrityError: a file is missing, extra or differs from the record; the server must not start.
    """
    from edgekit.registry.api import load_record
    from edgekit.registry.core import Registry
    from edgekit.registry.errors import RegistryError

    registry = Registry.open(project)
    lifecycle = registry.lifecycle()
    snap = registry.snapshot(lifecycle)
    model = model or _only_model(snap.state.models())
    if version is None:
        stage = stage or lifecycle.stages[-2]
        version = snap.state.occupant(model, stage)
        if version is None:
            raise RegistryError(f"no version of {model} is in {stage}",
                                f"promote one (`edgekit registry promote {model}@v1.0.0`) or name it: --version v1.0.0")
    entry = snap.state.version(model, version)
    record = load_record(registry, entry)
    events = snap.events_at(sorted({entry.registered_seq, entry.entered_seq or entry.registered_seq}))
    where = Path(folder) if folder else registry.project / events[entry.registered_seq]["path"]
    _check_files(where, record, entry.model, entry.version)
    manifest = read_json(where / "manifest.json")
    return ServedVersion(model, version, entry.variant, entry.stage, record["runtime"], record["precision"],
                         manifest.get("options") or {}, where.resolve(), entry.record_sha256, tree_digest(record["files"]),
                         _event(events[entry.entered_seq or entry.registered_seq]), benchmark_figures(record),
                         record.get("kind", "embedding"))


def _only_model(models: list[str]) -> str:
    from edgekit.registry.errors import RegistryError

    if len(models) != 1:
        raise RegistryError(f"the registry holds {len(models)} models ({', '.join(models) or 'none'})",
                            "name one with --model" if models else "register one: edgekit registry register")
    return models[0]


def _event(event: dict[str, Any]) -> dict[str, Any]:
    from edgekit.registry.events import event_hash

    return {"seq": event["seq"], "hash": event_hash(event), "type": event["type"]}


def _check_files(folder: Path, record: dict[str, Any], model: str, version: str) -> None:
    from edgekit.registry.record import files_differing

    if not folder.is_dir():
        raise IntegrityError(f"{folder} (the files of {model}@{version}) does not exist",
                             f"fetch them: edgekit registry fetch {model} --version {version} --out deploy/{model}, "
                             f"then serve with --folder deploy/{model}")
    wrong = files_differing(folder, record)
    if wrong:
        shown = "; ".join(f"{name} (recorded {want[:12]}, found {got[:12]})" for name, want, got in wrong[:3])
        raise IntegrityError(f"{folder} does not match the registry record of {model}@{version}: {shown}"
                             + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""),
                             f"refusing to serve it; restore the version's own files with `edgekit registry fetch {model} "
                             f"--version {version} --out deploy/{model}` and serve --folder deploy/{model}")


def benchmark_figures(record: dict[str, Any]) -> dict[str, Any]:
    """The benchmarked latency the live one is compared with: the headline scenario's p50 (with its hierarchical
    bootstrap 95% CI from the pinned samples) and p99, in ms."""
    from edgekit.bench.stats import hierarchical_median_ci, process_samples

    row, evidence = record["metrics"], record.get("evidence", {})
    if record.get("kind") == "generation":
        return generation_figures(row)
    scenario = evidence.get("headline")
    figures: dict[str, Any] = {"scenario": scenario, "p50_ms": row.get("p50_ms"), "p99_ms": row.get("p99_ms")}
    samples = process_samples(evidence["samples"]).get(scenario) if evidence.get("samples") else None
    if samples:
        low, high = hierarchical_median_ci(samples, seed=evidence.get("seed", 0))
        figures["p50_ci95_ms"] = [round(low, 4), round(high, 4)]
    return figures


def generation_figures(row: dict[str, Any]) -> dict[str, Any]:
    """A decoder's benchmarked figures in the units the server measures: time to first token (the prefill of
    ``prompt_length`` tokens, median) and the time per output token (decode; median with its 95% CI, and p99), ms."""
    figures: dict[str, Any] = {"prompt_length": row.get("prompt_length"), "ttft_ms": row.get("ttft_ms"),
                               "tpot_p99_ms": row.get("decode_ms_p99")}
    rate, interval = row.get("decode_tokens_per_s"), row.get("decode_tokens_per_s_ci95")
    if rate:
        figures["tpot_p50_ms"] = round(1000 / rate, 4)
    if interval and all(interval):
        figures["tpot_p50_ci95_ms"] = [round(1000 / interval[1], 4), round(1000 / interval[0], 4)]
    return figures
