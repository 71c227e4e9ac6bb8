"""OpenAI's completions API as ``edgekit serve`` speaks it for decoder versions: the request, checked field by
field, and the server-sent events of a streamed answer.

Supported: ``prompt`` (a string, or a list of strings answered as one choice each), ``max_tokens`` (default 16),
``temperature`` (default 1; 0 is greedy), ``top_p``, ``seed``, ``stop`` (a string or up to 4), ``stream`` and
``stream_options.include_usage``. Fields that would change the answer and are not served (``n`` > 1,
``logprobs``, ``echo``, ``best_of`` > 1, ``suffix``, token-id prompts, penalties) are refused with a 400 that names
them, rather than ignored.

Example:
    >>> wanted = completion_request({"prompt": "The lake", "max_tokens": 8, "temperature": 0}, "edgekit-tiny-llama")
    >>> wanted.sampling.max_tokens
    8
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass
from typing import Any

import orjson

from edgekit.serve.app import ClientError
from edgekit.serve.generate import Sampling, check_sampling

MAX_PROMPTS = 16
MAX_STOPS = 4
# Fields with a value that changes nothing (OpenAI's defaults) are accepted; any other value is refused.
UNSERVED = {"n": (None, 1), "best_of": (None, 1), "logprobs": (None, 0), "echo": (None, False), "suffix": (None, ""),
            "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0), "logit_bias": (None, {})}


@dataclass(frozen=True)
class CompletionRequest:
    prompts: list[str]
    sampling: Sampling
    stream: bool = False
    include_usage: bool = False

    def check_context(self, prompts: list[list[int]], context: int) -> None:
        """Refuse a prompt whose tokens and ``max_tokens`` do not fit the model's context."""
        for i, ids in enumerate(prompts):
            if len(ids) + self.sampling.max_tokens > context:
                raise ClientError(400, f"prompt {i} has {len(ids)} tokens and max_tokens is {self.sampling.max_tokens}: together "
                                  f"more than the model's context of {context} tokens; shorten the prompt or lower max_tokens",
                                  "max_tokens", "context_length_exceeded")


def completion_request(body: dict[str, Any], model: str) -> CompletionRequest:
    """The completion ``body`` asks for, or a ``ClientError`` saying what to change."""
    if body.get("model") not in (model, None):
        raise ClientError(404, f"the model {body.get('model')!r} is not served here; this server serves {model!r}", "model",
                          "model_not_found")
    for name, accepted in UNSERVED.items():
        if name in body and body[name] not in accepted:
            raise ClientError(400, f"{name}={body[name]!r} is not supported by this server; leave it out", name, "unsupported_parameter")
    prompts = _prompts(body.get("prompt"))
    sampling = Sampling(max_tokens=_number(body, "max_tokens", 16, int, 1, None),
                        temperature=_number(body, "temperature", 1.0, float, 0, 2),
                        top_p=_number(body, "top_p", 1.0, float, 0, 1),
                        seed=_number(body, "seed", None, int, None, None),
                        stop=_stops(body.get("stop")))
    problem = check_sampling(sampling)
    if problem:
        raise ClientError(400, problem, None)
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ClientError(400, f"stream must be true or false, not {stream!r}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ClientError(400, "stream_options must be an object such as {\"include_usage\": true}", "stream_options")
    if stream and len(prompts) > 1:
        raise ClientError(400, f"a streamed completion takes one prompt, not {len(prompts)}; send one request per prompt", "prompt")
    return CompletionRequest(prompts, sampling, bool(stream), bool(options.get("include_usage")))


def _prompts(value: Any) -> list[str]:
    if value is None:
        raise ClientError(400, "'prompt' is missing: send a string or a list of strings", "prompt", "missing_prompt")
    prompts = [value] if isinstance(value, str) else value
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise ClientError(400, "'prompt' must be a string or a list of strings (token-id prompts are not served: send text)", "prompt")
    if not prompts or any(not p for p in prompts):
        raise ClientError(400, "'prompt' holds an empty string (or no string at all); send text to continue", "prompt", "empty_prompt")
    if len(prompts) > MAX_PROMPTS:
        raise ClientError(400, f"'prompt' has {len(prompts)} strings; at most {MAX_PROMPTS} per request", "prompt")
    return prompts


def _number(body: dict[str, Any], name: str, default, kind: type, low, high):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (kind is int and value != int(value)):
        raise ClientError(400, f"{name} must be {'an integer' if kind is int else 'a number'}, not {value!r}", name)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ClientError(400, f"{name} is {value}; it must be {bounds}", name)
    return kind(value)


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOPS:
        raise ClientError(400, f"stop must be a non-empty string or a list of up to {MAX_STOPS}, not {value!r}", "stop")
    return tuple(stops)


def chunk(name: str, served, text: str, finish_reason: str | None, identity: bool = False,
          usage: dict[str, int] | None = None) -> bytes:
    """One server-sent event of a streamed completion; the first and the last carry the served version's identity."""
    payload: dict[str, Any] = {"id": name, "object": "text_completion", "created": int(time.time()), "model": served.model,
                               "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}]}
    if usage is not None:
        payload["usage"] = usage
    if identity:
        payload["edgekit"] = served.identity()
    return b"data: " + orjson.dumps(payload) + b"\n\n"
