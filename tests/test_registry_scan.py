"""The registry's folder scanner: benign variants pass, every malicious file is refused by name."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import pickle
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

from edgekit.registry.scan import SCAN_RULES_VERSION, ScanError, scan_folder


class _Exploit:
    """Pickling this records a call to os.system; the tests never unpickle it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def evil_pickle(protocol: int) -> bytes:
    return pickle.dumps(_Exploit(), protocol=protocol)


# --- benign builders: real libraries where there is one -----------------------------------------


def onnx_model() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(4, 2), name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def write_onnx(folder: Path, external: bool = False) -> Path:
    path = folder / "model.onnx"
    if external:
        onnx.save_model(onnx_model(), path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.data", size_threshold=0)
    else:
        onnx.save_model(onnx_model(), path)
    return path


def write_onnx_location(folder: Path, location: str) -> Path:
    """An ONNX model whose external-data reference is rewritten to location (no save-time checks)."""
    write_onnx(folder, external=True)
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    return folder / "model.onnx"


def write_safetensors(folder: Path, name: str = "model.safetensors") -> Path:
    path = folder / name
    save_file({"w": np.ones((3, 4), dtype=np.float32), "b": np.zeros(4, dtype=np.float16)}, str(path),
              metadata={"format": "np"})
    return path


def gguf_bytes(tensor_offset: int = 0) -> bytes:
    """A tiny valid GGUF v3: two metadata keys (one an array) and one 8-element F32 tensor."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    kv = string("general.architecture") + struct.pack("<I", 8) + string("tiny")
    kv += string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + string("a") + string("b")
    tensor = string("w") + struct.pack("<IQIQ", 1, 8, 0, tensor_offset)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, 2) + kv + tensor
    header += b"\x00" * (-len(header) % 32)
    return header + np.arange(8, dtype=np.float32).tobytes()


def write_gguf(folder: Path) -> Path:
    (folder / "model.gguf").write_bytes(gguf_bytes())
    return folder / "model.gguf"


IR_XML = """<?xml version="1.0"?>
<net name="tiny" version="11">
  <layers>
    <layer id="0" name="x" type="Parameter" version="opset1"><data shape="1,4" element_type="f32"/></layer>
    <layer id="1" name="w" type="Const" version="opset1"><data element_type="f32" shape="4,2" offset="0" size="32"/></layer>
    <layer id="2" name="b" type="Const" version="opset1"><data element_type="f32" shape="2" offset="32" size="8"/></layer>
  </layers>
  <edges/>
</net>
"""


def write_ir(folder: Path) -> Path:
    """A hand-written OpenVINO IR: the scanner reads content only, so no runtime is needed here."""
    (folder / "openvino_model.xml").write_text(IR_XML)
    (folder / "openvino_model.bin").write_bytes(np.arange(10, dtype=np.float32).tobytes())
    return folder / "openvino_model.xml"


def write_text_files(folder: Path) -> None:
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 4}))
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\ncos\nworld\n")


def pytorch_zip() -> bytes:
    """The layout torch.save writes: a zip whose archive/data.pkl is the pickle."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", evil_pickle(2))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def halve(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --- the malicious corpus: builder(folder) -> the file the error must name ------------------------


def _named(name: str, data: bytes):
    def build(folder: Path) -> str:
        (folder / name).write_bytes(data)
        return name
    return build


def _then(build, edit):
    def composed(folder: Path) -> str:
        path = build(folder)
        return edit(folder, path) or path.name
    return composed


def _onnx_external_outside(folder: Path) -> str:
    (folder.parent / "outside.data").write_bytes(b"\x00" * 64)
    write_onnx_location(folder, "../outside.data")
    return "model.onnx"


def _onnx_external_absolute(folder: Path) -> str:
    (folder.parent / "abs.data").write_bytes(b"\x00" * 64)
    write_onnx_location(folder, str(folder.parent / "abs.data"))
    return "model.onnx"


def _onnx_external_symlinked_out(folder: Path) -> str:
    write_onnx(folder, external=True)
    outside = folder.parent / "moved.data"
    shutil.move(folder / "weights.data", outside)
    (folder / "weights.data").symlink_to(outside)
    return "weights.data"


def _onnx_external_truncated(folder: Path) -> str:
    write_onnx(folder, external=True)
    halve(folder / "weights.data")
    return "model.onnx"


def _pickle_as_claimed_weights(name: str):
    """A model that claims its weights file, whose bytes are a pickle padded to the claimed size."""
    def build(folder: Path) -> str:
        weights = write_onnx(folder, external=True).with_name("weights.data") if name == "weights.data" \
            else write_ir(folder).with_suffix(".bin")
        size = weights.stat().st_size
        payload = evil_pickle(2)
        weights.write_bytes(payload + b"\x00" * max(0, size - len(payload)))
        return name
    return build


def _symlink_outside(folder: Path) -> str:
    (folder.parent / "secret.txt").write_text("not part of the variant\n")
    (folder / "tokenizer.json").symlink_to(folder.parent / "secret.txt")
    return "tokenizer.json"


def _billion_laughs(folder: Path) -> str:
    lol = '<!DOCTYPE net [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">' \
          '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>\n<net name="&c;"><layers/></net>\n'
    (folder / "openvino_model.xml").write_text('<?xml version="1.0"?>\n' + lol)
    return "openvino_model.xml"


def _npy_object(folder: Path) -> str:
    np.save(folder / "embeddings.npy", np.array([_Exploit(), 1], dtype=object), allow_pickle=True)
    return "embeddings.npy"


def _npz(folder: Path) -> str:
    np.savez(folder / "weights.npz", w=np.ones(3, dtype=np.float32))
    return "weights.npz"


def _nested_pickle(folder: Path) -> str:
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "sub" / "deeper" / "tokenizer.model").write_bytes(evil_pickle(4))
    return "sub/deeper/tokenizer.model"


def _gguf_tensor_past_eof(folder: Path) -> str:
    (folder / "model.gguf").write_bytes(gguf_bytes(tensor_offset=4096))
    return "model.gguf"


def _safetensors_offsets_past_data(folder: Path) -> str:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 16)
    return "model.safetensors"


def _append(data: bytes):
    def edit(folder: Path, path: Path) -> None:
        path.write_bytes(path.read_bytes() + data)
    return edit


def _truncate(folder: Path, path: Path) -> None:
    halve(path)


def _truncate_bin(folder: Path, path: Path) -> str:
    halve(folder / "openvino_model.bin")
    return "openvino_model.bin"


MALICIOUS = {
    **{f"pickle-protocol-{p}": _named("model.pkl", evil_pickle(p)) for p in (0, 1, 2, 4)},
    "pickle-as-safetensors": _named("model.safetensors", evil_pickle(4)),
    "pickle-as-onnx": _named("model.onnx", evil_pickle(2)),
    "pickle-as-gguf": _named("model.gguf", evil_pickle(2)),
    "pickle-p0-as-vocab.txt": _named("vocab.txt", evil_pickle(0)),
    "pickle-p0-as-config.json": _named("config.json", evil_pickle(0)),
    "pickle-p2-as-config.json": _named("config.json", evil_pickle(2)),
    "pytorch-zip-as-bin": _named("pytorch_model.bin", pytorch_zip()),
    "pytorch-zip-as-openvino-bin": _named("openvino_model.bin", pytorch_zip()),
    "hdf5": _named("tf_model.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64),
    "unknown-binary": _named("model.onnx", bytes(range(256)) * 4),
    "npy-object-dtype": _npy_object,
    "npz-zip": _npz,
    "nested-pickle": _nested_pickle,
    "onnx-external-parent-dir": _onnx_external_outside,
    "onnx-external-absolute": _onnx_external_absolute,
    "onnx-external-symlinked-out": _onnx_external_symlinked_out,
    "onnx-external-truncated": _onnx_external_truncated,
    "symlink-outside": _symlink_outside,
    "pickle-as-onnx-external-data": _pickle_as_claimed_weights("weights.data"),
    "pickle-as-openvino-weights": _pickle_as_claimed_weights("openvino_model.bin"),
    **{f"empty-{name}": _named(name, b"") for name in
       ("model.onnx", "model.safetensors", "model.gguf", "openvino_model.xml", "config.json")},
    "truncated-onnx": _then(lambda f: write_onnx(f), _truncate),
    "truncated-safetensors": _then(write_safetensors, _truncate),
    "truncated-gguf": _then(write_gguf, _truncate),
    "truncated-openvino-xml": _then(write_ir, _truncate),
    "truncated-openvino-bin": _then(write_ir, _truncate_bin),
    "gguf-tensor-past-eof": _gguf_tensor_past_eof,
    "safetensors-offsets-past-data": _safetensors_offsets_past_data,
    "polyglot-safetensors+pickle": _then(write_safetensors, _append(evil_pickle(2))),
    "polyglot-safetensors+zip": _then(write_safetensors, _append(pytorch_zip())),
    "polyglot-gguf+zip": _then(write_gguf, _append(pytorch_zip())),
    "polyglot-gguf+pickle": _then(write_gguf, _append(evil_pickle(4))),
    "polyglot-onnx+zip": _then(lambda f: write_onnx(f), _append(pytorch_zip())),
    "polyglot-openvino-bin+zip": _then(lambda f: write_ir(f).with_suffix(".bin"), _append(pytorch_zip())),
    "xml-billion-laughs": _billion_laughs,
}


def build_benign(folder: Path, name: str) -> dict[str, str]:
    """Write one benign variant; return the format each file must be detected as."""
    if name == "onnx-inline":
        write_onnx(folder)
        return {"model.onnx": "onnx"}
    if name == "onnx-external":
        write_onnx(folder, external=True)
        return {"model.onnx": "onnx", "weights.data": "onnx-external-data"}
    if name == "safetensors":
        write_safetensors(folder, "mlx_model.safetensors")
        return {"mlx_model.safetensors": "safetensors"}
    if name == "gguf":
        write_gguf(folder)
        return {"model.gguf": "gguf"}
    if name == "openvino-ir":
        write_ir(folder)
        return {"openvino_model.xml": "openvino-ir", "openvino_model.bin": "openvino-ir-weights"}
    if name == "text-and-json":
        write_text_files(folder)
        return {"config.json": "json", "vocab.txt": "text"}
    if name == "symlink-inside":
        write_text_files(folder)
        (folder / "vocab_link.txt").symlink_to("vocab.txt")
        return {"config.json": "json", "vocab.txt": "text", "vocab_link.txt": "text"}
    raise KeyError(name)


BENIGN = ("onnx-inline", "onnx-external", "safetensors", "gguf", "openvino-ir", "text-and-json", "symlink-inside")


def refusal(tmp_path: Path, case: str) -> tuple[ScanError, str]:
    folder = tmp_path / case
    folder.mkdir()
    expected = MALICIOUS[case](folder)
    with pytest.raises(ScanError) as caught:
        scan_folder(folder)
    return caught.value, expected


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_file_is_refused_by_name(tmp_path, case):
    error, expected = refusal(tmp_path, case)
    named = {f["file"] for f in error.findings} | {w for f in error.findings for w in f["finding"].split()}
    assert any(expected in entry for entry in named), (expected, error.findings)
    assert expected in str(error)
    assert error.hint


@pytest.mark.parametrize("case", ["pickle-protocol-2", "pickle-as-safetensors", "pytorch-zip-as-bin"])
def test_pickle_refusal_reports_picklescan_globals_and_the_fix(tmp_path, case):
    error, _ = refusal(tmp_path, case)
    assert any("picklescan" in f["finding"] and "system" in f["finding"] for f in error.findings)
    assert "re-export the model to safetensors" in error.hint


@pytest.mark.parametrize("name", BENIGN)
def test_benign_variant_passes_with_its_formats(tmp_path, name):
    expected = build_benign(tmp_path, name)
    record = scan_folder(tmp_path)
    assert {rel: entry["format"] for rel, entry in record["files"].items()} == expected
    assert record["verdict"] == "pass"


def test_corpus_is_large_and_has_no_misses_or_false_positives(tmp_path):
    assert len(MALICIOUS) >= 25
    missed = []
    for case in MALICIOUS:
        folder = tmp_path / "bad" / case
        folder.mkdir(parents=True)
        MALICIOUS[case](folder)
        try:
            scan_folder(folder)
            missed.append(case)
        except ScanError:
            pass
    assert missed == []
    for name in BENIGN:
        folder = tmp_path / "good" / name
        folder.mkdir(parents=True)
        build_benign(folder, name)
        assert scan_folder(folder)["verdict"] == "pass"


def all_formats(folder: Path) -> dict[str, str]:
    folder.mkdir(exist_ok=True)
    expected = {}
    for name in ("onnx-external", "safetensors", "gguf", "openvino-ir", "text-and-json"):
        expected.update(build_benign(folder, name))
    (folder / "manifest.json").write_text(json.dumps({"variant": "all", "files": sorted(expected)}))
    return {**expected, "manifest.json": "json"}


def test_all_formats_together_pass_and_the_record_is_deterministic(tmp_path):
    expected = all_formats(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    first, second, copy = scan_folder(tmp_path / "a"), scan_folder(tmp_path / "a"), scan_folder(tmp_path / "b")
    assert first == second == copy
    assert json.dumps(first, sort_keys=True) == json.dumps(copy, sort_keys=True)
    assert {rel: entry["format"] for rel, entry in first["files"].items()} == expected
    assert first["files"]["model.gguf"]["bytes"] == len(gguf_bytes())
    scanner = first["scanner"]
    assert scanner["picklescan"] == importlib.metadata.version("picklescan")
    assert scanner["rules_version"] == SCAN_RULES_VERSION
    assert len(scanner["rules_sha256"]) == 64


def test_record_hash_changes_with_content(tmp_path):
    write_text_files(tmp_path)
    before = scan_folder(tmp_path)["files"]["vocab.txt"]["sha256"]
    (tmp_path / "vocab.txt").write_text("[PAD]\nother\n")
    assert scan_folder(tmp_path)["files"]["vocab.txt"]["sha256"] != before


def test_every_finding_in_the_folder_is_reported_at_once(tmp_path):
    all_formats(tmp_path)
    (tmp_path / "model.pkl").write_bytes(evil_pickle(2))
    (tmp_path / "empty.json").write_bytes(b"")
    halve(tmp_path / "model.gguf")
    with pytest.raises(ScanError) as caught:
        scan_folder(tmp_path)
    files = {f["file"] for f in caught.value.findings}
    assert {"model.pkl", "empty.json", "model.gguf"} <= files
    assert "model.onnx" not in files and "mlx_model.safetensors" not in files


def test_a_folder_that_is_missing_or_empty_is_refused(tmp_path):
    with pytest.raises(ScanError):
        scan_folder(tmp_path / "missing")
    with pytest.raises(ScanError, match="no files"):
        scan_folder(tmp_path)


@pytest.mark.openvino
def test_real_openvino_ir_passes(tmp_path):
    import openvino as ov

    write_onnx(tmp_path)
    ov.save_model(ov.convert_model(str(tmp_path / "model.onnx")), str(tmp_path / "openvino_model.xml"),
                  compress_to_fp16=False)
    (tmp_path / "model.onnx").unlink()
    formats = {rel: entry["format"] for rel, entry in scan_folder(tmp_path)["files"].items()}
    assert formats == {"openvino_model.xml": "openvino-ir", "openvino_model.bin": "openvino-ir-weights"}


# --- SentencePiece tokenizer.model ------------------------------------------------------------------


SYLLABLES = ("ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "gu", "ze", "fa")


@pytest.fixture(scope="module")
def tokenizer_model() -> bytes:
    """A real 60-piece unigram tokenizer.model, trained on 48 generated sentences (a few hundredths of a second)."""
    spm = pytest.importorskip("sentencepiece")
    sentences = [
        " ".join(SYLLABLES[i % 12] + SYLLABLES[(i * 5 + k) % 12] + SYLLABLES[(i + 3 * k) % 12] for k in range(6))
        for i in range(48)
    ]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=60,
                                   model_type="unigram", minloglevel=2)
    return model.getvalue()


def model_proto(data: bytes):
    from sentencepiece.sentencepiece_model_pb2 import ModelProto

    return ModelProto.FromString(data)


def varint(value: int) -> bytes:
    out = b""
    while value > 0x7F:
        out, value = out + bytes([value & 0x7F | 0x80]), value >> 7
    return out + bytes([value])


def with_trainer_spec_suffix(data: bytes, suffix: bytes) -> bytes:
    """The model with bytes added inside trainer_spec, every field still in canonical order."""
    model = model_proto(data)
    spec = model.trainer_spec.SerializeToString() + suffix
    pieces = type(model)(pieces=model.pieces).SerializeToString()
    normalizer = type(model)(normalizer_spec=model.normalizer_spec).SerializeToString()
    return pieces + b"\x12" + varint(len(spec)) + spec + normalizer


def scan_tokenizer(tmp_path: Path, data: bytes) -> dict[str, str]:
    """The single finding for tokenizer.model (asserting there is exactly one)."""
    (tmp_path / "tokenizer.model").write_bytes(data)
    with pytest.raises(ScanError) as caught:
        scan_folder(tmp_path)
    [finding] = caught.value.findings
    assert finding["file"] == "tokenizer.model"
    assert "tokenizer.model" in str(caught.value)
    return finding


def test_sentencepiece_tokenizer_model_is_accepted(tmp_path, tokenizer_model):
    (tmp_path / "tokenizer.model").write_bytes(tokenizer_model)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    record = scan_folder(tmp_path)
    assert {rel: entry["format"] for rel, entry in record["files"].items()} == {
        "config.json": "json", "tokenizer.model": "sentencepiece-model",
    }
    assert record["files"]["tokenizer.model"]["bytes"] == len(tokenizer_model)


NOT_RESERIALIZED = "SentencePiece model whose bytes are not its re-serialization"
NOT_PARSED = "unrecognised binary format (not UTF-8 text, nor a SentencePiece model: protobuf does not parse"


@pytest.mark.parametrize(("appended", "finding"), [
    (b"\xf8\x01\x05", NOT_RESERIALIZED),  # an unknown field 31 that parses and would survive a plain round trip
    (b"\x12\x02\x18\x02", NOT_RESERIALIZED),  # a second trainer_spec, merged into the first by the parser
    (evil_pickle(2), NOT_PARSED),
    (bytes(range(256)), NOT_PARSED),
], ids=["unknown-field", "second-trainer-spec", "pickle", "binary-junk"])
def test_sentencepiece_model_with_appended_bytes_is_refused(tmp_path, tokenizer_model, appended, finding):
    refused = scan_tokenizer(tmp_path, tokenizer_model + appended)
    assert refused["finding"].startswith(finding)


@pytest.mark.parametrize("suffix", [b"\xf8\x01\x05", b"\x18\x09"], ids=["unknown-field", "unknown-model-type"])
def test_sentencepiece_model_with_a_nested_unknown_field_is_refused(tmp_path, tokenizer_model, suffix):
    refused = scan_tokenizer(tmp_path, with_trainer_spec_suffix(tokenizer_model, suffix))
    assert refused["finding"].startswith(NOT_RESERIALIZED)
    assert refused["kind"] == "malformed"


def test_truncated_sentencepiece_model_is_refused(tmp_path, tokenizer_model):
    refused = scan_tokenizer(tmp_path, tokenizer_model[: len(tokenizer_model) // 2])
    assert refused["finding"].startswith(NOT_PARSED)


def test_sentencepiece_model_cut_after_its_pieces_is_refused(tmp_path, tokenizer_model):
    pieces_only = type(model_proto(tokenizer_model))(pieces=model_proto(tokenizer_model).pieces)
    refused = scan_tokenizer(tmp_path, pieces_only.SerializeToString())
    assert refused["finding"] == "SentencePiece model without trainer_spec or normalizer_spec (truncated)"


def test_sentencepiece_protobuf_without_pieces_is_refused(tmp_path, tokenizer_model):
    model = model_proto(tokenizer_model)
    del model.pieces[:]
    refused = scan_tokenizer(tmp_path, model.SerializeToString())
    assert refused["finding"] == "unrecognised binary format (not UTF-8 text, nor a SentencePiece model: protobuf without pieces)"
    assert refused["kind"] == "unrecognised"


def test_sentencepiece_model_with_an_empty_piece_is_refused(tmp_path, tokenizer_model):
    model = model_proto(tokenizer_model)
    model.pieces[7].piece = ""
    refused = scan_tokenizer(tmp_path, model.SerializeToString())
    assert refused["finding"] == "SentencePiece model with 1 empty piece(s), the first at index 7"


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_pickle_named_tokenizer_model_is_still_refused_as_pickle(tmp_path, protocol):
    (tmp_path / "tokenizer.model").write_bytes(evil_pickle(protocol))
    with pytest.raises(ScanError) as caught:
        scan_folder(tmp_path)
    findings = [f["finding"] for f in caught.value.findings if f["file"] == "tokenizer.model"]
    assert f"pickle (protocol {protocol})" in findings
    assert any(f.startswith("picklescan: dangerous globals") for f in findings)


def test_sentencepiece_model_without_sentencepiece_installed_is_refused_with_the_fix(tmp_path, tokenizer_model,
                                                                                     monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece.sentencepiece_model_pb2", None)  # import raises ImportError
    refused = scan_tokenizer(tmp_path, tokenizer_model)
    assert "cannot check without sentencepiece and protobuf" in refused["finding"]
