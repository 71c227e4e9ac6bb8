"""params.yaml validation: the shipped file parses, and every mistake names its field, value and fix."""

from __future__ import annotations

import copy
import re

import psutil
import pytest
import yaml

from conftest import REPO, small_params
from edgekit.errors import ConfigError, UnknownNameError
from edgekit.params import load_params, parse_params
from edgekit.runtimes import runtime_names


def shipped() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def with_changes(change) -> dict:
    raw = copy.deepcopy(shipped())
    change(raw)
    return raw


def test_shipped_params_parse():
    params = load_params(REPO / "params.yaml")
    assert sorted(params.variants) == sorted(shipped()["variants"])
    # the default sweep covers every built-in runtime at int8 (llama.cpp's is q8_0; ONNX Runtime at fp32 too),
    # and no more: each variant costs about a minute of a cold `dvc repro` on 2 cores, which must stay within 15
    assert {v.runtime for v in params.variants.values()} == set(runtime_names())
    assert sorted(v.precision for v in params.variants.values() if v.runtime != "pytorch") == ["fp32"] + ["int8"] * 4 + ["q8_0"]
    assert params.baseline == "pytorch-fp32"
    assert params.baseline_variant.runtime == "pytorch"
    assert params.baseline_variant.precision == "fp32"
    assert params.variants["ort-int8"].runtime == "onnxruntime"
    assert params.variants["ort-int8"].precision == "int8"
    assert params.variants["ort-int8"].options.per_channel is True
    # threads: auto is resolved to the physical core count, an int the runtimes can use.
    assert type(params.threads) is int
    assert params.threads >= 1
    assert params.threads == (psutil.cpu_count(logical=False) or params.threads)
    assert params.benchmark.seq_lengths == (32, 128)
    assert params.benchmark.max_seconds == shipped()["benchmark"]["max_seconds"]


def test_explicit_thread_count_is_kept():
    assert parse_params(with_changes(lambda r: r.update(threads=3))).threads == 3


def test_unknown_variant_name_lists_known_variants():
    params = parse_params(shipped())
    with pytest.raises(UnknownNameError, match=r"variant = 'nope'.*one of: " + re.escape(", ".join(sorted(params.variants)))):
        params.variant("nope")


def test_unknown_runtime_lists_the_known_runtimes():
    raw = with_changes(lambda r: r["variants"]["ort-int8"].update(runtime="onnxrt"))
    with pytest.raises(
        UnknownNameError,
        match=r"variants\.ort-int8\.runtime = 'onnxrt' is not valid.*one of: " + re.escape(", ".join(runtime_names())),
    ) as info:
        parse_params(raw)
    assert info.value.field == "variants.ort-int8.runtime"
    assert info.value.known == runtime_names()


def test_missing_runtime_key_is_named():
    raw = with_changes(lambda r: r["variants"]["ort-int8"].pop("runtime"))
    with pytest.raises(ConfigError, match=r"variants\.ort-int8\.runtime = None.*key is missing"):
        parse_params(raw)


def test_misspelled_top_level_key_suggests_the_right_one():
    raw = with_changes(lambda r: r.update(benchmarks=r.pop("benchmark")))
    with pytest.raises(ConfigError, match=r"benchmarks = .*did you mean 'benchmark'\?") as info:
        parse_params(raw)
    assert info.value.field == "benchmarks"


def test_misspelled_variant_key_suggests_precision():
    raw = with_changes(lambda r: r["variants"]["ort-int8"].update(precison=r["variants"]["ort-int8"].pop("precision")))
    with pytest.raises(ConfigError, match=r"variants\.ort-int8\.precison = 'int8'.*did you mean 'precision'\?"):
        parse_params(raw)


def test_misspelled_benchmark_key_suggests_and_lists_keys():
    raw = with_changes(lambda r: r["benchmark"].update(min_iteration=5))
    with pytest.raises(ConfigError, match=r"benchmark\.min_iteration = 5.*did you mean 'min_iterations'\?.*min_seconds"):
        parse_params(raw)


def test_unsupported_precision_lists_the_allowed_ones():
    raw = with_changes(lambda r: r["variants"]["ort-int8"].update(precision="int4"))
    with pytest.raises(UnknownNameError, match=r"variants\.ort-int8\.precision = 'int4'.*one of: fp32, int8"):
        parse_params(raw)
    raw = with_changes(lambda r: r["variants"]["pytorch-fp32"].update(precision="int8"))
    with pytest.raises(UnknownNameError, match=r"variants\.pytorch-fp32\.precision = 'int8'.*one of: fp32$"):
        parse_params(raw)


def test_unknown_option_key_lists_the_runtime_options():
    raw = with_changes(lambda r: r["variants"]["ort-int8"]["options"].update(fusion=True))
    with pytest.raises(ConfigError, match=r"variants\.ort-int8\.options\.fusion = True.*fusions.*per_channel"):
        parse_params(raw)


def test_option_of_wrong_type_is_named():
    raw = with_changes(lambda r: r["variants"]["ort-int8"]["options"].update(per_channel="yes"))
    with pytest.raises(ConfigError, match=r"variants\.ort-int8\.options\.per_channel = 'yes'.*bool"):
        parse_params(raw)
    raw = with_changes(lambda r: r["variants"]["ort-int8"]["options"].update(opset=True))
    with pytest.raises(ConfigError, match=r"variants\.ort-int8\.options\.opset = True.*int"):
        parse_params(raw)


def test_option_out_of_range_is_named():
    raw = with_changes(lambda r: r["variants"]["ort-int8"]["options"].update(opset=9))
    with pytest.raises(ConfigError, match=r"variants\.ort-int8\.options\.opset = 9.*13 to 21"):
        parse_params(raw)


@pytest.mark.parametrize("options", [["fusions"], "fusions"])
def test_options_that_are_not_a_mapping_are_a_config_error(options):
    raw = with_changes(lambda r: r["variants"]["ort-int8"].update(options=options))
    with pytest.raises(ConfigError, match=r"variants\.ort-int8\.options"):
        parse_params(raw)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (
            lambda r: r.update(threads="two"),
            r"threads = 'two' is not valid; expected 'auto' \(physical cores\) or a positive integer",
        ),
        (lambda r: r.update(threads=0), r"threads = 0 .*positive integer"),
        (lambda r: r.update(threads=True), r"threads = True .*positive integer"),
        (
            lambda r: r["benchmark"].update(seq_lengths=[0]),
            r"benchmark\.seq_lengths = \[0\].*non-empty list of positive integers",
        ),
        (lambda r: r["benchmark"].update(seq_lengths=[]), r"benchmark\.seq_lengths = \[\].*non-empty list"),
        (lambda r: r["benchmark"].update(batch_sizes=[1, True]), r"benchmark\.batch_sizes = \[1, True\].*positive integers"),
        (lambda r: r["benchmark"].update(seq_lengths=32), r"benchmark\.seq_lengths = 32.*a list"),
        (lambda r: r["benchmark"].update(min_iterations=True), r"benchmark\.min_iterations = True.*a int"),
        (lambda r: r["benchmark"].update(min_seconds="3"), r"benchmark\.min_seconds = '3'.*int or float"),
        (lambda r: r["benchmark"].update(busy_foreign_load=-1), r"benchmark\.busy_foreign_load = -1.*0 or more cores"),
        (lambda r: r["benchmark"].update(busy_steal_share=5), r"benchmark\.busy_steal_share = 5.*fraction between 0 and 1"),
        (lambda r: r["benchmark"].update(max_process_spread=0), r"benchmark\.max_process_spread = 0.*fraction"),
        (lambda r: r["benchmark"].update(headline_repeats=1), r"benchmark\.headline_repeats = 1.*at least 2 processes \(5 or more"),
        (lambda r: r["benchmark"].update(headline_repeats=5.0), r"benchmark\.headline_repeats = 5\.0.*a int"),
        (lambda r: r["benchmark"].update(min_samples_per_process=30),
         r"benchmark\.min_samples_per_process = 30.*from 2 to min_iterations \(20\)"),
        (lambda r: r["benchmark"].update(min_samples_per_process=1), r"benchmark\.min_samples_per_process = 1.*from 2"),
        (lambda r: r["benchmark"].update(headline_max_seconds=0.1), r"benchmark\.headline_max_seconds = 0\.1.*at least min_seconds"),
        (lambda r: r.update(seed=True), r"seed = True.*a int"),
        (lambda r: r["data"].update(eval_pairs=False), r"data\.eval_pairs = False.*a int"),
        (lambda r: r["data"].update(eval_pairs=1), r"data\.eval_pairs = 1.*0 \(all\) or at least 2"),
        (lambda r: r["model"].update(max_seq_length=4), r"model\.max_seq_length = 4.*8 to 8192"),
        (lambda r: r["evaluate"].update(batch_size=0), r"evaluate\.batch_size = 0.*positive integer"),
        (lambda r: r["evaluate"]["fairness"].update(tolerance=3), r"evaluate\.fairness\.tolerance = 3.*greater than 0 and at most 2"),
        (lambda r: r["evaluate"]["fairness"].update(tolerance="0.05"), r"evaluate\.fairness\.tolerance = '0\.05'.*greater than 0"),
        (lambda r: r["variants"]["ort-int8"].update(runtime=5), r"variants\.ort-int8\.runtime = 5.*a str"),
        (lambda r: r["variants"].update({"Bad Name": {"runtime": "pytorch"}}), r"variants\.Bad Name = 'Bad Name'.*lowercase"),
        (lambda r: r.update(variants={}), r"variants = \{\}.*mapping of variant names"),
    ],
)
def test_wrong_values_name_field_value_and_expectation(change, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        parse_params(with_changes(change))
    assert str(info.value).startswith("params.yaml: ")


def test_baseline_naming_a_missing_variant_lists_the_variants():
    raw = with_changes(lambda r: r.update(baseline="torch-fp32"))
    with pytest.raises(UnknownNameError, match=r"baseline = 'torch-fp32'.*one of: " + re.escape(", ".join(sorted(shipped()["variants"])))):
        parse_params(raw)


def test_baseline_must_be_a_pytorch_variant():
    raw = with_changes(lambda r: r.update(baseline="ort-fp32"))
    with pytest.raises(ConfigError, match=r"baseline = 'ort-fp32'.*runtime is pytorch") as info:
        parse_params(raw)
    assert not isinstance(info.value, UnknownNameError)


def test_the_headline_gets_its_own_processes_and_budget():
    bench = load_params(REPO / "params.yaml").benchmark
    assert bench.headline_repeats >= 5  # fewer undercover (edgekit.bench.stats, tests/test_coverage.py)
    assert (bench.repeats_at(True), bench.repeats_at(False)) == (bench.headline_repeats, bench.repeats)
    assert (bench.max_seconds_at(True), bench.max_seconds_at(False)) == (bench.headline_max_seconds, bench.max_seconds)
    assert bench.min_samples_per_process <= bench.min_iterations


def test_max_seconds_below_min_seconds():
    raw = with_changes(lambda r: r["benchmark"].update(min_seconds=5.0, max_seconds=2.0))
    with pytest.raises(ConfigError, match=r"benchmark\.max_seconds = 2\.0.*at least min_seconds \(5\.0\)"):
        parse_params(raw)


def test_yaml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\nvariants: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: .*valid YAML"):
        load_params(path)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere" / "params.yaml"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: .*an existing params file"):
        load_params(path)


def test_error_in_a_differently_named_file_names_that_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(with_changes(lambda r: r.update(threads="two"))))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: threads = 'two'"):
        load_params(path)


def test_file_that_is_not_a_mapping_is_a_config_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"a mapping at top level"):
        load_params(path)


def test_a_variant_times_its_own_scenarios_with_the_headline_first():
    raw = small_params()
    raw["variants"]["ort-int8"]["benchmark"] = {"batch_sizes": [1]}
    params = parse_params(raw)
    assert params.scenarios("ort-int8") == [(1, 16)]
    assert params.scenarios("ort-fp32") == [(1, 16), (2, 16)]
    assert params.headline == (1, 16)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"batch_sizes": [2, 1]}, r"variants\.ort-int8\.benchmark\.batch_sizes = \[2, 1\].*starting with benchmark\.batch_sizes\[0\] = 1"),
        ({"batch_size": [1]}, r"variants\.ort-int8\.benchmark\.batch_size.*did you mean 'batch_sizes'"),
        ({"seq_lengths": []}, r"variants\.ort-int8\.benchmark\.seq_lengths = \[\].*non-empty list"),
    ],
)
def test_a_bad_scenario_override_names_the_field(override, message):
    raw = small_params()
    raw["variants"]["ort-int8"]["benchmark"] = override
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)
