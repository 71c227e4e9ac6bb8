"""What OpenVINO's encoder and decoder backends share: the IR file name, the inference precisions, the source
files a variant keeps, and a summary of what a saved IR holds. Only openvino is imported here, so a decoder
process does not load the encoder's data and embedding code.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import openvino as ov

MODEL_FILE = "openvino_model.xml"
OV_TYPES = {"f32": ov.Type.f32, "bf16": ov.Type.bf16, "f16": ov.Type.f16}
# Tokenizer and model config files a variant folder keeps from the source (not the weights).
SOURCE_FILES = ("*.json", "*.txt", "*.model")


def copy_source_files(source: Path, out: Path) -> None:
    for pattern in SOURCE_FILES:
        for path in source.glob(pattern):
            if path.is_file():
                shutil.copy2(path, out / path.name)


def ir_stats(model: ov.Model) -> dict[str, Any]:
    """What the saved IR holds: op counts, and constant bytes per element type (i8/u8 = quantized)."""
    ops = Counter(op.get_type_name() for op in model.get_ops())
    constant_bytes: Counter = Counter()
    for op in model.get_ops():
        if op.get_type_name() == "Constant":
            constant_bytes[op.get_output_element_type(0).get_type_name()] += op.get_byte_size()
    return {
        "ops": dict(ops.most_common()),
        "fake_quantize": ops.get("FakeQuantize", 0),
        "constant_bytes": dict(constant_bytes.most_common()),
    }
