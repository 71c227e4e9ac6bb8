"""benchmarks/vs_expert_tools.py refuses a pair whose two sides ran with different settings.

The benchmark_app output below is trimmed from a real run (openvino 2026.4, ov-int8, no -i: random inputs).
"""

from __future__ import annotations

import importlib.util

from conftest import REPO

spec = importlib.util.spec_from_file_location("vs_expert_tools", REPO / "benchmarks" / "vs_expert_tools.py")
vs_expert_tools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vs_expert_tools)

STEP_8 = """[Step 8/11] Querying optimal runtime parameters
[ INFO ] Model:
[ INFO ]   NETWORK_NAME: Model0
[ INFO ]   OPTIMAL_NUMBER_OF_INFER_REQUESTS: 1
[ INFO ]   NUM_STREAMS: 1
[ INFO ]   INFERENCE_NUM_THREADS: 2
[ INFO ]   INFERENCE_PRECISION_HINT: <Type: 'float32'>
[ INFO ]   PERFORMANCE_HINT: LATENCY
[ INFO ]   ENABLE_CPU_PINNING: True
[ INFO ]   DYNAMIC_QUANTIZATION_GROUP_SIZE: 32
[ INFO ]   KV_CACHE_PRECISION: <Type: 'uint8_t'>
[Step 9/11] Creating infer requests and preparing input tensors
"""
RANDOM_FILL = """[ WARNING ] No input files were given for input 'input_ids'!. This input will be filled with random values!
[ WARNING ] No input files were given for input 'attention_mask'!. This input will be filled with random values!
[ INFO ] Fill input 'input_ids' with random values
[ INFO ] Fill input 'attention_mask' with random values
"""
STEP_10 = """[Step 10/11] Measuring performance (Start inference synchronously, limits: 5000 ms duration)
[ INFO ] Benchmarking in full mode (inputs filling are included in measurement loop).
[ INFO ]    Median:        9.37 ms
"""
# What OpenVinoBackend.describe() returns for ov-int8 on a CPU without bf16 (the keys the script reads).
DESCRIBED_OV = {"threads": 2, "streams": 1, "performance_hint": "PerformanceMode.LATENCY", "inference_precision": "f32",
                "dynamic_quantization_group_size": 32, "openvino": "2026.4.1"}
DESCRIBED_ORT = {"threads": 2, "inter_op_threads": 1, "providers": ["CPUExecutionProvider"], "graph_optimization_level": "all",
                 "allow_spinning": True, "execution_mode": "sequential", "onnxruntime": "1.23.0"}
HAND_LOOP_REPORT = {"threads": 2, "inter_op_threads": 1, "execution_mode": "ORT_SEQUENTIAL",
                    "graph_optimization_level": "ORT_ENABLE_ALL", "allow_spinning": True, "providers": ["CPUExecutionProvider"]}


def compare_openvino(described: dict, stdout: str) -> list[str]:
    return vs_expert_tools.mismatches(vs_expert_tools.openvino_settings(described),
                                      vs_expert_tools.benchmark_app_settings(stdout), "benchmark_app")


def test_benchmark_app_on_our_inputs_at_our_settings_is_comparable():
    assert compare_openvino(DESCRIBED_OV, STEP_8 + STEP_10) == []


def test_benchmark_app_random_inputs_are_a_mismatch():
    assert compare_openvino(DESCRIBED_OV, STEP_8 + RANDOM_FILL + STEP_10) == [
        "inputs: edgekit \"edgekit's tokens, 1x32\", benchmark_app 'random values for input_ids, attention_mask'"]


def test_another_inference_precision_is_a_mismatch():
    # e.g. an int8 variant at the plugin's default (bf16 on a CPU with AVX512_BF16) against benchmark_app at f32
    assert compare_openvino({**DESCRIBED_OV, "inference_precision": "bf16"}, STEP_8 + STEP_10) == [
        "inference_precision: edgekit 'bf16', benchmark_app 'f32'"]


def test_unreadable_benchmark_app_settings_are_mismatches_not_a_pass():
    differences = compare_openvino(DESCRIBED_OV, STEP_10)
    assert {d.split(":")[0] for d in differences} == {"threads", "streams", "performance_hint", "inference_precision",
                                                      "dynamic_quantization_group_size"}


def test_hand_loop_session_read_back_in_edgekit_names_is_comparable():
    ours = vs_expert_tools.onnxruntime_settings(DESCRIBED_ORT)
    assert vs_expert_tools.mismatches(ours, vs_expert_tools.hand_loop_settings(HAND_LOOP_REPORT), "hand loop") == []


def test_hand_loop_without_spinning_and_at_another_level_is_refused():
    theirs = vs_expert_tools.hand_loop_settings({**HAND_LOOP_REPORT, "allow_spinning": False,
                                                 "graph_optimization_level": "ORT_ENABLE_BASIC"})
    assert vs_expert_tools.mismatches(vs_expert_tools.onnxruntime_settings(DESCRIBED_ORT), theirs, "hand loop") == [
        "allow_spinning: edgekit True, hand loop False", "graph_optimization_level: edgekit 'all', hand loop 'basic'"]
