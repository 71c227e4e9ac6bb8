"""`edgekit serve` and `edgekit monitor` as a user meets them, on loopback with a real server process: the
production version from the registry with its identity on every answer, refusal to start on files that differ
from the record, OpenAI-compatible embeddings, bad input answered with a 4xx, load at several concurrency levels
with no request uncounted, kill -9 under load, a slow candidate rolled back by itself, a ramp that completes
and promotes through the gates, and the monitor's live figures and drift in the registry.

The project is tests/serve_project.py's: v1.0.0 (ort-int8) in production, v1.1.0 (ort-int8) in staging.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from registry_project import MODEL, commit_all, copy

from edgekit import registry as reg
from edgekit.errors import ConfigError

pytestmark = pytest.mark.onnxruntime
REPO = Path(__file__).resolve().parents[1]
# A ramp a test can watch finish: three steps of 30 candidate requests, p99 bounded at 150 ms (a loaded CI
# machine answers these requests in a few ms; the slow candidate takes 400 ms).
TEST_SERVING = {"ramp": {"steps": [0.2, 0.5, 1.0], "min_requests": 30}, "limits": {"p99_ms": {"max": 150}, "error_rate": {"max": 0.05}},
                "drift": {"alpha": 0.01, "min_live": 20}}


@pytest.fixture(scope="session")
def serve_template(tmp_path_factory, registry_keys) -> Path:
    from serve_project import build_serve_project

    project = build_serve_project(tmp_path_factory.mktemp("serve-template") / "project", registry_keys)
    policy = yaml.safe_load((project / "policy.yaml").read_text())
    policy["serving"] = TEST_SERVING
    (project / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    commit_all(project, "the test's serving policy")
    reg.register(project, model=MODEL, variant="ort-int8")
    reg.promote(project, f"{MODEL}@v1.0.0")
    reg.approve(project, f"{MODEL}@v1.0.0", key=registry_keys["alice"])
    reg.promote(project, f"{MODEL}@v1.0.0")
    reg.register(project, model=MODEL, variant="ort-int8")
    reg.promote(project, f"{MODEL}@v1.1.0")
    return project


@pytest.fixture
def project(serve_template, tmp_path) -> Path:
    return copy(serve_template, tmp_path / "project")


class Server:
    """`edgekit serve` in its own process, on a free loopback port."""

    def __init__(self, project: Path, *args: str, telemetry: Path | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.telemetry = telemetry or project / ".edgekit" / "telemetry"
        self.log = (project.parent / f"serve-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgekit", "serve", "--project", str(project), "--port", str(self.port), "--threads", "1",
             "--telemetry", str(self.telemetry), *args], stdout=self.log, stderr=subprocess.STDOUT, env=_env())

    def wait_ready(self, timeout: float = 90) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not ready in {timeout} s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture
def serve(project):
    started: list[Server] = []

    def start(*args: str, telemetry: Path | None = None) -> Server:
        server = Server(project, *args, telemetry=telemetry)
        started.append(server)
        return server.wait_ready()

    yield start
    for server in started:
        server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS")}
    return {**env, "PYTHONPATH": str(REPO), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def embed(server: Server, body, **kwargs) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}/v1/embeddings", content=content, headers={"content-type": "application/json"}, timeout=30, **kwargs)


def counted(server: Server, status: str = "200", version: str | None = None) -> float:
    """The server's own count of answered embeddings requests with ``status`` (all versions unless named)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "edgekit_requests_total" and s.labels["status"] == status and s.labels["endpoint"] == "embeddings"
               and version in (None, s.labels["version"]))


# -- serving the registry's version ---------------------------------------------------------------------
def test_serves_the_production_version_with_its_identity_on_every_answer(project, serve):
    server = serve()
    described = reg.describe(project, f"{MODEL}@v1.0.0")
    answer = embed(server, {"model": MODEL, "input": ["a man is playing a guitar", "hello"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["edgekit"]["version"] == answer.headers["x-edgekit-version"] == "v1.0.0"
    assert answer.headers["x-edgekit-variant"] == "ort-int8"
    promotion = [e for e in reg.history(project, MODEL, "v1.0.0") if e["type"] == "promote"][-1]
    assert answer.headers["x-edgekit-registry-event"] == f"{promotion['seq']}:{promotion['hash']}"
    from edgekit.fsutil import tree_digest

    assert body["edgekit"]["variant_digest"] == tree_digest(described["record"]["files"])
    # the vector is the variant's: the mean of its embedding table's rows over the tokens, normalized
    import onnx
    from onnx import numpy_helper
    from tokenizers import Tokenizer

    folder = project / "models" / "variants" / "ort-int8"
    table = numpy_helper.to_array(onnx.load(folder / "model.onnx").graph.initializer[0])
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to 128; the server pads a batch to its longest input and pools over the mask
    ids = tokenizer.encode("a man is playing a guitar").ids
    expected = table[ids].mean(axis=0)
    np.testing.assert_allclose(body["data"][0]["embedding"], expected / np.linalg.norm(expected), rtol=1e-5, atol=1e-6)
    assert body["usage"]["prompt_tokens"] == len(ids) + len(tokenizer.encode("hello").ids)
    as_base64 = embed(server, {"model": MODEL, "input": "a man is playing a guitar", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(as_base64["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, np.asarray(body["data"][0]["embedding"], dtype=np.float32))
    for path in ("/healthz", "/readyz", "/v1/models"):
        assert httpx.get(server.url + path).headers["x-edgekit-version"] == "v1.0.0"


def test_refuses_to_start_on_files_that_differ_from_the_record(project):
    model_file = project / "models" / "variants" / "ort-int8" / "model.onnx"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    done = subprocess.run([sys.executable, "-m", "edgekit", "serve", "--project", str(project), "--port", str(_free_port())],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 1
    assert "does not match the registry record" in done.stderr and "model.onnx" in done.stderr and "registry fetch" in done.stderr


def test_bad_input_gets_a_4xx_that_says_what_to_change_and_the_server_keeps_serving(project, serve):
    server = serve()
    cases = {
        "empty": ({"model": MODEL, "input": ""}, 400, "empty"),
        "empty list": ({"model": MODEL, "input": []}, 400, "empty"),
        "no input": ({"model": MODEL}, 400, "missing"),
        "token ids": ({"model": MODEL, "input": [[1, 2, 3]]}, 400, "send text"),
        "wrong model": ({"model": "gpt-4", "input": "hi"}, 404, "not served here"),
        "bad encoding": ({"model": MODEL, "input": "hi", "encoding_format": "int8"}, 400, "encoding_format"),
        "1 MB": ({"model": MODEL, "input": "a" * 1_000_000}, 413, "limit"),
        "wrong JSON": (b'{"model": "x", "input": ', 400, "not valid JSON"),
        "not an object": (b'["hello"]', 400, "send an object"),
        "not UTF-8": (b'{"input": "\xff\xfe"}', 400, "not UTF-8"),
    }
    for name, (body, status, words) in cases.items():
        answer = embed(server, body)
        assert answer.status_code == status, (name, answer.text)
        assert words in answer.json()["error"]["message"], (name, answer.text)
        assert answer.headers["x-edgekit-version"] == "v1.0.0"
    assert embed(server, {"model": MODEL, "input": "still serving"}).status_code == 200
    assert counted(server, "400") == 8 and counted(server, "413") == 1 and counted(server, "404") == 1


# -- load, kill -9 ---------------------------------------------------------------------------------------
async def _load(url: str, requests: int, concurrency: int) -> dict[str, int]:
    """``requests`` embeddings requests, ``concurrency`` at a time; the client's own count of each outcome."""
    outcome = {"ok": 0, "failed": 0, "other": 0}
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(i: int) -> None:
            async with limit:
                try:
                    answer = await client.post(f"{url}/v1/embeddings", json={"model": MODEL, "input": f"request {i} of the load test"})
                except httpx.HTTPError:
                    outcome["failed"] += 1
                    return
                outcome["ok" if answer.status_code == 200 else "other"] += 1
        await asyncio.gather(*(one(i) for i in range(requests)))
    return outcome


@pytest.mark.slow
def test_load_at_several_concurrency_levels_has_no_error_and_no_uncounted_request(project, serve):
    server = serve()
    before = counted(server)
    total = 0
    for concurrency in (1, 4, 16):
        outcome = asyncio.run(_load(server.url, 300, concurrency))
        assert outcome == {"ok": 300, "failed": 0, "other": 0}, (concurrency, outcome)
        total += 300
        assert counted(server) - before == total, concurrency   # every answer the client got, the metrics counted
    batches = _histogram_count(server, "edgekit_batch_size_bucket", le="1.0")
    assert batches["+Inf"] > batches["1.0"], "at concurrency 16 some runtime calls should have batched several requests"


def _histogram_count(server: Server, name: str, le: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics").text
    found = {le: 0.0, "+Inf": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels["le"] in found:
                found[sample.labels["le"]] += sample.value
    return found


@pytest.mark.slow
def test_kill_9_under_load_keeps_every_counted_request(project, serve):
    server = serve()
    telemetry = server.telemetry
    outcome: dict[str, int] = {}
    loader = threading.Thread(target=lambda: outcome.update(asyncio.run(_load(server.url, 3000, 8))))
    loader.start()
    time.sleep(3)
    server.process.kill()                                   # SIGKILL: no shutdown handler runs
    server.process.wait()
    loader.join(timeout=120)
    assert outcome["ok"] > 50 and outcome["failed"] > 0, outcome
    restarted = serve(telemetry=telemetry)
    survived = counted(restarted)
    # every answer the client received was counted before it was sent; requests cut off by the kill may or may
    # not have been counted, so the count lies between the two
    assert outcome["ok"] <= survived <= outcome["ok"] + outcome["failed"], (outcome, survived)
    assert embed(restarted, {"model": MODEL, "input": "after the restart"}).status_code == 200
    assert counted(restarted) == survived + 1


# -- blue-green ------------------------------------------------------------------------------------------
def _drive(server: Server, until, limit: int = 2000) -> list[str]:
    """Requests (8 at a time) until ``until(status)`` holds; the versions that answered, in order."""
    versions: list[str] = []

    async def run() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            while len(versions) < limit:
                answers = await asyncio.gather(*(client.post(f"{server.url}/v1/embeddings", json={"model": MODEL, "input": f"ramp {len(versions)} {i}"})
                                                 for i in range(8)))
                versions.extend(a.headers["x-edgekit-version"] for a in answers)
                if until((await client.get(f"{server.url}/v1/edgekit/status")).json()):
                    return
    asyncio.run(run())
    return versions


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_slow_candidate_ramps_and_rolls_back_by_itself(project, serve):
    server = serve("--candidate", "v1.1.0", "--fault", "v1.1.0:delay_ms=400")
    versions = _drive(server, lambda status: status["ramp"]["status"] != "ramping")
    assert "v1.1.0" in versions and "v1.0.0" in versions
    _wait_for(lambda: reg.observations(project, MODEL, "v1.1.0", "ramp"))
    event = reg.observations(project, MODEL, "v1.1.0", "ramp")[-1]
    assert event["outcome"] == "rolled_back" and event["against"] == "v1.0.0"
    assert "p99" in event["reason"] and "> limit 150.00 ms" in event["reason"]
    timeline = event["evidence"]["timeline"]
    assert timeline[0]["event"] == "start" and timeline[-1]["event"] == "rolled back" and timeline[-1]["p99_ms"] > 150
    after = [embed(server, {"model": MODEL, "input": f"after {i}"}).headers["x-edgekit-version"] for i in range(20)]
    assert after == ["v1.0.0"] * 20                          # all traffic is back on production
    assert reg.describe(project, f"{MODEL}@v1.1.0")["stage"] == "staging"
    assert reg.verify(project)["ok"]


@pytest.mark.slow
def test_a_completed_ramp_promotes_the_candidate_through_the_gates(project, serve, registry_keys):
    reg.approve(project, f"{MODEL}@v1.1.0", stage="production", key=registry_keys["alice"])
    server = serve("--candidate", "v1.1.0", "--key", str(registry_keys["bob"]))
    _drive(server, lambda status: status["ramp"] is None or status["ramp"]["status"] != "ramping")
    _wait_for(lambda: reg.describe(project, f"{MODEL}@v1.1.0")["stage"] == "production")
    ramp = reg.observations(project, MODEL, "v1.1.0", "ramp")[-1]
    assert ramp["outcome"] == "completed" and ramp["signed"]
    assert [step["share"] for step in ramp["evidence"]["timeline"] if step["event"] == "step passed"] == [0.2, 0.5, 1.0]
    assert reg.describe(project, f"{MODEL}@v1.0.0")["stage"] == "archived"
    _wait_for(lambda: embed(server, {"model": MODEL, "input": "x"}).headers["x-edgekit-version"] == "v1.1.0", 10)
    promotion = [e for e in reg.history(project, MODEL, "v1.1.0") if e["type"] == "promote"][-1]
    assert embed(server, {"model": MODEL, "input": "y"}).headers["x-edgekit-registry-event"] == f"{promotion['seq']}:{promotion['hash']}"


# -- monitor -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_monitor_puts_live_figures_beside_the_benchmark_in_the_registry(project, serve):
    server = serve()
    validation = [json.loads(line) for line in (project / "data" / "validation" / "sts_pairs.jsonl").read_text().splitlines()]
    for pair in validation[:40]:                               # traffic like the reference: no drift alarm
        assert embed(server, {"model": MODEL, "input": [pair["sentence1"]]}).status_code == 200
    done = subprocess.run([sys.executable, "-m", "edgekit", "monitor", "--project", str(project), "--url", server.url, "--json"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["versions"][f"{MODEL}@v1.0.0"]
    assert summary["live"]["answered"] == 40 and summary["live"]["errors"] == 0
    assert summary["benchmark"]["p50_ms"] == reg.describe(project, f"{MODEL}@v1.0.0")["record"]["metrics"]["p50_ms"]
    assert summary["p99_live_over_benchmark"] == pytest.approx(summary["live"]["p99_ms"] / summary["benchmark"]["p99_ms"], rel=1e-2)
    assert summary["drift"]["status"] == "judged" and summary["drift"]["alarm"] is False, summary["drift"]
    recorded = reg.observations(project, MODEL, "v1.0.0", "telemetry")[-1]
    assert recorded["summary"]["live"] == summary["live"]
    for i in range(40):                                        # traffic unlike anything in the reference
        embed(server, {"model": MODEL, "input": f"zzz qqq xylophone {i} " * 20})
    shifted = json.loads(subprocess.run([sys.executable, "-m", "edgekit", "monitor", "--project", str(project), "--url", server.url,
                                         "--json", "--no-write"], capture_output=True, text=True, env=_env(), timeout=120).stdout)
    assert shifted["versions"][f"{MODEL}@v1.0.0"]["drift"]["alarm"] is True
    assert len(reg.observations(project, MODEL, "v1.0.0", "telemetry")) == 1   # --no-write wrote nothing


def test_registry_check_reports_a_version_served_past_its_review_date(project):
    policy = yaml.safe_load((project / "policy.yaml").read_text())
    policy["lifecycle"]["review_days"] = {"staging": 30, "production": 0}   # production versions are due at once
    (project / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    commit_all(project, "review production versions at once")
    result = reg.check(project)
    assert f"{MODEL}@v1.0.0" in [item["ref"] for item in result["expired"]] and result["served_expired"] == []
    time.sleep(1.1)                                   # event times have one-second resolution
    reg.record_telemetry(project, f"{MODEL}@v1.0.0", {"live": {"answered": 12}})
    served = reg.check(project)["served_expired"]
    assert [(item["ref"], item["answered"]) for item in served] == [(f"{MODEL}@v1.0.0", 12)]
    done = subprocess.run([sys.executable, "-m", "edgekit", "registry", "check", "--project", str(project)],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert done.returncode == 1 and "served past review" in done.stdout


def test_a_candidate_must_be_one_stage_before_the_served_version(project):
    reg.register(project, model=MODEL, variant="ort-int8")                   # v1.2.0: registered, in no stage
    done = subprocess.run([sys.executable, "-m", "edgekit", "serve", "--project", str(project), "--candidate", "v1.2.0",
                           "--port", str(_free_port())], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 1 and "--candidate" in done.stderr and "edgekit registry promote" in done.stderr


def test_the_registry_panel_shows_what_servers_saw_of_a_version(project):
    pytest.importorskip("ipywidgets")
    from edgekit.notebook.panel import RegistryPanel

    reg.record_telemetry(project, f"{MODEL}@v1.0.0", {"live": {"answered": 40, "p99_ms": 3.0}, "benchmark": {"p99_ms": 8.5},
                                                      "drift": {"status": "judged", "alarm": True}})
    reg.record_ramp(project, f"{MODEL}@v1.1.0", "v1.0.0", "rolled_back", "live p99 412.00 ms > limit 150.00 ms",
                    {"timeline": [{"event": "rolled back", "requests": 30, "p99_ms": 412.0, "error_rate": 0.0}]})
    panel = RegistryPanel(project)
    panel.versions.value = "v1.0.0"
    assert "1 drift alarm(s)" in panel.detail.value and ">ALARM</b>" in panel.detail.value
    panel.versions.value = "v1.1.0"
    assert "ramp rolled_back vs v1.0.0: live p99 412.00 ms &gt; limit 150.00 ms" in panel.detail.value


# -- units -------------------------------------------------------------------------------------------------
def test_the_serving_policy_names_the_bad_field():
    from edgekit.serve.policy import serving_from_mapping

    assert serving_from_mapping({}, "p.yaml").p99_limit_ms(4.0) == 25.0
    assert serving_from_mapping({"limits": {"p99_ms": {"tolerance": 3.0, "floor": 1}}}, "p.yaml").p99_limit_ms(4.0) == 12.0
    assert serving_from_mapping({"limits": {"p99_ms": {"max": 40}}}, "p.yaml").p99_limit_ms(4.0) == 40.0
    bad = {"ramp": {"steps": [0.5, 0.25, 1.0]}}, {"ramp": {"steps": [0.1, 0.5]}}, {"ramp": {"min_requests": 0}}, \
        {"limits": {"p99_ms": {"max": 5, "tolerance": 2}}}, {"limits": {"error_rate": {"max": 2}}}, {"rampp": {}}
    fields = ["serving.ramp.steps", "serving.ramp.steps", "serving.ramp.min_requests", "serving.limits.p99_ms",
              "serving.limits.error_rate.max", "serving.rampp"]
    for mapping, field in zip(bad, fields, strict=True):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            serving_from_mapping(mapping, "p.yaml")


def test_the_ramp_routes_the_exact_share_and_judges_each_step():
    from edgekit.serve.policy import ServingPolicy
    from edgekit.serve.ramp import Ramp

    ramp = Ramp(ServingPolicy(ramp_steps=(0.25, 1.0), min_requests=10, p99_max_ms=50.0), candidate_p99_ms=5.0)
    assert sum(ramp.route() for _ in range(400)) == 100
    decisions = [ramp.observe(10.0, False) for _ in range(10)]
    assert decisions[:9] == [None] * 9 and decisions[9]["decision"] == "advanced" and ramp.share == 1.0
    decisions = [ramp.observe(10.0 if i < 9 else 80.0, False) for i in range(10)]   # one slow answer in ten: p99 over 50 ms
    assert decisions[-1]["decision"] == "rolled_back" and ramp.share == 0.0 and not any(ramp.route() for _ in range(50))
    # with a tolerance, production's own live p99 over the same step raises the limit: queueing is not the candidate's fault
    relative = Ramp(ServingPolicy(ramp_steps=(0.5, 1.0), min_requests=10, p99_tolerance=2.0, p99_floor_ms=25.0), candidate_p99_ms=5.0)
    for _ in range(50):
        relative.observe_stable(60.0)
    assert [relative.observe(100.0, False) for _ in range(10)][-1]["decision"] == "advanced"       # 100 <= 2 x 60
    # the 100% step has no production answers: the last step's control stands
    assert [relative.observe(130.0, False) for _ in range(10)][-1]["reason"] == \
        "live p99 130.00 ms > limit 120.00 ms (production's live p99 60.00 ms)"
    errors = Ramp(ServingPolicy(ramp_steps=(0.5, 1.0), min_requests=100, error_rate_max=0.01), candidate_p99_ms=5.0)
    assert errors.observe(1.0, True) is None                       # one error of the step's allowance (1 in 100)
    assert errors.observe(1.0, True)["decision"] == "rolled_back"  # a second: over it before the step ends


def test_histogram_quantiles_are_within_a_bucket_of_the_exact_ones():
    from edgekit.serve.monitor import histogram_quantile
    from edgekit.serve.telemetry import LATENCY_BUCKETS

    rng = np.random.default_rng(0)
    for _ in range(20):
        seconds = rng.lognormal(np.log(rng.uniform(0.001, 0.2)), rng.uniform(0.1, 1.0), size=5000)
        table = {le: float((seconds <= le).sum()) for le in LATENCY_BUCKETS} | {float("inf"): float(len(seconds))}
        for q in (0.5, 0.99):
            exact = float(np.quantile(seconds, q))
            assert exact / 1.25 <= histogram_quantile(q, table) <= exact * 1.25, (q, exact)


def test_monitor_sums_a_fleet_read_from_a_prometheus_federation_endpoint():
    from edgekit.serve.monitor import live_figures

    labels = 'model="m",version="v1.0.0",variant="ort-int8",endpoint="embeddings"'
    fleet = "\n".join([
        "# TYPE edgekit_requests_total counter",
        *(f'edgekit_requests_total{{{labels},status="{status}",instance="{host}",job="edge"}} {count}'
          for host, status, count in (("a:8000", "200", 90), ("b:8000", "200", 60), ("b:8000", "500", 2), ("a:8000", "400", 5))),
        "# TYPE edgekit_request_latency_seconds histogram",
        *(f'edgekit_request_latency_seconds_bucket{{{labels},le="{le}",instance="{host}",job="edge"}} {count}'
          for host, counts in (("a:8000", (0, 90, 90)), ("b:8000", (31, 62, 62))) for le, count in zip(("0.001", "0.01", "+Inf"), counts, strict=True)),
        ""])
    figures = live_figures(fleet)[("m", "v1.0.0", "ort-int8")]
    assert (figures["answered"], figures["errors"], figures["rejected"]) == (152, 2, 5)
    assert figures["error_rate"] == round(2 / 152, 6)
    # 31 of 152 answers took at most 1 ms, all of them at most 10 ms: p50 lies in the second bucket, interpolated
    assert figures["p50_ms"] == pytest.approx(1 + 9 * (76 - 31) / (152 - 31), rel=1e-3)
