"""A decoder version through the registry and `edgekit serve`: registered with its tokenizer scanned, promoted
through the policy's decoder gates (re-evaluated on its pinned samples), served on OpenAI's `/v1/completions`
(plain and streamed) by a real llama.cpp GGUF, bad input answered with a 4xx, and `edgekit monitor` writing
time to first token, time per output token and next-token entropy drift into the registry.

The project is tests/serve_project.py's decoder project: gguf-q8_0 (a real q8_0 GGUF of the tests' tiny LLaMA)
and gguf-slow (the same files, measured slower than the baseline).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from registry_project import commit_all, copy
from serve_project import DECODER
from test_serve import TEST_SERVING, Server, _env

from edgekit import registry as reg
from edgekit.notebook.display import ServingView
from edgekit.registry.errors import PromotionRefused

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="session")
def decoder_template(tmp_path_factory, registry_keys, tiny_decoder) -> Path:
    from serve_project import build_decoder_serve_project

    project = build_decoder_serve_project(tmp_path_factory.mktemp("decoder-serve") / "project", registry_keys, tiny_decoder)
    policy = yaml.safe_load((project / "policy.yaml").read_text())
    policy["serving"] = TEST_SERVING
    (project / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    commit_all(project, "the test's serving policy")
    registered = reg.register(project, variant="gguf-q8_0", decoder=True)   # the encoder has a gguf-q8_0 too
    assert (registered["model"], registered["version"]) == (DECODER, "v1.0.0")
    reg.promote(project, f"{DECODER}@v1.0.0")
    reg.approve(project, f"{DECODER}@v1.0.0", key=registry_keys["alice"])
    reg.promote(project, f"{DECODER}@v1.0.0")
    return project


@pytest.fixture
def project(decoder_template, tmp_path) -> Path:
    return copy(decoder_template, tmp_path / "project")


@pytest.fixture
def server(project):
    running = Server(project)
    yield running.wait_ready()
    running.stop()


@pytest.fixture(scope="module")
def shared(decoder_template, tmp_path_factory):
    """One server for the tests that only ask (a server starts in about 4 s): the project and the server."""
    project = copy(decoder_template, tmp_path_factory.mktemp("decoder-shared") / "project")
    running = Server(project)
    yield project, running.wait_ready()
    running.stop()


def test_a_decoder_version_records_its_kind_tokenizer_and_pinned_decoder_evidence(project):
    described = reg.describe(project, f"{DECODER}@v1.0.0")
    record = described["record"]
    assert record["kind"] == "generation" and record["variant"] == "gguf-q8_0" and described["stage"] == "production"
    assert record["files"]["tokenizer.model"]["format"] == "sentencepiece-model"
    assert record["files"]["model.gguf"]["format"] == "gguf"
    assert record["evidence"]["samples"]["runs"] and record["evidence"]["baseline_row"]["variant"] == "llama-fp32"
    assert all(not name.startswith(("optimize@", "benchmark@")) for name in record["dvc_lock"]["stages"])


def test_promotion_rechecks_the_decoder_gates_on_the_pinned_samples(project):
    reg.register(project, variant="gguf-slow")   # only the decoder has it: no --decoder needed
    with pytest.raises(PromotionRefused, match=r"decode_speedup = 0\.\d+ \(point\) is not ≥ 1\.2"):
        reg.promote(project, f"{DECODER}@v1.1.0")
    assert reg.describe(project, f"{DECODER}@v1.1.0")["stage"] is None


def test_completions_answer_with_the_version_and_greedy_text_is_the_variants_own(shared):
    project, server = shared
    from edgekit.runtimes import get_runtime
    from edgekit.tasks.generation.backend import greedy

    answer = httpx.post(f"{server.url}/v1/completions", json={"model": DECODER, "prompt": "The lake was", "max_tokens": 12,
                                                               "temperature": 0}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert answer.headers["x-edgekit-version"] == "v1.0.0" and answer.headers["x-edgekit-variant"] == "gguf-q8_0"
    assert body["edgekit"]["version"] == "v1.0.0" and body["object"] == "text_completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] in ("stop", "length") and body["usage"]["completion_tokens"] >= 1

    # The same variant, loaded in the test, continues the same token ids to the same text.
    from transformers import AutoTokenizer

    folder = project / "models" / "decoder_variants" / "gguf-q8_0"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    decoder = get_runtime("llamacpp").backend("generation")("q8_0", get_runtime("llamacpp").options.parse({}, "test"), 1)
    decoder.load(folder, 512)
    prompt = [tokenizer.bos_token_id, *tokenizer.encode("The lake was", add_special_tokens=False)]
    expected = greedy(decoder, prompt, body["usage"]["completion_tokens"])
    if choice["finish_reason"] == "stop" and len(expected) > body["usage"]["completion_tokens"] - 1:
        expected = expected[: body["usage"]["completion_tokens"]]
    text = tokenizer.decode([prompt[-1], *expected], skip_special_tokens=True)[len(tokenizer.decode([prompt[-1]])):]
    assert choice["text"] == text.split(tokenizer.eos_token)[0] or text.startswith(choice["text"])
    assert choice["text"].startswith(" "), "the continuation keeps the space that separates it from the prompt"


def test_a_streamed_completion_is_the_same_text_in_server_sent_events(shared):
    _, server = shared
    request = {"prompt": "During January the lake", "max_tokens": 16, "temperature": 0}
    whole = httpx.post(f"{server.url}/v1/completions", json=request, timeout=30).json()
    events = []
    with httpx.stream("POST", f"{server.url}/v1/completions", json={**request, "stream": True, "stream_options": {"include_usage": True}},
                      timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-edgekit-version"] == "v1.0.0"
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: "):])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert chunks[0]["edgekit"]["version"] == "v1.0.0" and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["usage"] == whole["usage"]


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"prompt": ""}, 400, "empty string"),
    ({}, 400, "'prompt' is missing"),
    ({"prompt": [1, 2, 3]}, 400, "token-id prompts are not served"),
    ({"prompt": "a", "max_tokens": 0}, 400, "max_tokens is 0"),
    ({"prompt": "a", "max_tokens": 600}, 400, "more than the model's context of 512"),
    ({"prompt": "a", "temperature": 3}, 400, "temperature is 3"),
    ({"prompt": "a", "n": 2}, 400, "n=2 is not supported"),
    ({"prompt": "a", "logprobs": 5}, 400, "logprobs=5 is not supported"),
    ({"prompt": "a", "model": "gpt-4"}, 404, "not served here"),
    ({"prompt": ["a", "b"], "stream": True}, 400, "one prompt"),
])
def test_bad_completion_requests_get_a_4xx_that_says_what_to_change(shared, body, status, says):
    _, server = shared
    answer = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
    assert answer.status_code == status and says in answer.json()["error"]["message"], answer.text
    assert answer.headers["x-edgekit-version"] == "v1.0.0"
    embeddings = httpx.post(f"{server.url}/v1/embeddings", json={"input": "a"}, timeout=30)
    assert embeddings.status_code == 400 and "POST /v1/completions" in embeddings.json()["error"]["message"]
    assert httpx.post(f"{server.url}/v1/completions", json={"prompt": "The", "max_tokens": 2}, timeout=30).status_code == 200


def test_monitor_records_time_to_first_token_per_token_latency_and_entropy_drift(project, server):
    from edgekit.serve.cli import heldout_prompts

    # live prompts drawn as the reference's are (held-out sentences cut at random), with another seed: no drift
    prompts = heldout_prompts(project / "data" / "decoder" / "heldout.txt", seed=1)
    for prompt in prompts[:40]:
        assert httpx.post(f"{server.url}/v1/completions", json={"prompt": prompt, "max_tokens": 8, "seed": 1}, timeout=30).status_code == 200
    continued = httpx.post(f"{server.url}/v1/completions", json={"prompt": "The lake was", "max_tokens": 8, "temperature": 0}, timeout=30)
    assert continued.json()["usage"]["completion_tokens"] >= 2
    done = subprocess.run([sys.executable, "-m", "edgekit", "monitor", "--project", str(project), "--url", server.url, "--json"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["versions"][f"{DECODER}@v1.0.0"]
    live = summary["live"]
    assert live["answered"] == 41 and live["completion_tokens"] >= 40
    assert live["ttft_p50_ms"] > 0 and live["tpot_p50_ms"] > 0 and summary["benchmark"]["tpot_p50_ms"] > 0
    assert summary["tpot_p50_live_over_benchmark"] > 0
    drift = summary["drift"]
    assert drift["status"] == "judged" and {t["name"] for t in drift["tests"]} == {"token_length", "vocabulary", "entropy"}
    assert not drift["alarm"], drift   # live prompts are held-out sentences: the reference's own distribution
    observed = reg.observations(project, DECODER, "v1.0.0")
    assert observed and observed[-1]["type"] == "telemetry"
    row = ServingView(observed)._rows()[-1]
    assert row[5] == "output token" and row[6] == live["tpot_p50_ms"] and row[8] == summary["benchmark"]["tpot_p50_ms"]
    assert "output token" in ServingView(observed).text()   # the registry panel's table: per output token


def test_drift_alarms_when_prompts_change_kind(project, server):
    for i in range(40):
        prompt = " ".join(["zqx", "0", "%%", "7"] * (3 + i % 5))   # not sentences: other tokens, other lengths
        assert httpx.post(f"{server.url}/v1/completions", json={"prompt": prompt, "max_tokens": 2}, timeout=30).status_code == 200
    done = subprocess.run([sys.executable, "-m", "edgekit", "monitor", "--project", str(project), "--url", server.url, "--json",
                           "--no-write"], capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    drift = json.loads(done.stdout)["versions"][f"{DECODER}@v1.0.0"]["drift"]
    assert drift["alarm"], drift
