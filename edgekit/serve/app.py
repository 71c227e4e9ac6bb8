"""The HTTP server: FastAPI on uvicorn, speaking OpenAI's embeddings API, with the served version on every answer.

Routes: ``POST /v1/embeddings`` (OpenAI-compatible: ``input`` a string or a list of strings, ``encoding_format``
float or base64), ``GET /v1/models``, ``GET /healthz`` (the process answers), ``GET /readyz`` (models loaded),
``GET /metrics`` (Prometheus), ``GET /v1/edgekit/status`` (versions, ramp, telemetry folder).

Every answer, errors included, names the model, version, variant digest and registry event in ``x-edgekit-*``
headers; a successful answer also has them in the body (``edgekit``). Errors have OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, with a 4xx for anything the client sent wrong.

Example:
    >>> server = Server(project, stable=Slot.load(resolve(project), threads=2), telemetry=open_telemetry(folder))
    >>> uvicorn.run(create_app(server), host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from edgekit.serve.engine import Batcher, EmbeddingEngine, Fault
from edgekit.serve.policy import ServingPolicy
from edgekit.serve.ramp import Ramp
from edgekit.serve.resolve import ServedVersion
from edgekit.serve.telemetry import Telemetry, reference_path

log = logging.getLogger("edgekit.serve")
MAX_BODY_BYTES = 512 * 1024      # a larger request body is refused (413) before it is parsed: 2048 inputs of 250 bytes fit
MAX_INPUTS = 2048                # OpenAI's limit of inputs per embeddings request


class ClientError(Exception):
    """A request the client must change: answered with ``status`` and OpenAI's error shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str = "invalid_request"):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass
class Slot:
    """One served version: its identity, its model and its batcher."""

    served: ServedVersion
    batcher: Batcher

    @classmethod
    def load(cls, served: ServedVersion, threads: int, max_tokens: int = 128, max_batch_size: int = 32,
             max_wait_ms: float = 0.0, fault: Fault | None = None) -> Slot:
        if served.kind == "generation":
            from edgekit.serve.generate import GenerationEngine, Sequencer

            return cls(served, Sequencer(GenerationEngine(served, threads, fault)))
        engine = EmbeddingEngine(served, threads, max_tokens, fault)
        return cls(served, Batcher(engine, max_batch_size, max_wait_ms))

    @property
    def kind(self) -> str:
        return self.served.kind

    @property
    def labels(self) -> dict[str, str]:
        return {"model": self.served.model, "version": self.served.version, "variant": self.served.variant}


class Server:
    """The versions being served, the ramp between them, and what they report.

    Args:
        project: the registry's project (ramp events and the promotion are written there).
        stable: the production version (or the one named).
        candidate: a version ramped in against ``stable`` (blue-green), judged by ``policy``.
        key: an SSH key to sign the ramp event and the promotion with.
        reference: sentences the drift tests compare live requests with (the validation set).
    """

    def __init__(self, project: Path, stable: Slot, telemetry: Telemetry, candidate: Slot | None = None,
                 policy: ServingPolicy | None = None, key: str | None = None, reference: list[str] | None = None):
        self.project, self.stable, self.candidate, self.telemetry = project, stable, candidate, telemetry
        self.policy = policy or ServingPolicy()
        self.key, self.reference = key, reference or []
        self.ramp = Ramp(self.policy, candidate.served.benchmark.get("p99_ms")) if candidate else None
        self.ready = False
        self.registry_writes: list[dict[str, Any]] = []   # what the ramp wrote (or failed to write), for /v1/edgekit/status
        self._writing = threading.Lock()

    def slots(self) -> list[Slot]:
        return [s for s in (self.stable, self.candidate) if s is not None]

    def choose(self) -> Slot:
        candidate, ramp, stable = self.candidate, self.ramp, self.stable  # one read: a promotion swaps them from another thread
        return candidate if candidate and ramp and ramp.route() else stable

    def update_shares(self) -> None:
        share = self.ramp.share if self.ramp and self.candidate else 0.0
        self.telemetry.share(self.stable.labels, 1.0 - share)
        if self.candidate:
            self.telemetry.share(self.candidate.labels, share)

    def after_answer(self, slot: Slot, latency_ms: float, error: bool) -> None:
        """Feed the ramp one candidate answer; act on its verdict (in a thread: git writes must not hold answers)."""
        ramp = self.ramp
        if ramp is None:
            return
        if slot is not self.candidate:
            ramp.observe_stable(latency_ms)
            return
        verdict = ramp.observe(latency_ms, error)
        if verdict is None:
            return
        self.update_shares()
        log.warning("ramp of %s: %s", slot.served.ref, verdict)
        if verdict["decision"] in ("rolled_back", "completed"):
            threading.Thread(target=self.finish_ramp, args=(verdict,), name="edgekit-ramp", daemon=True).start()

    def finish_ramp(self, verdict: dict[str, Any]) -> None:
        """Write the ramp's outcome to the registry; a completed ramp then promotes the candidate (gated)."""
        from edgekit import registry

        candidate = self.candidate
        with self._writing:
            try:
                written = registry.record_ramp(self.project, candidate.served.ref, self.stable.served.version,
                                               verdict["decision"], verdict.get("reason", ""), self.ramp.evidence(), self.key)
                self.registry_writes.append({"ramp": written["event"]})
                if verdict["decision"] == "completed":
                    self._promote(candidate)
            except Exception as exc:  # reported, not raised: the server keeps serving the version it holds
                log.error("registry write after the ramp of %s failed: %s", candidate.served.ref, exc)
                self.registry_writes.append({"error": f"{type(exc).__name__}: {exc}"})
                if verdict["decision"] == "completed":
                    self.ramp.status = "rolled_back"   # not promoted: production stays the registry's production
                    self.update_shares()

    def _promote(self, candidate: Slot) -> None:
        from edgekit import registry

        promoted = registry.promote(self.project, candidate.served.ref, key=self.key)
        event = {"seq": promoted["event"]["seq"], "hash": promoted["event"]["hash"], "type": "promote"}
        self.registry_writes.append({"promote": promoted["event"]})
        old, self.stable = self.stable, replace(candidate, served=replace(candidate.served, stage=promoted["stage"], event=event))
        self.candidate, self.ramp = None, None
        self.update_shares()
        self.telemetry.share(old.labels, 0.0)

    def status(self) -> dict[str, Any]:
        return {"ready": self.ready, "stable": self._describe(self.stable),
                "candidate": self._describe(self.candidate) if self.candidate else None,
                "ramp": self.ramp.evidence() if self.ramp else None, "registry_writes": self.registry_writes,
                "telemetry": str(self.telemetry.folder), "policy": self.policy.to_dict(), "project": str(self.project)}

    @staticmethod
    def _describe(slot: Slot) -> dict[str, Any]:
        return {**slot.served.identity(), "stage": slot.served.stage, "runtime": slot.served.runtime,
                "precision": slot.served.precision, "benchmark": slot.served.benchmark,
                "runtime_settings": slot.batcher.engine.backend.describe(),
                "batching": {"max_batch_size": slot.batcher.max_batch_size, "max_wait_ms": slot.batcher.max_wait * 1000}}


def create_app(server: Server):
    """The ASGI app serving ``server``."""
    @asynccontextmanager
    async def lifespan(app):
        for slot in server.slots():
            slot.batcher.on_batch = lambda inputs, tokens, labels=slot.labels: server.telemetry.observe_batch(labels, inputs, tokens)
            slot.batcher.start()
        for slot in server.slots():
            await asyncio.get_running_loop().run_in_executor(slot.batcher.executor, _write_reference, server, slot)
        server.update_shares()
        server.ready = True
        yield
        server.ready = False
        for slot in server.slots():
            await slot.batcher.stop()
        server.telemetry.close()

    app = FastAPI(title="edgekit serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def answer(slot: Slot, endpoint: str, started: float, status: int, payload: dict[str, Any]) -> Response:
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)  # 384 floats: ~20x faster than json + tolist()
        seconds = time.perf_counter() - started
        server.telemetry.observe(slot.labels, endpoint, status, seconds)   # counted before it is sent
        server.after_answer(slot, seconds * 1000, status >= 500)
        return Response(body, status_code=status, media_type="application/json", headers=slot.served.headers())

    async def embeddings(request: Request) -> Response:
        started = time.perf_counter()
        slot = server.stable
        try:
            _check_kind(slot, "embedding")
            texts, encoding = await _embeddings_request(request, server.stable.served.model)
            slot = server.choose()
            result = await slot.batcher.submit(texts)
        except ClientError as exc:
            return answer(slot, "embeddings", started, exc.status, _error(exc.message, exc.param, exc.code))
        except Exception as exc:  # the runtime failed: a 500 the ramp counts against the version
            log.exception("embedding failed on %s", slot.served.ref)
            return answer(slot, "embeddings", started, 500, _error(f"the model failed: {type(exc).__name__}: {exc}", None,
                                                                    "model_error", "server_error"))
        for ids, vector in zip(result.ids, result.vectors, strict=True):
            server.telemetry.samples.add(slot.served.model, slot.served.version, ids, vector)
        return answer(slot, "embeddings", started, 200, _embeddings_payload(slot.served, result, encoding))

    async def completions(request: Request) -> Response:
        from edgekit.serve.completions import completion_request

        started = time.perf_counter()
        slot = server.stable
        try:
            _check_kind(slot, "generation")
            wanted = completion_request(await _body(request), slot.served.model)
            slot = server.choose()
            prompts = [slot.batcher.engine.prompt_ids(text) for text in wanted.prompts]
            wanted.check_context(prompts, slot.batcher.engine.context)
            if wanted.stream:
                return _stream(slot, wanted, prompts[0], started)
            results = [await slot.batcher.generate(ids, wanted.sampling) for ids in prompts]
        except ClientError as exc:
            return answer(slot, "completions", started, exc.status, _error(exc.message, exc.param, exc.code))
        except Exception as exc:
            log.exception("generation failed on %s", slot.served.ref)
            return answer(slot, "completions", started, 500, _error(f"the model failed: {type(exc).__name__}: {exc}", None,
                                                                     "model_error", "server_error"))
        for ids, done in zip(prompts, results, strict=True):
            _observe_generation(slot, ids, done)
        return answer(slot, "completions", started, 200, _completions_payload(slot.served, results))

    def _stream(slot: Slot, wanted, ids: list[int], started: float) -> Response:
        """Server-sent events as OpenAI streams them: a chunk per piece of text, the finish reason, [DONE]."""
        from fastapi.responses import StreamingResponse

        from edgekit.serve.completions import chunk

        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()
        task = loop.create_task(slot.batcher.generate(ids, wanted.sampling, lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text),
                                                      cancelled))
        task.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, None))
        served, name = slot.served, f"cmpl-{time.time_ns():x}"

        async def events():
            nonlocal counted
            status, first = 499, True   # 499 (client closed the connection) unless the generation ends
            try:
                while (text := await pieces.get()) is not None:
                    yield chunk(name, served, text, None, identity=first)
                    first = False
                exc = task.exception()
                if exc is not None:  # the 200 is sent already: the error is the last event
                    status = 500
                    log.error("generation failed on %s: %s", served.ref, exc)
                    yield b"data: " + orjson.dumps(_error(f"the model failed: {type(exc).__name__}: {exc}", None, "model_error",
                                                          "server_error")) + b"\n\n"
                else:
                    done = task.result()
                    status = 200
                    _observe_generation(slot, ids, done)
                    yield chunk(name, served, "", done.finish_reason, identity=True,
                                usage=_usage([done]) if wanted.include_usage else None)
                counted = count(status)   # before the last event: a client that has [DONE] finds its request counted
                yield b"data: [DONE]\n\n"
            finally:  # also when the client goes away: the generation stops at its next token
                cancelled.set()
                if not counted:
                    count(status)

        counted = False

        def count(status: int) -> bool:
            seconds = time.perf_counter() - started
            server.telemetry.observe(slot.labels, "completions", status, seconds)
            server.after_answer(slot, seconds * 1000, status >= 500)
            return True

        return StreamingResponse(events(), media_type="text/event-stream", headers={**served.headers(), "cache-control": "no-cache"})

    def _observe_generation(slot: Slot, ids: list[int], done) -> None:
        server.telemetry.observe_generation(slot.labels, len(done.ids), done.ttft_s, done.token_s)
        server.telemetry.samples.add(slot.served.model, slot.served.version, ids, None, done.entropy)

    # Plain Starlette routes: the body is parsed here (errors in OpenAI's shape), so FastAPI's dependency solving
    # would only add ~60 us to every request.
    app.add_route("/v1/embeddings", embeddings, methods=["POST"])
    app.add_route("/v1/completions", completions, methods=["POST"])

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        served = server.stable.served
        return JSONResponse({"object": "list", "data": [{"id": served.model, "object": "model", "owned_by": "edgekit",
                                                          "edgekit": served.identity()}]}, headers=served.headers())

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"}, headers=server.stable.served.headers())

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        return JSONResponse({"ready": server.ready, **server.stable.served.identity()}, status_code=200 if server.ready else 503,
                            headers=server.stable.served.headers())

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(await asyncio.to_thread(server.telemetry.exposition), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/edgekit/status")
    async def status() -> JSONResponse:
        return JSONResponse(server.status(), headers=server.stable.served.headers())

    return app


def _check_kind(slot: Slot, kind: str) -> None:
    if slot.kind != kind:
        route = "/v1/completions" if slot.kind == "generation" else "/v1/embeddings"
        raise ClientError(400, f"{slot.served.model} is {'a language model' if slot.kind == 'generation' else 'an embedding model'}"
                          f"; send its requests to POST {route}", None, "wrong_endpoint")


async def _body(request) -> dict[str, Any]:
    """The request's JSON object, or a ``ClientError``: too large (413), not UTF-8, not JSON, not an object (400)."""
    length = request.headers.get("content-length")
    if length is not None and int(length) > MAX_BODY_BYTES:
        raise ClientError(413, f"the request body is {int(length)} bytes; the limit is {MAX_BODY_BYTES}", None, "body_too_large")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ClientError(413, f"the request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}", None, "body_too_large")
    return _json_object(raw)


async def _embeddings_request(request, model: str) -> tuple[list[str], str]:
    """The texts and encoding of an embeddings request, or a ``ClientError`` that says what to change."""
    body = await _body(request)
    if body.get("model") not in (model, None):
        raise ClientError(404, f"the model {body.get('model')!r} is not served here; this server serves {model!r}", "model",
                          "model_not_found")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ClientError(400, f"encoding_format {encoding!r} is not supported; use 'float' or 'base64'", "encoding_format")
    return _texts(body.get("input")), encoding


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(400, f"the request body is not UTF-8 (byte {exc.start}); send JSON encoded as UTF-8", None,
                          "invalid_encoding") from exc
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(400, f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                          None, "invalid_json") from exc
    if not isinstance(body, dict):
        raise ClientError(400, f"the request body is a JSON {type(body).__name__}; send an object such as "
                          '{"model": "...", "input": "a sentence"}', None, "invalid_json")
    return body


def _texts(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if value is None:
        raise ClientError(400, "'input' is missing: send a string or a list of strings", "input", "missing_input")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ClientError(400, "'input' must be a string or a list of strings (token-id arrays are not served: send text)",
                          "input")
    if not texts or any(not t.strip() for t in texts):
        raise ClientError(400, "'input' holds an empty string (or no string at all); send non-empty text", "input", "empty_input")
    if len(texts) > MAX_INPUTS:
        raise ClientError(400, f"'input' has {len(texts)} strings; at most {MAX_INPUTS} per request", "input")
    return texts


def _embeddings_payload(served: ServedVersion, result, encoding: str) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": _encode(vector, encoding)} for i, vector in enumerate(result.vectors)]
    tokens = sum(len(ids) for ids in result.ids)
    return {"object": "list", "data": data, "model": served.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "edgekit": served.identity()}


def _usage(results) -> dict[str, int]:
    prompt, completion = sum(r.prompt_tokens for r in results), sum(len(r.ids) for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completions_payload(served: ServedVersion, results) -> dict[str, Any]:
    choices = [{"text": r.text, "index": i, "logprobs": None, "finish_reason": r.finish_reason} for i, r in enumerate(results)]
    return {"id": f"cmpl-{time.time_ns():x}", "object": "text_completion", "created": int(time.time()), "model": served.model,
            "choices": choices, "usage": _usage(results), "edgekit": served.identity()}


def _encode(vector: np.ndarray, encoding: str) -> np.ndarray | str:
    if encoding == "base64":  # what OpenAI's Python client asks for by default: little-endian float32
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return np.ascontiguousarray(vector, dtype=np.float32)   # orjson writes it as a list of numbers


def _error(message: str, param: str | None, code: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _write_reference(server: Server, slot: Slot) -> None:
    """Embed the reference sentences once per served version, on its inference thread: the drift tests' baseline
    (``edgekit monitor``)."""
    served = slot.served
    path = reference_path(server.telemetry.folder, served.model, served.version, served.variant_digest)
    if not server.reference or path.is_file():
        return
    if slot.kind == "generation":  # the prompts' token ids and next-token entropies
        engine = slot.batcher.engine
        prompts = [engine.prompt_ids(text) for text in server.reference]
        entropies = np.array([engine.prompt_entropy(ids) for ids in prompts])
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, lengths=np.array([len(ids) for ids in prompts]), ids=np.concatenate([np.asarray(i, dtype=np.int32) for i in prompts]),
                 entropies=entropies)
        tmp.replace(path)
        return
    result = slot.batcher.engine.embed(server.reference, inject=False)
    lengths = np.array([len(ids) for ids in result.ids])
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, lengths=lengths, ids=np.concatenate([np.asarray(i, dtype=np.int32) for i in result.ids]), vectors=result.vectors)
    tmp.replace(path)

