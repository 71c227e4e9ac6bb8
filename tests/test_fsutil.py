"""Atomic writes, staged folders and content digests: a failure never leaves a half-written output."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat

import pytest

from edgekit.errors import StageInputError
from edgekit.fsutil import file_digests, read_json, staged_dir, tree_digest, write_bytes, write_json, write_text


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_json_round_trips_and_leaves_only_the_file(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    payload = {"b": [1, 2.5, None], "a": {"ok": True, "name": "ünïcode"}}
    write_json(path, payload)
    assert read_json(path) == payload
    assert json.loads(path.read_text(encoding="utf-8")) == payload
    assert path.read_text().endswith("\n")
    assert os.listdir(path.parent) == ["metrics.json"]


def test_write_json_is_key_sorted_and_stable(tmp_path):
    write_json(tmp_path / "one.json", {"z": 1, "a": 2})
    write_json(tmp_path / "two.json", {"a": 2, "z": 1})
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()


def test_write_json_overwrites(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"v": 1})
    write_json(path, {"v": 2})
    assert read_json(path) == {"v": 2}
    assert os.listdir(tmp_path) == ["x.json"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object()], ids=["nan", "inf", "object"])
def test_failed_json_write_keeps_the_previous_file(tmp_path, bad):
    path = tmp_path / "summary.json"
    write_json(path, {"version": 1})
    before = path.read_bytes()
    with pytest.raises((ValueError, TypeError)):
        write_json(path, {"version": 2, "bad": bad})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["summary.json"]


def test_failure_while_writing_removes_the_temporary_file(tmp_path):
    # str to a binary handle fails inside the write, after the temporary file exists.
    path = tmp_path / "model.bin"
    write_bytes(path, b"old")
    with pytest.raises(TypeError):
        write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_written_files_are_world_readable_under_umask_022(tmp_path):
    with umask(0o022):
        write_json(tmp_path / "a.json", {"x": 1})
        write_text(tmp_path / "b.txt", "hello")
        with staged_dir(tmp_path / "folder") as folder:
            (folder / "inner.txt").write_text("x")
    assert mode(tmp_path / "a.json") == 0o644
    assert mode(tmp_path / "b.txt") == 0o644
    assert mode(tmp_path / "folder") == 0o755


def test_written_files_follow_a_stricter_umask(tmp_path):
    with umask(0o077):
        write_json(tmp_path / "a.json", {"x": 1})
    assert mode(tmp_path / "a.json") == 0o600


def test_staged_dir_replaces_the_folder_on_success(tmp_path):
    final = tmp_path / "variant"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with staged_dir(final) as folder:
        assert folder != final
        (folder / "new.txt").write_text("new")
        assert (final / "old.txt").is_file()  # not replaced until the block ends
    assert sorted(os.listdir(final)) == ["new.txt"]
    assert os.listdir(tmp_path) == ["variant"]


def test_staged_dir_creates_a_missing_folder(tmp_path):
    final = tmp_path / "deep" / "variant"
    with staged_dir(final) as folder:
        (folder / "a").write_text("a")
    assert (final / "a").read_text() == "a"
    assert os.listdir(final.parent) == ["variant"]


def test_staged_dir_keeps_the_old_content_when_the_block_raises(tmp_path):
    final = tmp_path / "variant"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with staged_dir(final) as folder:
            (folder / "partial.txt").write_text("half")
            raise RuntimeError("boom")
    assert sorted(os.listdir(final)) == ["old.txt"]
    assert (final / "old.txt").read_text() == "old"
    assert os.listdir(tmp_path) == ["variant"]


def test_staged_dir_failure_without_old_folder_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with staged_dir(tmp_path / "variant"):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def make_tree(folder, files: dict[str, bytes], order: list[str]) -> None:
    for name in order:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])


FILES = {"model.onnx": b"\x00" * 100 + b"weights", "sub/config.json": b'{"a": 1}', "tokenizer.json": b"{}"}


def test_file_digests_are_independent_of_creation_order(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    make_tree(one, FILES, ["model.onnx", "sub/config.json", "tokenizer.json"])
    make_tree(two, FILES, ["tokenizer.json", "sub/config.json", "model.onnx"])
    digests = file_digests(one)
    assert digests == file_digests(two)
    assert sorted(digests) == ["model.onnx", "sub/config.json", "tokenizer.json"]
    assert digests["model.onnx"]["bytes"] == 107
    assert tree_digest(digests) == tree_digest(file_digests(two))
    assert tree_digest(dict(reversed(list(digests.items())))) == tree_digest(digests)


def test_digests_change_when_one_byte_changes(tmp_path):
    make_tree(tmp_path, FILES, list(FILES))
    before = file_digests(tmp_path)
    data = bytearray(FILES["model.onnx"])
    data[50] ^= 0x01
    (tmp_path / "model.onnx").write_bytes(bytes(data))
    after = file_digests(tmp_path)
    assert after["model.onnx"]["sha256"] != before["model.onnx"]["sha256"]
    assert after["model.onnx"]["bytes"] == before["model.onnx"]["bytes"]
    assert after["tokenizer.json"] == before["tokenizer.json"]
    assert tree_digest(after) != tree_digest(before)


def test_tree_digest_depends_on_file_names(tmp_path):
    make_tree(tmp_path, FILES, list(FILES))
    before = tree_digest(file_digests(tmp_path))
    (tmp_path / "tokenizer.json").rename(tmp_path / "tokenizer2.json")
    assert tree_digest(file_digests(tmp_path)) != before


def test_file_digests_exclude(tmp_path):
    make_tree(tmp_path, FILES, list(FILES))
    (tmp_path / "manifest.json").write_text("{}")
    assert "manifest.json" in file_digests(tmp_path)
    assert "manifest.json" not in file_digests(tmp_path, exclude=("manifest.json",))


def test_read_json_missing_file_names_the_path(tmp_path):
    path = tmp_path / "metrics" / "baseline.json"
    with pytest.raises(StageInputError, match=rf"^{re.escape(str(path))} does not exist") as info:
        read_json(path)
    assert "dvc repro" in str(info.value)


def test_read_json_malformed_file_names_the_path(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text('{"truncated": ')
    with pytest.raises(StageInputError, match=rf"^{re.escape(str(path))} is not valid JSON"):
        read_json(path)
