"""The OpenVINO runtime as a user meets it, beyond the shared conformance suite.

The precision the CPU plugin really ran at is recorded, the int8 IRs really hold int8 weights
(and FakeQuantize ops for full int8) and are smaller on disk, accuracy control records what it
validated on, the config works without openvino, and bad options name their field.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from test_runtimes import with_variant

from conftest import REPO
from edgekit import api
from edgekit.datasets import load_validation_pairs, read_sentences
from edgekit.errors import ConfigError
from edgekit.layout import Layout
from edgekit.manifest import read_manifest
from edgekit.params import load_params, parse_params
from edgekit.runtimes import get_runtime
from edgekit.tasks.embedding.encoding import TextEncoder

TEXTS = ["A cat sits on the mat.", "Quarterly revenue rose by four percent on strong exports."]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"inference_precision": "int4"}, "inference_precision"),
        ({"performance_hint": "FAST"}, "performance_hint"),
        ({"num_streams": 0}, "num_streams"),
        ({"subset_size": 0}, "subset_size"),
        ({"max_drop": 0}, "max_drop"),
        ({"max_drop": "1"}, "max_drop"),
        ({"validation_size": -5}, "validation_size"),
        ({"num_stream": 1}, "num_stream"),
    ],
)
def test_bad_options_name_the_field(options, field):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["variants"]["ov-int8"] = {"runtime": "openvino", "precision": "int8", "options": options}
    with pytest.raises(ConfigError) as caught:
        parse_params(raw)
    assert caught.value.field == f"variants.ov-int8.options.{field}"
    assert repr(options[field]) in str(caught.value)
    assert caught.value.hint  # says what is allowed


def test_unknown_precision_lists_the_known_ones():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["variants"]["ov-int4"] = {"runtime": "openvino", "precision": "int4"}
    with pytest.raises(ConfigError, match="int8-weights"):
        parse_params(raw)


def _bin_size(folder) -> int:
    return (folder / "openvino_model.bin").stat().st_size


@pytest.fixture(scope="module")
def ov_variants(baseline_project):
    """fp32, auto, int8-weights and int8 OpenVINO variants made in the shared baseline project."""
    names = {}
    for precision in ("fp32", "auto", "int8-weights", "int8"):
        name = f"ov-test-{precision}"
        with_variant(baseline_project, name, {"runtime": "openvino", "precision": precision})
        manifest = api.optimize(name, baseline_project)
        assert manifest["status"] == "ok", manifest.get("error")
        names[precision] = name
    return baseline_project, names


def _loaded(project, name: str, options: dict | None = None):
    params = load_params(project / "params.yaml")
    variant = params.variant(name)
    config = get_runtime("openvino")
    parsed = config.options.parse(options, "options") if options is not None else variant.options
    backend = config.backend("embedding")(variant.precision, parsed, params.threads)
    backend.load(Layout(project).variant_dir(name))
    return backend


@pytest.mark.openvino
@pytest.mark.slow
def test_auto_records_the_precision_the_cpu_really_used(ov_variants):
    import openvino as ov
    import openvino.properties.hint as hints

    project, names = ov_variants
    auto, fp32 = _loaded(project, names["auto"]), _loaded(project, names["fp32"])
    reported = auto.compiled.get_property(hints.inference_precision).get_type_name()
    assert auto.describe()["inference_precision"] == reported
    assert auto.describe()["inference_precision_requested"] == "CPU plugin default"
    assert fp32.describe()["inference_precision"] == "f32"
    assert fp32.describe()["threads"] == fp32.threads and fp32.describe()["streams"] == 1

    bf16_cpu = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert reported == ("bf16" if bf16_cpu else "f32")
    batch = TextEncoder(Layout(project).variant_dir(names["auto"]), 64).encode(TEXTS)
    difference = np.abs(auto.run(batch) - fp32.run(batch)).max()
    # bf16 really ran (outputs differ from f32), and stays close.
    assert (difference > 0) == bf16_cpu and difference < 0.1


@pytest.mark.openvino
@pytest.mark.slow
def test_inference_precision_option_overrides_and_is_recorded(ov_variants):
    project, names = ov_variants
    forced = _loaded(project, names["auto"], {"inference_precision": "f32"})
    assert forced.describe()["inference_precision"] == "f32"
    assert forced.describe()["inference_precision_requested"] == "f32"


@pytest.mark.openvino
@pytest.mark.slow
def test_int8_ir_holds_quantized_ops_and_is_smaller(ov_variants):
    import openvino as ov

    project, names = ov_variants
    layout = Layout(project)
    folder = layout.variant_dir(names["int8"])
    model = ov.Core().read_model(folder / "openvino_model.xml")
    ops = [op.get_type_name() for op in model.get_ops()]
    int8_constants = [
        op
        for op in model.get_ops()
        if op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() in ("i8", "u8")
    ]
    assert ops.count("FakeQuantize") > 0  # activations are quantized too, not only weights
    assert len(int8_constants) >= 36  # the weights of all 36 linear layers of a 6-layer BERT
    assert _bin_size(folder) < _bin_size(layout.variant_dir(names["fp32"])) / 3
    record = read_manifest(folder)["optimization"]
    assert record["ir"]["fake_quantize"] == ops.count("FakeQuantize")
    assert record["nncf"]["model_type"] == "TRANSFORMER"
    assert record["nncf"]["subset_size"] == min(300, len(read_sentences(layout.calibration)))


@pytest.mark.openvino
@pytest.mark.slow
def test_int8_weights_ir_is_about_four_times_smaller(ov_variants):
    import openvino as ov

    project, names = ov_variants
    layout = Layout(project)
    folder = layout.variant_dir(names["int8-weights"])
    ratio = _bin_size(layout.variant_dir(names["fp32"])) / _bin_size(folder)
    assert 3.6 < ratio < 4.1, ratio
    ops = [op.get_type_name() for op in ov.Core().read_model(folder / "openvino_model.xml").get_ops()]
    assert "FakeQuantize" not in ops  # activations stay float: weights only


@pytest.mark.openvino
@pytest.mark.slow
def test_run_results_survive_the_next_call(ov_variants):
    """The request's output buffer is reused; a caller keeping a result must not see it change."""
    project, names = ov_variants
    backend = _loaded(project, names["int8"])
    encoder = TextEncoder(Layout(project).variant_dir(names["int8"]), 64)
    first = backend.run(encoder.encode(TEXTS))
    kept = first.copy()
    backend.run(encoder.encode(TEXTS[::-1]))  # same shape, so a reused buffer would be overwritten
    np.testing.assert_array_equal(first, kept)


@pytest.mark.openvino
@pytest.mark.slow
def test_accuracy_control_records_what_it_validated_on(baseline_project):
    name = "ov-test-int8-accuracy-subset"
    options = {"validation_size": 5, "max_drop": 2.0}
    with_variant(baseline_project, name, {"runtime": "openvino", "precision": "int8-accuracy", "options": options})
    manifest = api.optimize(name, baseline_project)
    assert manifest["status"] == "ok", manifest.get("error")
    nncf = manifest["optimization"]["nncf"]
    params = load_params(baseline_project / "params.yaml")
    validation = nncf["validation"]
    assert validation["pairs"] == 5
    assert validation["of_pairs"] == len(load_validation_pairs(Layout(baseline_project))) > 5
    assert validation["sample_seed"] == params.seed
    assert nncf["max_drop"] == 2.0 and nncf["drop_type"] == "ABSOLUTE"
    # nncf's promise, on the pairs it validated on: the drop (f32, as nncf measured it) is within max_drop.
    assert validation["drop"] <= 2.0
    assert any("Accuracy drop" in line for line in nncf["log"])
    assert _loaded(baseline_project, name).describe()["inference_precision"] == "f32"


def _matmul_after_scale(weights_node_kind: str):
    """x * s @ W with the scale named as nncf names SmoothQuant's, W either float or fake-quantized."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 4], np.float32, name="x")
    scale = ops.multiply(x, ops.constant(np.full((1, 4), 0.5, np.float32)))
    scale.set_friendly_name("layer.0/LayerNorm/nncf_smooth_quant")
    weights = ops.constant(np.eye(4, dtype=np.float32))
    if weights_node_kind == "fake_quantize":
        low, high = ops.constant(np.float32(-1)), ops.constant(np.float32(1))
        weights = ops.fake_quantize(weights, low, high, low, high, 255)
    return ov.Model([ops.matmul(scale, weights, False, True)], [x])


@pytest.mark.openvino
@pytest.mark.parametrize(("weights", "flagged"), [("constant", 1), ("fake_quantize", 0)])
def test_a_float_matmul_left_behind_a_smooth_quant_scale_is_found(weights, flagged):
    """What nncf 3.4's accuracy control left on an AVX2 host: a reverted MatMul still fed x*s (cosine 0.868)."""
    from edgekit.runtimes.openvino.backend import smoothed_float_matmuls

    assert len(smoothed_float_matmuls(_matmul_after_scale(weights))) == flagged
