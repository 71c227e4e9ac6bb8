"""``edgekit serve`` and ``edgekit monitor`` (``edgekit/__main__.py`` sends them here, like the registry's verbs).

An ``EdgekitError`` (a version whose files differ from its record, a bad policy, an unreachable endpoint) is one
``error:`` line with its fix on stderr and exit code 1; a usage error exits 2.

Example:
    $ edgekit serve --model all-minilm-l6-v2 --candidate v1.2.0 --port 8000
    $ edgekit monitor --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgekit.errors import ConfigError, EdgekitError

DEFAULT_TELEMETRY = Path(".edgekit") / "telemetry"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="edgekit", description="Serve registered versions and watch them.")
    verbs = root.add_subparsers(dest="verb", required=True)
    serve = verbs.add_parser("serve", help="serve the production version (or a named one), optionally ramping in a candidate")
    serve.add_argument("--project", "-C", type=Path, default=Path("."), help="the registry's project folder")
    serve.add_argument("--model", help="the registry's model name (default: the only one)")
    serve.add_argument("--version", help="serve this version instead of the stage's")
    serve.add_argument("--stage", help="serve the version this stage holds (default: production)")
    serve.add_argument("--folder", type=Path, help="the version's files (default: where it was registered from)")
    serve.add_argument("--candidate", help="a version to ramp in against the served one (blue-green, from the policy's serving.ramp)")
    serve.add_argument("--candidate-folder", type=Path, help="the candidate's files (default: where it was registered from)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--threads", type=int, default=0, help="runtime threads per version (default: the physical cores, halved when a candidate is served too)")
    serve.add_argument("--max-batch-size", type=int, default=32, help="inputs per runtime call at most (dynamic batching)")
    serve.add_argument("--max-wait-ms", type=float, default=0.0,
                       help="how long a batch waits for more requests (default 0: it takes only those already queued)")
    serve.add_argument("--max-tokens", type=int, default=128, help="tokens kept per input (longer inputs are truncated)")
    serve.add_argument("--telemetry", type=Path, default=None, help=f"metrics and samples folder (default: <project>/{DEFAULT_TELEMETRY})")
    serve.add_argument("--reference", type=Path, default=None,
                       help="the drift tests' reference: a data folder with sts_pairs.jsonl (default: <project>/data/validation), "
                            "for a decoder one with heldout.txt (default: <project>/data/decoder)")
    serve.add_argument("--key", help="SSH key that signs the ramp's registry events and the promotion")
    serve.add_argument("--fault", action="append", default=[], metavar="VERSION:SPEC",
                       help="inject a fault to rehearse a rollback, e.g. v1.2.0:delay_ms=40 or v1.2.0:error_rate=0.2")
    serve.set_defaults(handler=_serve)
    watch = verbs.add_parser("monitor", help="live figures next to the benchmark, drift, and a telemetry event per version")
    watch.add_argument("--project", "-C", type=Path, default=Path("."))
    watch.add_argument("--url", default="http://127.0.0.1:8000", help="a server, or a Prometheus text endpoint (/metrics, /federate)")
    watch.add_argument("--telemetry", type=Path, help="the server's telemetry folder (default: the one the server reports)")
    watch.add_argument("--no-write", action="store_true", help="do not write telemetry events to the registry")
    watch.add_argument("--key", help="SSH key that signs the telemetry events")
    watch.add_argument("--json", action="store_true")
    watch.set_defaults(handler=_monitor)
    return root


def _serve(args: argparse.Namespace) -> None:
    from edgekit.serve.telemetry import open_telemetry

    project = args.project.resolve()
    telemetry = open_telemetry(args.telemetry or project / DEFAULT_TELEMETRY)   # before prometheus_client is imported
    faults = _faults(args.fault)
    server = _server(args, project, telemetry, faults)
    import uvicorn

    from edgekit.serve.app import create_app

    print(f"serving {server.stable.served.ref} ({server.stable.served.variant})"
          + (f" with candidate {server.candidate.served.ref} ramping" if server.candidate else "")
          + f" on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(create_app(server), host=args.host, port=args.port, log_level="warning", access_log=False)


def _server(args: argparse.Namespace, project: Path, telemetry, faults: dict[str, Any]):
    from edgekit.params import physical_cores
    from edgekit.serve.app import Server, Slot
    from edgekit.serve.policy import serving_policy
    from edgekit.serve.resolve import resolve

    stable = resolve(project, args.model, args.version, args.stage, args.folder)
    candidate = resolve(project, stable.model, args.candidate, None, args.candidate_folder) if args.candidate else None
    # Two versions that each spin a thread per core oversubscribe the machine: measured on 2 cores, a healthy candidate's
    # p99 went from 29 ms to 1.5 s. By default the versions share the cores.
    threads = args.threads or (max(1, physical_cores() // 2) if candidate else physical_cores())
    if candidate:
        _check_candidate(project, stable, candidate)
    unknown = set(faults) - {stable.version, *([candidate.version] if candidate else [])}
    if unknown:
        raise ConfigError("--fault", sorted(unknown)[0], "a version this server serves", "the command line")
    batching = {"max_tokens": args.max_tokens, "max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms}
    slots = [Slot.load(served, threads, fault=faults.get(served.version), **batching) for served in (stable, candidate) if served]
    reference = _heldout(project, args.reference) if stable.kind == "generation" else _reference(project, args.reference)
    return Server(project, slots[0], telemetry, slots[1] if candidate else None, serving_policy(project), args.key, reference)


def _check_candidate(project: Path, stable, candidate) -> None:
    """A completed ramp promotes the candidate into the served version's stage, so it must be one stage before it."""
    from edgekit.registry.core import Registry

    if candidate.version == stable.version:
        raise ConfigError("--candidate", candidate.version, f"a version other than the one served ({stable.version})", "the command line")
    lifecycle = Registry.open(project).lifecycle()
    if lifecycle.next_stage(candidate.stage) != stable.stage:
        raise ConfigError("--candidate", candidate.version, f"a version whose next stage is {stable.stage} ({candidate.ref} is in "
                          f"{candidate.stage or 'no stage'}; a completed ramp promotes it there); promote it first: edgekit registry "
                          f"promote {candidate.ref}", "the command line")


def _faults(specs: list[str]) -> dict[str, Any]:
    from edgekit.serve.engine import Fault

    faults = {}
    for spec in specs:
        version, sep, fault = spec.partition(":")
        if not sep:
            raise ConfigError("--fault", spec, "VERSION:SPEC, e.g. v1.2.0:delay_ms=40", "the command line")
        faults[version] = Fault.parse(fault)
    return faults


def _reference(project: Path, folder: Path | None) -> list[str]:
    """The sentences of the validation pairs (never the test pairs, which the gates are judged on)."""
    from edgekit.datasets import Pair, unique_sentences

    pairs_file = (folder or project / "data" / "validation") / "sts_pairs.jsonl"
    if folder is not None and not pairs_file.is_file():
        raise ConfigError("--reference", str(folder), f"a folder holding sts_pairs.jsonl ({pairs_file} is missing)", "the command line")
    if not pairs_file.is_file():
        return []
    lines = pairs_file.read_text(encoding="utf-8").splitlines()
    return unique_sentences([Pair(**json.loads(line)) for line in lines if line.strip()])


def _heldout(project: Path, folder: Path | None) -> list[str]:
    path = (folder or project / "data" / "decoder") / "heldout.txt"
    if folder is not None and not path.is_file():
        raise ConfigError("--reference", str(folder), f"a folder holding heldout.txt ({path} is missing)", "the command line")
    return heldout_prompts(path) if path.is_file() else []


def heldout_prompts(path: Path, seed: int = 0) -> list[str]:
    """A decoder's drift reference: each held-out sentence (which no training step saw) cut after a seeded random
    number of its words, at least one and fewer than all, as a completion prompt is text to continue. (Whole
    sentences would not do: after a sentence's full stop the model is all but certain of the end of text, so
    every real prompt would raise the entropy alarm; measured, KS statistic 1.0.)"""
    import random

    rng = random.Random(seed)
    prompts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if len(words) >= 2:
            prompts.append(" ".join(words[: rng.randint(1, len(words) - 1)]))
    return prompts


def _monitor(args: argparse.Namespace) -> None:
    from edgekit.serve.monitor import monitor

    summary = monitor(args.project, args.url, args.telemetry, write=not args.no_write, key=args.key)
    if args.json:
        print(json.dumps(summary, indent=1 if sys.stdout.isatty() else None, sort_keys=True))
        return
    for ref, version in summary["versions"].items():
        live, bench = version["live"], version["benchmark"]
        if "completion_tokens" in live:
            print(f"{ref} ({version['variant']}, {version['stage']}): {live['answered']} answered, {live['errors']} errors "
                  f"(rate {live['error_rate']}), {live['rejected']} rejected, {live['completion_tokens']} tokens generated; "
                  f"time to first token p50 {live['ttft_p50_ms']} ms (benchmark {bench.get('ttft_ms')} ms at {bench.get('prompt_length')} "
                  f"prompt tokens); per output token p50 {live['tpot_p50_ms']} / p99 {live['tpot_p99_ms']} ms (benchmark "
                  f"{bench.get('tpot_p50_ms')} (CI {bench.get('tpot_p50_ci95_ms')}) / {bench.get('tpot_p99_ms')} ms); "
                  f"p50 per token live/benchmark {version.get('tpot_p50_live_over_benchmark')}")
            print(f"  drift: {'ALARM' if version['drift'].get('alarm') else 'no alarm'} ({version['drift'].get('status')})")
            continue
        print(f"{ref} ({version['variant']}, {version['stage']}): {live['answered']} answered, {live['errors']} errors "
              f"(rate {live['error_rate']}), {live['rejected']} rejected; live p50 {live['p50_ms']} ms / p99 {live['p99_ms']} ms; "
              f"benchmark p50 {bench.get('p50_ms')} ms (CI {bench.get('p50_ci95_ms')}) / p99 {bench.get('p99_ms')} ms; "
              f"p99 live/benchmark {version.get('p99_live_over_benchmark')}")
        drift = version["drift"]
        print(f"  drift: {'ALARM' if drift.get('alarm') else 'no alarm'} ({drift.get('status')})")
    for event in summary["written"]:
        print(f"  registry: telemetry event {event['seq']} {event['hash'][:12]}")


def run(argv: list[str]) -> int:
    """Run one verb; its exit code. An ``EdgekitError`` propagates (``main`` prints it)."""
    args = parser().parse_args(argv)
    args.handler(args)
    return 0


def main(argv: list[str], traceback: bool = False) -> None:
    """``edgekit serve|monitor ...``: an error is one line on stderr and exit 1."""
    traceback = traceback or "--traceback" in argv
    try:
        code = run([a for a in argv if a != "--traceback"])
    except EdgekitError as exc:
        if traceback:
            raise
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.exit(code)
