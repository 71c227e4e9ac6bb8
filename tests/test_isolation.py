"""What a runtime's child process brings back: a result, or the variant's record of why not.

An ``EdgekitError`` a runtime raises is that variant's outcome (``failed`` with the error and its
hint, ``skipped`` for a model the runtime does not support or a runtime that is not installed), and
the pipeline goes on; only a project error (bad params, a stale or tampered input) stops the stage.
Each case runs a real child interpreter on a small module written here.
"""

from __future__ import annotations

import os

import pytest

from edgekit.errors import (
    ConfigError,
    EdgekitError,
    IntegrityError,
    MissingDependencyError,
    StageInputError,
    UnsupportedModelError,
)
from edgekit.isolation import run_child

CHILD_MODULE = '''
from edgekit.errors import DataError, EdgekitError, MissingDependencyError, StageInputError, UnsupportedModelError


def work(payload):
    kind = payload["kind"]
    if kind == "ok":
        return {"answer": 42}
    if kind == "unsupported":
        raise UnsupportedModelError("the mlx runtime cannot run model_type 'distilbert'; it supports: bert",
                                    "use the pytorch, onnxruntime or openvino runtime for this model")
    if kind == "missing":
        raise MissingDependencyError("mlx", "mlx", detail="import failed: libmlx.so")
    if kind == "refused":
        raise DataError("the calibration set is empty, and int8 quantization needs it", "set data.calibration_size above 0")
    if kind == "plain":
        raise EdgekitError("llama_encode failed with status -1 on 12 tokens")
    if kind == "stale":
        raise StageInputError("models/baseline/reference.npy has 3 rows for 5 sentences", "run `dvc repro baseline`")
    raise RuntimeError("converter crashed on layer 3")
'''


@pytest.fixture
def child_env(tmp_path):
    """The environment of a child that can import ``edgekit_isolation_case`` (written to ``tmp_path``)."""
    (tmp_path / "edgekit_isolation_case.py").write_text(CHILD_MODULE)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(tmp_path), os.environ.get("PYTHONPATH"))))}


def _run(kind: str, env: dict) -> dict:
    return run_child("edgekit_isolation_case:work", {"kind": kind}, timeout=60, setting="optimize.timeout_seconds", env=env)


def test_a_result_comes_back_with_status_ok(child_env):
    assert _run("ok", child_env) == {"status": "ok", "answer": 42}


def test_an_unsupported_model_is_skipped_with_the_reason_and_the_fix(child_env):
    record = _run("unsupported", child_env)
    assert record["status"] == "skipped"
    assert "cannot run model_type 'distilbert'" in record["reason"]
    assert record["hint"] == "use the pytorch, onnxruntime or openvino runtime for this model"
    assert record["hint"] in record["reason"]  # a stage that copies only the reason still shows the fix


def test_a_runtime_missing_in_the_child_is_skipped_with_its_install_command(child_env):
    record = _run("missing", child_env)
    assert record["status"] == "skipped"
    assert "mlx is not installed (import failed: libmlx.so)" in record["reason"]
    assert record["install"] == 'pip install -c requirements/lock.txt -e ".[mlx]"'


@pytest.mark.parametrize(("kind", "error", "hint"), [
    ("refused", "DataError: the calibration set is empty, and int8 quantization needs it", "set data.calibration_size above 0"),
    ("plain", "EdgekitError: llama_encode failed with status -1 on 12 tokens", None),
])
def test_a_runtime_error_fails_the_variant_with_its_hint_and_traceback(child_env, kind, error, hint):
    record = _run(kind, child_env)
    assert record["status"] == "failed"
    assert record["error"].startswith(error)
    assert record["hint"] == hint and (hint is None or hint in record["error"])
    assert "Traceback" in record["stderr"] and "edgekit_isolation_case.py" in record["stderr"]


def test_a_project_error_in_the_child_still_stops_the_stage(child_env):
    with pytest.raises(EdgekitError, match="3 rows for 5 sentences") as raised:
        _run("stale", child_env)
    assert raised.value.hint == "run `dvc repro baseline`"


def test_a_crash_outside_edgekit_is_a_failed_record(child_env):
    record = _run("crash", child_env)
    assert record["status"] == "failed"
    assert record["error"] == "exited with code 1: RuntimeError: converter crashed on layer 3"


def test_only_project_errors_stop_the_pipeline():
    """The line between "fix the project first" and "record this variant and go on"."""
    assert ConfigError("variants.x.runtime", "onnxrt", "one of: onnxruntime").stops_pipeline
    assert StageInputError("stale").stops_pipeline and IntegrityError("tampered").stops_pipeline
    assert not EdgekitError("runtime refused").stops_pipeline
    assert not UnsupportedModelError("model_type 'distilbert'").stops_pipeline
    assert not MissingDependencyError("mlx", "mlx").stops_pipeline
