"""The whole DVC pipeline on a small subset, in a temporary clone of this checkout.

Real DVC, real git, real runtimes and a real papermill kernel: `dvc repro` from nothing to the
executed report, then a no-op repro, an experiment with `-S`, and a bad parameter that must fail
before any work with the field named.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, small_params
from edgekit.pipeline.report import REMOTE_ASSET
from edgekit.runtimes import runtime_names

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

# One variant per runtime (and both ONNX Runtime precisions): the pipeline must carry every runtime;
# the conformance suite covers every precision.
VARIANTS = ("pytorch-fp32", "ort-fp32", "ort-int8", "ov-int8", "gguf-q8_0", "mlx-int8", "olive-int8")
# The decoder's baseline and one 4-bit variant per runtime that has decoders (fp32 ones are in the conformance suite).
DECODER_VARIANTS = ("llama-fp32", "gguf-q4_k_m", "ort-int4", "ov-int4", "mlx-int4")


def run(args: list[str], cwd: Path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", **extra_env)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def trace_folder(clone: Path) -> Path:
    return clone.with_name(f"{clone.name}-import-trace")


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The tracked files of this checkout in a new git repo, with small params, piped through `dvc repro`."""
    folder = tmp_path_factory.mktemp("clone")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, tracked.split("\0")):
        if (REPO / rel).is_file():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, folder / rel)
    (folder / "dvc.lock").unlink(missing_ok=True)
    template = REPO / ".dvc" / "plots_offline.html"  # made by `make setup` (tools/make_plots_template.py)
    if template.is_file():
        shutil.copy2(template, folder / ".dvc" / template.name)
    params = small_params()
    params["variants"] = {name: params["variants"][name] for name in VARIANTS}
    params["decoder"]["variants"] = {name: params["decoder"]["variants"][name] for name in DECODER_VARIANTS}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], folder)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], folder)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"], folder)
    # every edgekit process records the edgekit files it imported (test_dvc_deps compares them with dvc.lock)
    run(["dvc", "repro"], folder, EDGEKIT_IMPORT_TRACE=str(trace_folder(folder)))
    return folder


def test_repro_produces_the_report_with_every_variant(clone):
    summary = json.loads((clone / "metrics" / "summary.json").read_text())
    assert set(summary["variants"]) == set(VARIANTS)
    for row in summary["variants"].values():
        assert row["status"] == "ok", row
        assert row["p50_ms"] > 0 and row["peak_rss_mb"] > 0 and row["size_mb"] > 0
    assert summary["variants"]["pytorch-fp32"]["speedup"] == 1.0
    assert summary["variants"]["ort-int8"]["size_mb"] < summary["variants"]["ort-fp32"]["size_mb"] / 3
    # each variant's own process: no torch in an ONNX Runtime worker, so far less memory
    assert summary["variants"]["ort-int8"]["peak_rss_mb"] < summary["variants"]["pytorch-fp32"]["peak_rss_mb"] / 2
    html = (clone / "reports" / "report.html").read_text()
    for name in summary["variants"]:
        assert name in html
    assert html.count("data:image/png;base64") >= 2  # latency distributions, speed vs fidelity
    assert not REMOTE_ASSET.search(html)
    assert "Traceback" not in html and "Error" not in json.dumps(json.loads((clone / "reports" / "report.ipynb").read_text())["cells"][-1].get("outputs", []))


def test_repro_measures_every_decoder_variant_against_its_baseline(clone):
    summary = json.loads((clone / "metrics" / "decoder_summary.json").read_text())
    rows = {row["variant"]: row for row in summary["variants"]}
    assert set(rows) == set(DECODER_VARIANTS)
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["decode_tokens_per_s"] > 0 and row["prefill_tokens_per_s"] > 0 and row["model_memory_mb"] > 0
        low, high = row["decode_tokens_per_s_ci95"]
        assert low <= row["decode_tokens_per_s"] <= high
        assert 0 <= row["kl_mean"] < 0.1 and row["top1_agreement"] > 0.8
    base = rows["llama-fp32"]
    assert base["kl_mean"] < 1e-9 and base["top1_agreement"] == 1.0 and base["greedy_identical"] == 1.0
    assert base["perplexity_delta"] == 0.0 and base["decode_speedup"] == 1.0
    # 4-bit weights are at most a third of the fp32 file, on every runtime
    for name in DECODER_VARIANTS[1:]:
        assert rows[name]["size_mb"] < base["size_mb"] / 3, name
    recommendation = summary["recommendation"]
    assert recommendation["variant"] in (*DECODER_VARIANTS[1:], None) and recommendation["why"]
    if recommendation["variant"]:
        assert rows[recommendation["variant"]]["verdicts"][summary["stage"]]["passed"]
    csv_rows = list(csv.DictReader(io.StringIO((clone / "reports" / "decoders.csv").read_text())))
    assert [row["variant"] for row in csv_rows] == list(DECODER_VARIANTS)
    html = (clone / "reports" / "report.html").read_text()
    assert "Small language model" in html and all(name in html for name in DECODER_VARIANTS)


def test_repro_records_the_decision_and_the_ci_gate_enforces_it(clone):
    decision = json.loads((clone / "metrics" / "decision.json").read_text())
    summary = json.loads((clone / "metrics" / "summary.json").read_text())
    recommended = summary["decision"]["recommended"]
    assert decision["target_stage"] == "production" and decision["recommended"] == (recommended or "none")
    assert decision["verdict"]["pytorch-fp32"] == "fail"  # the baseline is not faster than itself
    gates = json.loads((clone / "outputs" / "gates.json").read_text())
    assert gates["policy"]["sha256"] == hashlib.sha256((clone / "policy.yaml").read_bytes()).hexdigest()
    assert "gate" in yaml.safe_load((clone / "dvc.lock").read_text())["stages"]  # the advisory gate stage ran
    done = run(["edgekit", "gate"], clone, check=False)
    decoder = json.loads((clone / "metrics" / "decoder_summary.json").read_text())["recommendation"]["variant"]
    if decoder is None:  # CI's gate blocks on the decoder's verdicts too
        assert done.returncode == 1 and "no decoder variant passes the blocking decoder gates of stage 'production'" in done.stderr
        return
    if recommended is None:  # a host where nothing qualifies: recorded by dvc repro, blocked by CI's gate
        assert done.returncode == 1 and "no variant passes the blocking gates of stage 'production'" in done.stderr
        return
    assert done.returncode == 0 and f"recommended: {recommended}" in done.stdout
    assert f"recommended decoder: {decoder}" in done.stdout
    assert decoder in (clone / "reports" / "model_card.html").read_text()
    assert summary["variants"][recommended]["verdicts"]["production"] in ("pass", "pass with warnings")
    speedup = next(g for g in gates["variants"][recommended]["production"]["gates"] if g["gate"] == "speedup")
    assert speedup["result"] == "pass" and speedup["value"] >= 2.0 and speedup["evidence"][0] == f"outputs/benchmark/{recommended}.json"
    card = (clone / "reports" / "model_card.html").read_text()
    assert recommended in card and gates["policy"]["sha256"] in card and not REMOTE_ASSET.search(card)


def _imports_by_stage(clone: Path) -> dict[str, set[str]]:
    """The edgekit files each stage's processes imported (parent, children, kernels), by DVC stage name."""
    imported: dict[str, set[str]] = {}
    for path in trace_folder(clone).glob("*.json"):
        record = json.loads(path.read_text())
        imported.setdefault(record["stage"], set()).update(record["files"])
    return imported


def _runs_on(stage: str, clone: Path) -> tuple[str, ...]:
    """Other runtimes' folders a per-variant stage may import: what its runtime declares it runs on.

    DVC's foreach gives one variant one runtime folder (``edgekit/runtimes/${item.runtime}``); an Olive
    variant is made by Olive and run by ONNX Runtime, which one template cannot list (see dvc.yaml).
    """
    from edgekit.runtimes import get_runtime

    family, _, variant = stage.partition("@")
    if not variant:
        return ()
    params = yaml.safe_load((clone / "params.yaml").read_text())
    variants = params["decoder"]["variants"] if family.startswith("decoder_") else params["variants"]
    runtime = variants[variant]["runtime"]
    return get_runtime(runtime).runs_on


def _dep_problems(stage: str, deps: list[str], files: set[str], runs_on: tuple[str, ...] = ()) -> list[str]:
    code = [d for d in deps if d == "edgekit" or d.startswith("edgekit/")]
    allowed = code + [f"edgekit/runtimes/{name}" for name in runs_on]
    problems = [f"{stage}: imports {f}, which its deps lack" for f in sorted(files)
                if not any(f == d or f.startswith(f"{d}/") for d in allowed)]
    for dep in code:
        # a runtime's folder is one unit (its light config and its backend); any other folder must be imported whole
        folder = (REPO / dep).is_dir()
        listed = {p.relative_to(REPO).as_posix() for p in (REPO / dep).rglob("*.py")} if folder else {dep}
        unused = sorted(listed - files)
        if unused and (not dep.startswith("edgekit/runtimes/") or listed == set(unused)):
            problems.append(f"{stage}: depends on {dep} but never imports {', '.join(unused)}")
    if "requirements/lock.txt" not in deps:
        problems.append(f"{stage}: runs third-party code but does not depend on requirements/lock.txt")
    return problems


def test_every_stage_depends_on_exactly_the_edgekit_code_it_runs(clone):
    """dvc.yaml must name every edgekit file a stage imports (children included) and nothing it does not."""
    imported = _imports_by_stage(clone)
    stages = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    problems = []
    for stage, entry in stages.items():
        if stage not in imported:
            problems.append(f"{stage}: ran without an import trace")
            continue
        problems += _dep_problems(stage, [d["path"] for d in entry.get("deps", [])], imported[stage], _runs_on(stage, clone))
    assert not problems, "\n".join(problems)


def test_every_variant_folder_has_a_manifest_that_verifies(clone):
    from edgekit.manifest import verify_manifest

    for name in VARIANTS:
        manifest = verify_manifest(clone / "models" / "variants" / name)
        assert manifest["source_sha256"] and manifest["tools"]["python"]


def test_a_second_repro_reruns_only_the_environment_check(clone):
    """The environment stage always runs (a new CPU or lock must be seen); on the same machine its output is
    unchanged, so nothing after it runs."""
    assert run(["dvc", "status"], clone).stdout.split() == ["environment:", "always", "changed"]
    lock = (clone / "dvc.lock").read_text()
    done = run(["dvc", "repro"], clone)
    assert re.findall(r"Running stage '([^']+)'", done.stdout) == ["environment"], done.stdout[-2000:]
    assert (clone / "dvc.lock").read_text() == lock  # nothing volatile in the environment record


def _git_commit(clone: Path, message: str) -> None:
    run(["git", "add", "-A"], clone)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], clone)


def _relaxed_policy(clone: Path) -> None:
    """Every gate a warning: the story's mechanics on a host where nothing passes the shipped gates."""
    policy = yaml.safe_load((clone / "policy.yaml").read_text())
    for gates in [*policy["stages"].values(), *policy.get("decoder_stages", {}).values()]:
        for rule in gates.values():
            rule["action"] = "warn"
    (clone / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))


def test_the_registry_story_from_the_readme(clone, tmp_path):
    """dvc repro → register the recommended variant → staging → a signed approval → production → verify → check;
    `gto show` and `dvc artifacts get --stage production` (through `edgekit registry fetch`) agree with
    `edgekit registry show`."""
    original = run(["git", "rev-parse", "HEAD"], clone).stdout.strip()
    key = tmp_path / "alice"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(key)], tmp_path)
    signers = clone / ".edgekit" / "allowed_signers"
    signers.write_text(signers.read_text() + f'alice@example.com namespaces="edgekit-registry" {key.with_suffix(".pub").read_text()}')
    run(["dvc", "remote", "add", "-d", "local", str(tmp_path / "dvc-remote")], clone)
    _git_commit(clone, "measured; alice approves; a local DVC remote")
    run(["dvc", "push", "-q"], clone)
    decision = json.loads((clone / "metrics" / "decision.json").read_text())
    recommended = decision["recommended"] if decision["recommended"] != "none" else None
    variant = recommended or "ort-int8"
    registered = json.loads(run(["edgekit", "registry", "register", "--variant", variant, "--json"], clone).stdout)
    shipped_policy = (clone / "policy.yaml").read_text()
    if recommended is None:  # nothing passes on this host: the mechanics, with the gates as warnings
        _relaxed_policy(clone)
        _git_commit(clone, "gates as warnings")
    try:
        _promote_approve_verify_fetch_reproduce(clone, tmp_path, key, registered, variant)
    finally:  # the later tests see the clone as before: the shipped policy, and dvc.lock not committed
        (clone / "policy.yaml").write_text(shipped_policy)
        run(["git", "reset", "-q", original], clone)


def _promote_approve_verify_fetch_reproduce(clone: Path, tmp_path: Path, key: Path, registered: dict, variant: str) -> None:
    ref = f"{registered['model']}@{registered['version']}"
    run(["edgekit", "registry", "promote", ref, "--json"], clone)
    refused = run(["edgekit", "registry", "promote", ref], clone, check=False)
    assert refused.returncode == 1 and "needs 1 signed approval" in refused.stderr, refused.stderr
    approval = json.loads(run(["edgekit", "registry", "approve", ref, "--key", str(key), "--json"], clone).stdout)
    assert approval["signer"]["principal"] == "alice@example.com"
    assert json.loads(run(["edgekit", "registry", "promote", ref, "--json"], clone).stdout)["stage"] == "production"
    assert json.loads(run(["edgekit", "registry", "verify", "--json"], clone).stdout)["ok"]
    run(["edgekit", "registry", "check"], clone)  # just promoted: nothing due for review
    shown = json.loads(run(["edgekit", "registry", "show", "--json"], clone).stdout)["models"][registered["model"]]
    assert shown["stages"]["production"] == registered["version"]
    gto = json.loads(run(["gto", "show", "--json"], clone).stdout)
    assert gto[registered["model"]]["stage"]["production"] == registered["version"], gto
    fetched = json.loads(run(["edgekit", "registry", "fetch", registered["model"], "--out", str(tmp_path / "deploy"), "--json"],
                             clone).stdout)
    assert fetched["version"] == registered["version"] and fetched["variant"] == variant
    manifest = json.loads((tmp_path / "deploy" / "manifest.json").read_text())
    assert manifest["variant"] == variant and manifest["files"]
    _serve_the_fetched_copy_and_monitor(clone, tmp_path, registered, variant)
    # reproduce: the recorded commit in a worktree, the variant's stages and select re-run on the real runtime
    reproduced = json.loads(run(["edgekit", "registry", "reproduce", ref, "--json"], clone, check=False).stdout)
    assert reproduced["stages"] == [f"optimize@{variant}", f"benchmark@{variant}", f"evaluate@{variant}", "select"]
    assert not reproduced["files_differing"], reproduced["lines"]
    deterministic = [m for m in reproduced["metrics"] if m["metric"] in ("size_mb", "retention", "cosine_mean")]
    assert len(deterministic) == 3 and all(m["ok"] for m in deterministic), reproduced["lines"]


def _start_server(clone: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`edgekit serve *args` on a free loopback port with one thread, once /readyz answers 200: the process and its URL."""
    import socket
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    env = {k: v for k, v in env.items() if not k.startswith(("PROMETHEUS", "EDGEKIT_IMPORT_TRACE"))}
    server = subprocess.Popen(["edgekit", "serve", *args, "--port", str(port), "--threads", "1"],
                              cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        assert server.poll() is None, server.stdout.read().decode()[-3000:]
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    return server, url


def _serve_the_fetched_copy_and_monitor(clone: Path, tmp_path: Path, registered: dict, variant: str) -> None:
    """The README's "Serve and watch" on the real variant: `edgekit serve --folder` of the fetched copy answers with
    the variant's own embedding and the version's identity, and `edgekit monitor` records it in the registry."""

    import httpx
    import numpy as np

    from edgekit.serve.engine import EmbeddingEngine
    from edgekit.serve.resolve import resolve

    server, url = _start_server(clone, "--folder", str(tmp_path / "deploy"))
    try:
        text = "A man is playing a guitar on the stage."
        answer = httpx.post(f"{url}/v1/embeddings", json={"model": registered["model"], "input": [text]}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-edgekit-version"] == registered["version"] and answer.headers["x-edgekit-variant"] == variant
        served = resolve(clone, registered["model"], folder=tmp_path / "deploy")
        expected = EmbeddingEngine(served, threads=1, max_tokens=128).embed([text]).vectors[0]
        np.testing.assert_allclose(answer.json()["data"][0]["embedding"], expected, rtol=1e-4, atol=1e-5)
        monitored = json.loads(run(["edgekit", "monitor", "--url", url, "--json"], clone).stdout)
        live = monitored["versions"][f"{registered['model']}@{registered['version']}"]["live"]
        assert live["answered"] == 1 and live["errors"] == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
    history = json.loads(run(["edgekit", "registry", "history", "--json"], clone).stdout)
    assert history[-1]["type"] == "telemetry" and history[-1]["summary"]["live"]["answered"] == 1
    assert json.loads(run(["edgekit", "registry", "verify", "--json"], clone).stdout)["ok"]


def test_a_decoder_version_is_registered_promoted_and_served_on_completions(clone, tmp_path):
    """The README's decoder story on the real pipeline's recommended decoder variant: `register --decoder` (the
    tokenizer scanned), promote to staging through the decoder gates, `edgekit serve --stage staging` answers
    /v1/completions with the variant's own greedy text, and `edgekit monitor` records TTFT and per-token figures."""

    import httpx

    from edgekit.serve.generate import GenerationEngine, Sampling
    from edgekit.serve.resolve import resolve

    assert (clone / "models" / "decoder_variants" / "ort-int4" / "tokenizer.model").is_file()  # every runtime's folder carries it
    original = run(["git", "rev-parse", "HEAD"], clone).stdout.strip()
    shipped_policy = (clone / "policy.yaml").read_text()
    recommended = json.loads((clone / "metrics" / "decoder_summary.json").read_text())["recommendation"]["variant"]
    if recommended is None:  # nothing passes on this host: the mechanics, with the gates as warnings
        _relaxed_policy(clone)
    _git_commit(clone, "measured (decoder story)")
    variant = recommended or "gguf-q4_k_m"
    try:
        registered = json.loads(run(["edgekit", "registry", "register", "--decoder", "--variant", variant, "--json"], clone).stdout)
        ref = f"{registered['model']}@{registered['version']}"
        promoted = json.loads(run(["edgekit", "registry", "promote", ref, "--json"], clone).stdout)
        assert promoted["stage"] == "staging" and "decode_speedup" in promoted["gates"]["values"], promoted
        server, url = _start_server(clone, "--model", registered["model"], "--stage", "staging", "--telemetry", str(tmp_path / "telemetry"))
        try:
            prompt = "During January the lake"
            answer = httpx.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 12, "temperature": 0}, timeout=60)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-edgekit-version"] == registered["version"] and answer.headers["x-edgekit-variant"] == variant
            engine = GenerationEngine(resolve(clone, registered["model"], stage="staging"), threads=1)
            expected = engine.generate(engine.prompt_ids(prompt), Sampling(max_tokens=12, temperature=0))
            assert answer.json()["choices"][0]["text"] == expected.text
            monitored = json.loads(run(["edgekit", "monitor", "--url", url, "--json"], clone).stdout)
            live = monitored["versions"][ref]["live"]
            assert live["answered"] == 1 and live["ttft_p50_ms"] > 0
        finally:
            server.terminate()
            server.wait(timeout=30)
        assert json.loads(run(["edgekit", "registry", "verify", "--json"], clone).stdout)["ok"]
    finally:  # the later tests see the clone as before
        (clone / "policy.yaml").write_text(shipped_policy)
        run(["git", "reset", "-q", original], clone)


def test_dvc_metrics_are_the_short_decision_record(clone):
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], clone).stdout)
    files = metrics[""]["data"]
    assert set(files) == {"metrics/baseline.json", "metrics/decision.json", "metrics/decoder_model.json"}, set(files)
    assert files["metrics/decoder_model.json"]["data"]["heldout_perplexity"] > 1
    decision = files["metrics/decision.json"]["data"]
    assert set(VARIANTS) <= set(decision["speedup_ci_low"]) and set(VARIANTS) <= set(decision["model_memory_mb"])


def test_experiment_with_a_changed_parameter(clone):
    run(["dvc", "exp", "run", "-S", "variants.ort-int8.options.per_channel=false", "-S", "policy.stage=staging",
         "-S", "policy.yaml:stages.staging.speedup.min=1.1", "-n", "per-tensor"], clone)
    shown = run(["dvc", "exp", "show", "--json"], clone).stdout
    assert "per-tensor" in shown
    # the gate results are experiment metrics: the staging verdicts of this experiment are in the table
    table = run(["dvc", "exp", "show", "--csv", "--only-changed"], clone).stdout
    columns, *rows = csv.reader(io.StringIO(table))
    # DVC prefixes a metric with its file only when the name is ambiguous
    stage = next(i for i, name in enumerate(columns) if name.split(":")[-1] == "target_stage")
    assert any(name.split(":")[-1] == "verdict.ort-int8" for name in columns), columns
    assert any(row[stage] == "staging" for row in rows if "per-tensor" in row), table[:3000]


def test_bad_parameters_fail_before_any_work_naming_the_field(clone, tmp_path):
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["variants"]["ort-typo"] = {"runtime": "onnxrt", "precision": "int8"}
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        done = run(["dvc", "repro"], clone, check=False)
        assert done.returncode != 0
        assert "variants.ort-typo.runtime = 'onnxrt' is not valid" in done.stderr + done.stdout
        assert ", ".join(runtime_names()) in done.stderr + done.stdout
        assert not (clone / "models" / "variants" / "ort-typo").exists()
    finally:
        run(["git", "checkout", "--", "params.yaml"], clone)


def headless_dom(page: Path, tmp_path: Path) -> str:
    """The DOM of ``page`` after its scripts ran, in Chromium with every network lookup failing."""
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.browser
def test_dvc_plots_render_offline(clone, tmp_path):
    if not (clone / ".dvc" / "plots_offline.html").is_file():
        pytest.fail("the offline plots template is missing: run `make setup` (tools/make_plots_template.py)")
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], clone)
    page = tmp_path / "plots" / "index.html"
    assert not REMOTE_ASSET.search(page.read_text())
    dom = headless_dom(page, tmp_path)
    # vega-embed draws each plot into a canvas of class "marks"; one per plot on the page.
    assert dom.count('class="marks"') == 2, dom[:2000]


@pytest.mark.browser
def test_report_html_renders_offline(clone, tmp_path):
    dom = headless_dom(clone / "reports" / "report.html", tmp_path)
    # every plot is an inlined PNG: Pareto frontier, latency distributions, speed vs fidelity
    images = re.findall(r"<img[^>]*>", dom)
    assert len(images) >= 3 and all("data:image/png;base64," in tag for tag in images), images
    for heading in ("Decision", "Gates with their evidence", "Pareto frontier", "Fairness", "Recommendation for this hardware",
                    "Diagnosis", "Speed against fidelity"):
        assert heading in dom, heading


@pytest.mark.browser
def test_model_card_html_renders_offline(clone, tmp_path):
    dom = headless_dom(clone / "reports" / "model_card.html", tmp_path)
    summary = json.loads((clone / "metrics" / "summary.json").read_text())
    for heading in ("Identity", "Validation", "Gates for production", "Gates for staging", "Measurements", "Environment"):
        assert heading in dom, heading
    assert summary["variants"][summary["decision"]["recommended"]]["files_sha256"] in dom


def test_a_policy_no_variant_can_meet_keeps_repro_green_and_fails_the_ci_gate(clone):
    lock = (clone / "dvc.lock").read_text()
    policy = yaml.safe_load((clone / "policy.yaml").read_text())
    policy["stages"]["production"]["speedup"]["min"] = 1000.0
    (clone / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    try:
        done = run(["dvc", "repro"], clone)
        said = " ".join((done.stdout + done.stderr).split())
        assert "nothing qualifies for production on this host" in said and "outputs/gates.json" in said, said[-3000:]
        for name in VARIANTS:
            # the baseline's speed-up is "missing" when its own headline was measured on a busy machine
            assert re.search(rf"{re.escape(name)}: .*speedup ([\d.]+ < 1000|missing)", said), name
        assert "fail" in (clone / "reports" / "report.html").read_text()  # the evidence is rendered
        gate = run(["edgekit", "gate", "--stage", "production"], clone, check=False)
        assert gate.returncode == 1 and "no variant passes the blocking gates of stage 'production'" in gate.stderr
    finally:
        run(["git", "checkout", "--", "policy.yaml"], clone)
        (clone / "dvc.lock").write_text(lock)
        run(["dvc", "checkout", "--force"], clone)
