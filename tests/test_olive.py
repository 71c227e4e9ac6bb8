"""The Olive plug-in: Olive's passes are on record, int8 is really quantized, a variant loads without
Olive or torch, and optimizing makes no network attempt (telemetry included).

The conformance suite (tests/test_runtimes.py) already checks fidelity of every Olive precision.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from edgekit import api
from edgekit.errors import ConfigError
from edgekit.layout import Layout

PRECISIONS = ("fp32", "int8", "int8-static")
CONVERT_AND_FUSE = ["onnxconversion", "orttransformersoptimization"]
HEAVY_MODULES = ("olive", "torch", "transformers", "optimum")

# Loaded by every Python process the test starts (PYTHONPATH), optimize's children included:
# records each process, and records and refuses every DNS look-up and internet connection.
NETWORK_GUARD = """
import json, os, socket

_LOG = os.environ["EDGEKIT_TEST_NETWORK_LOG"]


def _note(*entry):
    with open(_LOG, "a") as log:
        log.write(json.dumps([*entry, os.getpid()]) + "\\n")


def _refuse(kind, target):
    _note(kind, str(target))
    raise OSError(f"network blocked by the test: {kind} {target}")


_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect", address)
    return _connect(self, address)


socket.socket.connect = _guarded_connect
socket.getaddrinfo = lambda host, *args, **kwargs: _refuse("getaddrinfo", host)
_note("guarded")
"""


def _log_entries(path) -> list[list]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def olive_variants(baseline_project, tmp_path_factory):
    """One Olive variant per precision, optimized with the network guarded and a throw-away home folder."""
    root = tmp_path_factory.mktemp("olive-guard")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(NETWORK_GUARD)
    log, home = root / "network.jsonl", root / "home"
    home.mkdir()
    params = yaml.safe_load((baseline_project / "params.yaml").read_text())
    for precision in PRECISIONS:
        params["variants"][f"olive-test-{precision}"] = {"runtime": "olive", "precision": precision}
    (baseline_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(root / "site"), os.environ.get("PYTHONPATH")))))
        patch.setenv("EDGEKIT_TEST_NETWORK_LOG", str(log))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HOME", str(home))  # where Olive and onnxruntime keep a device id and unsent telemetry
        patch.delenv("XDG_CACHE_HOME", raising=False)
        for variable in ("CI", "OLIVE_DISABLE_TELEMETRY", "ORT_DISABLE_TELEMETRY"):  # the plug-in must not rely on the caller's
            patch.delenv(variable, raising=False)
        manifests = {p: api.optimize(f"olive-test-{p}", baseline_project) for p in PRECISIONS}
    return {"manifests": manifests, "log": log, "home": home, "project": baseline_project}


def _ops(folder) -> Counter:
    import onnx

    return Counter(node.op_type for node in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node)


@pytest.mark.olive
@pytest.mark.slow
def test_manifest_records_the_passes_olive_ran(olive_variants):
    expected = {
        "fp32": CONVERT_AND_FUSE,
        "int8": [*CONVERT_AND_FUSE, "onnxdynamicquantization"],
        "int8-static": [*CONVERT_AND_FUSE, "onnxstaticquantization"],
    }
    project = olive_variants["project"]
    for precision, passes in expected.items():
        manifest = olive_variants["manifests"][precision]
        assert manifest["status"] == "ok", manifest.get("error")
        record = manifest["optimization"]
        assert record["olive"] == importlib.metadata.version("olive-ai") == manifest["tools"]["olive-ai"]
        assert [p["pass"] for p in record["passes"]] == passes
        assert record["passes"][0]["config"]["target_opset"] == 18
        assert record["workflow"]["input_model"]["type"] == "HfModel"
        # Run folders are replaced by placeholders, so two runs give comparable manifests.
        assert str(project) not in json.dumps(record) and "<source>" in json.dumps(record)
    dynamic = olive_variants["manifests"]["int8"]["optimization"]["passes"][-1]["config"]
    assert dynamic["per_channel"] is True and dynamic["precision"] == "int8"
    static = olive_variants["manifests"]["int8-static"]["optimization"]
    assert static["passes"][-1]["config"]["calibrate_method"] == "MinMax"
    assert static["calibration"]["sentences"] == yaml.safe_load((project / "params.yaml").read_text())["data"]["calibration_size"]


@pytest.mark.olive
@pytest.mark.slow
def test_int8_models_hold_quantized_ops_and_are_smaller(olive_variants):
    import onnx

    layout = Layout(olive_variants["project"])
    folders = {p: layout.variant_dir(f"olive-test-{p}") for p in PRECISIONS}
    sizes = {p: olive_variants["manifests"][p]["files"]["model.onnx"]["bytes"] for p in PRECISIONS}
    dynamic, static = _ops(folders["int8"]), _ops(folders["int8-static"])
    assert dynamic["MatMulInteger"] >= 18 and dynamic["DynamicQuantizeLinear"] > 0 and not dynamic["MatMul"]
    assert static["QLinearMatMul"] >= 18 and static["QuantizeLinear"] > 0 and not static["MatMul"]
    assert not _ops(folders["fp32"])["MatMulInteger"]
    assert sizes["int8"] < sizes["fp32"] / 3 and sizes["int8-static"] < sizes["fp32"] / 2
    for folder in folders.values():
        model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        assert [o.name for o in model.graph.output] == ["last_hidden_state"]  # no pooler computed for nothing


@pytest.mark.olive
@pytest.mark.slow
def test_optimizing_made_no_network_attempt(olive_variants):
    entries = _log_entries(olive_variants["log"])
    guarded = [e for e in entries if e[0] == "guarded"]
    assert len(guarded) >= len(PRECISIONS), "the guard must have been loaded by every optimize child"
    assert [e for e in entries if e[0] != "guarded"] == []
    # Olive's and onnxruntime's telemetry keep a device id and unsent events under ~/.cache/Microsoft when on;
    # onnxruntime's native look-ups bypass the Python guard, so this is what shows them.
    assert not (olive_variants["home"] / ".cache" / "Microsoft").exists()


LOAD_AND_RUN = """
import json, sys
from pathlib import Path
from edgekit.tasks.embedding.encoding import TextEncoder
from edgekit.runtimes import get_runtime

config = get_runtime("olive")
for precision, folder in json.loads(sys.argv[1]).items():
    backend = config.backend("embedding")(precision, config.options.parse({}, "options"), 2)
    backend.load(Path(folder))
    backend.run(TextEncoder(Path(folder), 32).encode(["A cat sits on the mat."]))
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.olive
@pytest.mark.slow
def test_loading_a_variant_imports_neither_olive_nor_torch(olive_variants):
    """What the benchmark worker does with a variant must not pull in the optimizer's stack."""
    layout = Layout(olive_variants["project"])
    folders = {p: str(layout.variant_dir(f"olive-test-{p}")) for p in PRECISIONS}
    done = subprocess.run([sys.executable, "-c", LOAD_AND_RUN, json.dumps(folders)], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "onnxruntime" in loaded
    assert loaded.isdisjoint(HEAVY_MODULES), loaded & set(HEAVY_MODULES)


DECODE = """
import json, sys
from pathlib import Path
from edgekit.runtimes import get_runtime

config = get_runtime("olive")
decoder = config.backend("generation")("int4", config.options.parse({}, "options"), 2)
decoder.load(Path(sys.argv[1]), 64)
decoder.decode(int(decoder.prefill([1, 5, 9]).argmax()))
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.olive
@pytest.mark.slow
def test_a_decoder_variant_records_its_passes_and_runs_without_olive_or_torch(tiny_decoder, tmp_path):
    from edgekit.runtimes.olive.config import OliveOptions
    from edgekit.runtimes.olive.decoder import OliveDecoder

    out, scratch = tmp_path / "variant", tmp_path / "scratch"
    out.mkdir(), scratch.mkdir()
    record = OliveDecoder("int4", OliveOptions(), threads=2).optimize(tiny_decoder, out, scratch)
    assert [p["pass"] for p in record["passes"]] == ["onnxconversion", "onnxblockwisertnquantization"]
    assert record["passes"][1]["config"]["block_size"] == 32 and record["quantization"]["matmuls_left_float"] == 0
    assert str(tmp_path) not in json.dumps(record)  # the run's folders are placeholders: manifests compare across runs
    done = subprocess.run([sys.executable, "-c", DECODE, str(out)], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "onnxruntime" in loaded and loaded.isdisjoint(HEAVY_MODULES), loaded & set(HEAVY_MODULES)


@pytest.mark.olive
@pytest.mark.slow
def test_int8_static_without_calibration_sentences_says_how_to_fix(baseline_project, tmp_path):
    from edgekit.errors import DataError
    from edgekit.runtimes.olive.backend import OliveBackend
    from edgekit.runtimes.olive.config import OliveOptions
    from edgekit.tasks.embedding.backend import OptimizeContext
    from edgekit.tasks.embedding.encoding import TextEncoder

    context = OptimizeContext(
        calibration=[],
        validation_pairs=[],
        baseline_metric=0.0,
        max_seq_length=128,
        pooling={"pooling": "mean", "normalize": True},
        seed=0,
        scratch=tmp_path,
        encoder=TextEncoder(baseline_project / "models" / "source", 128),
    )
    backend = OliveBackend("int8-static", OliveOptions(), threads=2)
    with pytest.raises(DataError, match="calibration_size") as error:
        backend.workflow_config(Layout(baseline_project).source_model, tmp_path / "olive", context)
    assert not error.value.stops_pipeline  # only this variant needs calibration: it fails, the others go on


def test_config_imports_without_olive_onnxruntime_or_torch():
    code = (
        "import sys; from edgekit.runtimes import get_runtime; config = get_runtime('olive');"
        "config.options.parse({'per_channel': False}, 'options');"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'olive', 'onnxruntime', 'onnx', 'torch', 'transformers'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("options", "field", "expected"),
    [
        ({"calibrate_method": "minmax"}, "calibrate_method", "MinMax or Entropy or Percentile"),
        ({"graph_optimization_level": "max"}, "graph_optimization_level", "disable or basic or extended or all"),
        ({"opset": 9}, "opset", "an opset from 13 to 21"),
        ({"fusion": True}, "fusion", "fusions"),
    ],
)
def test_bad_options_name_the_field_and_the_allowed_values(options, field, expected):
    from edgekit.runtimes.olive.config import OliveConfig

    with pytest.raises(ConfigError) as raised:
        OliveConfig.options.parse(options, "variants.olive-int8.options")
    assert raised.value.field == f"variants.olive-int8.options.{field}"
    assert expected in str(raised.value)
