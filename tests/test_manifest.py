"""Variant manifests: every file is recorded, and any changed, missing or extra file is caught."""

from __future__ import annotations

import json
import re

import pytest

from edgekit.errors import IntegrityError, StageInputError
from edgekit.manifest import MANIFEST, read_manifest, verify_manifest, write_manifest

RECORD = {"variant": "ort-int8", "runtime": "onnxruntime", "precision": "int8", "status": "ok"}


@pytest.fixture
def variant(tmp_path):
    folder = tmp_path / "models" / "variants" / "ort-int8"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "model.onnx").write_bytes(bytes(range(256)) * 4)
    (folder / "embedding.json").write_text('{"pooling": "mean"}')
    (folder / "tokenizer" / "tokenizer.json").write_text("{}")
    write_manifest(folder, RECORD)
    return folder


def test_manifest_records_every_file(variant):
    manifest = json.loads((variant / MANIFEST).read_text())
    assert manifest["variant"] == "ort-int8"
    assert manifest["schema_version"] == 1
    assert sorted(manifest["files"]) == ["embedding.json", "model.onnx", "tokenizer/tokenizer.json"]
    assert manifest["files"]["model.onnx"]["bytes"] == 1024
    assert manifest["size_bytes"] == 1024 + len('{"pooling": "mean"}') + 2
    assert len(manifest["files_sha256"]) == 64


def test_verify_passes_on_an_untouched_folder(variant):
    manifest = verify_manifest(variant)
    assert manifest == read_manifest(variant)
    assert manifest["status"] == "ok"


def test_rewriting_the_manifest_is_stable(variant):
    before = (variant / MANIFEST).read_bytes()
    write_manifest(variant, RECORD)  # the manifest itself is not listed in the manifest
    assert (variant / MANIFEST).read_bytes() == before


def test_one_changed_byte_is_a_hash_mismatch(variant):
    data = bytearray((variant / "model.onnx").read_bytes())
    data[500] ^= 0xFF
    (variant / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=rf"hash mismatch for {re.escape(str(variant / 'model.onnx'))}") as info:
        verify_manifest(variant)
    assert "dvc repro optimize@ort-int8" in str(info.value)


def test_a_changed_file_in_a_subfolder_is_caught(variant):
    (variant / "tokenizer" / "tokenizer.json").write_text("[]")
    with pytest.raises(IntegrityError, match=r"hash mismatch for .*tokenizer/tokenizer\.json"):
        verify_manifest(variant)


def test_a_deleted_file_is_caught(variant):
    (variant / "embedding.json").unlink()
    with pytest.raises(IntegrityError, match=r"embedding\.json is missing \(listed in the manifest\)") as info:
        verify_manifest(variant)
    assert "dvc repro optimize@ort-int8" in str(info.value)


def test_an_extra_file_is_caught(variant):
    (variant / "stray.bin").write_bytes(b"x")
    with pytest.raises(IntegrityError, match=r"holds files the manifest does not list: stray\.bin") as info:
        verify_manifest(variant)
    assert "dvc repro optimize@ort-int8" in str(info.value)


def test_missing_manifest_is_a_stage_input_error(tmp_path):
    folder = tmp_path / "ort-fp32"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"x")
    with pytest.raises(StageInputError, match=rf"{re.escape(str(folder / MANIFEST))} does not exist") as info:
        read_manifest(folder)
    assert "dvc repro optimize@ort-fp32" in str(info.value)
    with pytest.raises(StageInputError):
        verify_manifest(folder)


def test_malformed_manifest_is_a_stage_input_error(variant):
    (variant / MANIFEST).write_text("{not json")
    with pytest.raises(StageInputError, match=r"manifest\.json is not valid JSON"):
        verify_manifest(variant)
