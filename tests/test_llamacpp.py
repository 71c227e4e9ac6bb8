"""The llama.cpp runtime: converter fetch and cache, refusal of tampered sources, GGUF sizes,
tokenizer agreement with edgekit's, and ``run`` on packed batches.

The shared conformance suite (tests/test_runtimes.py) covers convert → load → run → fidelity for
every precision; these tests cover what is particular to llama.cpp.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import time

import numpy as np
import pytest

from edgekit import api
from edgekit.errors import ConfigError
from edgekit.layout import Layout
from edgekit.runtimes.llamacpp import converter
from edgekit.runtimes.llamacpp.config import LlamaCppConfig, LlamaCppOptions
from edgekit.tasks.embedding.encoding import TextEncoder

PINNED_VERSION = "0.3.36"
PRECISIONS_BY_SIZE = ("f32", "f16", "q8_0", "q5_k_m", "q4_k_m")  # largest file first


@pytest.fixture
def offline_pip(tmp_path, monkeypatch):
    """pip sees no index and no user config, as on a machine cut off from PyPI."""
    empty = tmp_path / "no-packages"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    monkeypatch.delenv(converter.SOURCE_ENV, raising=False)


def test_options_name_the_bad_field():
    assert LlamaCppConfig.options.parse({"n_ubatch": 256}, "options") == LlamaCppOptions(n_ubatch=256)
    with pytest.raises(ConfigError, match="options.n_batch"):
        LlamaCppConfig.options.parse({"n_batch": 256}, "options")
    with pytest.raises(ConfigError, match="options.n_ubatch = 0"):
        LlamaCppConfig.options.parse({"n_ubatch": 0}, "options")
    with pytest.raises(ConfigError, match="options.flash_attn"):
        LlamaCppConfig.options.parse({"flash_attn": "yes"}, "options")


def _forged_sdist(path, version: str):
    """A tarball shaped like the sdist (right name and layout) but not PyPI's bytes."""
    data = b"print('not the real converter')\n"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(f"llama_cpp_python-{version}/vendor/llama.cpp/{converter.SCRIPT}")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def test_an_sdist_that_differs_from_the_pinned_hash_is_refused(tmp_path, monkeypatch):
    forged = _forged_sdist(tmp_path / f"llama_cpp_python-{PINNED_VERSION}.tar.gz", PINNED_VERSION)
    monkeypatch.setenv(converter.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(converter.SOURCE_ENV, str(forged))
    with pytest.raises(converter.ConverterIntegrityError, match="hash mismatch for llama_cpp_python-0.3.36.tar.gz") as error:
        converter.converter_source(PINNED_VERSION)
    assert "use the PyPI sdist of llama-cpp-python==0.3.36" in str(error.value)
    assert not (tmp_path / "cache" / "llama.cpp" / PINNED_VERSION).exists()


def test_an_override_without_the_converter_names_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setenv(converter.SOURCE_ENV, str(tmp_path))
    with pytest.raises(converter.ConverterUnavailableError, match="holds no convert_hf_to_gguf.py"):
        converter.converter_source(PINNED_VERSION)


def test_no_network_and_no_cache_names_the_fix(tmp_path, monkeypatch, offline_pip):
    monkeypatch.setenv(converter.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(converter.ConverterUnavailableError) as error:
        converter.converter_source(PINNED_VERSION)
    assert "pip could not fetch the llama-cpp-python 0.3.36 sdist" in error.value.message
    assert "run once on a machine that reaches PyPI" in error.value.hint
    assert converter.SOURCE_ENV in error.value.hint


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """The installed version's converter, fetched with pip into a fresh cache (needs PyPI once)."""
    cache = tmp_path_factory.mktemp("edgekit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(converter.CACHE_ENV, str(cache))
        patch.delenv(converter.SOURCE_ENV, raising=False)
        started = time.perf_counter()
        try:
            source = converter.converter_source()
        except converter.ConverterUnavailableError as exc:
            pytest.skip(f"PyPI not reachable for the first fetch: {exc}")
    return source, time.perf_counter() - started, cache


@pytest.mark.llamacpp
@pytest.mark.slow
def test_the_converter_is_fetched_once_then_served_offline_from_the_cache(fetched, monkeypatch, offline_pip):
    first, first_seconds, cache = fetched
    assert first.origin == "download" and first.version == converter.installed_version()
    assert first.root == cache / "llama.cpp" / first.version
    assert (first.root / converter.SCRIPT).is_file() and (first.root / "gguf-py" / "gguf" / "gguf_writer.py").is_file()
    if first.version in converter.SDIST_SHA256:
        assert first.sdist_sha256 == converter.SDIST_SHA256[first.version] and first.record()["sdist_sha256_pinned"]

    monkeypatch.setenv(converter.CACHE_ENV, str(cache))
    started = time.perf_counter()
    second = converter.converter_source()  # pip cannot reach an index now: only the cache can answer
    assert second.origin == "cache" and second.root == first.root
    assert second.record()["files_sha256"] == first.record()["files_sha256"]
    assert time.perf_counter() - started < min(2.0, first_seconds)


@pytest.mark.llamacpp
@pytest.mark.slow
@pytest.mark.parametrize("tamper", ["edit", "delete", "add"])
def test_a_tampered_cache_is_refused(fetched, tmp_path, monkeypatch, tamper):
    source = fetched[0]
    copy = tmp_path / "llama.cpp" / source.version
    shutil.copytree(source.root, copy)
    monkeypatch.setenv(converter.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(converter.SOURCE_ENV, raising=False)
    target = copy / "gguf-py" / "gguf" / "constants.py"
    if tamper == "edit":
        target.write_text(target.read_text() + "\nMODEL_ARCH = None\n")
        expected = "constants.py was changed"
    elif tamper == "delete":
        target.unlink()
        expected = "constants.py is missing"
    else:
        (copy / "conversion" / "sitecustomize.py").write_text("import os\n")
        expected = "files the converter cache did not write: conversion/sitecustomize.py"
    with pytest.raises(converter.ConverterIntegrityError, match=expected) as error:
        converter.converter_source(source.version)
    assert f"delete {copy} and run again" in str(error.value)


@pytest.mark.llamacpp
@pytest.mark.slow
def test_an_extracted_tree_override_is_used_as_is(fetched, monkeypatch):
    monkeypatch.setenv(converter.SOURCE_ENV, str(fetched[0].root))
    source = converter.converter_source()
    assert source.origin == "override" and source.root == fetched[0].root and source.sdist_sha256 is None


@pytest.mark.llamacpp
@pytest.mark.slow
def test_pip_refuses_an_index_file_that_differs_from_the_pin(tmp_path, monkeypatch):
    version = converter.installed_version()
    monkeypatch.setitem(converter.SDIST_SHA256, version, "0" * 64)
    monkeypatch.setenv(converter.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(converter.SOURCE_ENV, raising=False)
    try:
        converter.converter_source(version)
    except converter.ConverterIntegrityError as error:
        assert "does not match the pinned sha256 0000" in error.message
    except converter.ConverterUnavailableError as exc:
        pytest.skip(f"PyPI not reachable: {exc}")
    else:
        pytest.fail("a sdist that differs from the pinned sha256 was accepted")
    assert not (tmp_path / "llama.cpp" / version).exists()


@pytest.fixture(scope="module")
def gguf_variants(baseline_project):
    """One variant per precision, made by the optimize stage (as `dvc repro` would)."""
    import yaml

    params_path = baseline_project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    for precision in PRECISIONS_BY_SIZE:
        params["variants"][f"gguf-{precision.replace('_', '-')}"] = {"runtime": "llamacpp", "precision": precision}
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    manifests = {
        precision: api.optimize(f"gguf-{precision.replace('_', '-')}", baseline_project) for precision in PRECISIONS_BY_SIZE
    }
    for precision, manifest in manifests.items():
        assert manifest["status"] == "ok", (precision, manifest.get("error"))
    return manifests


@pytest.mark.llamacpp
@pytest.mark.slow
def test_gguf_files_shrink_with_precision_and_record_how_they_were_made(gguf_variants):
    sizes = [gguf_variants[p]["files"]["model.gguf"]["bytes"] for p in PRECISIONS_BY_SIZE]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes), dict(
        zip(PRECISIONS_BY_SIZE, sizes, strict=True)
    )
    for manifest in gguf_variants.values():
        made = manifest["optimization"]
        assert made["converter"]["llama_cpp_python"] == converter.installed_version()
        assert made["converter"]["sdist_sha256"] == converter.SDIST_SHA256.get(
            made["converter"]["llama_cpp_python"], made["converter"]["sdist_sha256"]
        )
        assert made["gguf"]["tensors"] > 0
        assert "tokenizer.json" in manifest["files"]
    assert set(gguf_variants["f32"]["optimization"]["gguf"]["tensor_types"]) == {"F32"}
    assert "Q8_0" in gguf_variants["q8_0"]["optimization"]["gguf"]["tensor_types"]
    assert gguf_variants["q4_k_m"]["optimization"]["quantization"] == {"ftype": "Q4_K_M", "from": "F32"}
    assert "Q4_K" in gguf_variants["q4_k_m"]["optimization"]["gguf"]["tensor_types"]


# Accents, punctuation, numbers, mixed case, scripts without spaces, emoji, invisible characters.
TRICKY = [
    "naïve café — déjà vu",
    "ÉCOLE Über Straße façade",
    "Ünïcödé ÀÇÇÉÑTS",
    "e\u0301 combining accent",
    "Hello, World!!! (really?) [yes]; a/b-c_d",
    "don't can't won't ʼmodifierʼ “curly” ‘single’",
    "3.14159 1,000,000 2024-11-24 $5.99 50% 1e-9",
    "McDonald's iPhone eBay GPT-4o",
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "tab\tnew\nline  spaces",
    "日本語のテキスト 中文",
    "emoji 😀 👍🏽",
    "ﬁnancial ｆｕｌｌｗｉｄｔｈ",
    "a\u00adb soft\u200bhyphen",
    "Ωmega αβγ Привет мир",
    "<html>&amp;</html> https://example.com/a?b=c",
    "[MASK] is a special token in the text",
]
# HF's WordPiece turns a word over max_input_chars_per_word (100) into [UNK]; llama.cpp's WPM splits it
# into pieces (the HF behaviour: transformers.js#398; llama.cpp's WPM history: llama.cpp#5496).
KNOWN_DIFFERENT = ["x" * 300]


def _gguf_tokens(folder, texts):
    import llama_cpp

    vocab = llama_cpp.Llama(str(folder / "model.gguf"), vocab_only=True, verbose=False)
    # special=True: HF's tokenizer also parses "[MASK]" in raw text as the special token.
    return [vocab.tokenize(text.encode(), add_bos=True, special=True) for text in texts]


def _edgekit_tokens(folder, texts):
    encoder = TextEncoder(folder, 512)
    return [encoder.encode([text])["input_ids"][0].tolist() for text in texts]


@pytest.mark.llamacpp
@pytest.mark.slow
def test_the_gguf_tokenizer_gives_the_baseline_token_ids(baseline_project, gguf_variants):
    folder = Layout(baseline_project).variant_dir("gguf-q8-0")
    ours, theirs = _edgekit_tokens(folder, TRICKY), _gguf_tokens(folder, TRICKY)
    mismatched = [(text, o, t) for text, o, t in zip(TRICKY, ours, theirs, strict=True) if o != t]
    assert not mismatched, mismatched
    # The known difference stays known: if llama.cpp ever matches HF here, this list can go.
    assert _edgekit_tokens(folder, KNOWN_DIFFERENT) != _gguf_tokens(folder, KNOWN_DIFFERENT)


def _backend(folder, **options):
    from edgekit.runtimes.llamacpp.backend import LlamaCppBackend

    backend = LlamaCppBackend("f32", LlamaCppConfig.options.parse(options, "options"), threads=2)
    backend.load(folder)
    return backend


@pytest.mark.llamacpp
@pytest.mark.slow
def test_packed_passes_equal_one_row_at_a_time(baseline_project, gguf_variants):
    folder = Layout(baseline_project).variant_dir("gguf-f32")
    texts = ["A cat.", "Quarterly revenue rose by four percent in the third quarter.", "ok", "naïve café — déjà vu " * 3]
    batch = TextEncoder(folder, 64).encode(texts)
    packed = _backend(folder, n_ubatch=40).run(batch)  # forces several passes, each with several rows
    single = _backend(folder)
    for row in range(len(texts)):
        alone = single.run({name: values[row : row + 1] for name, values in batch.items()})
        # Not bit-equal: llama.cpp picks matmul kernels by token count. A leak between packed rows
        # (a wrong attention mask) would move states by ~0.1, far above this.
        np.testing.assert_allclose(packed[row], alone[0], atol=2e-3)
    padding = batch["attention_mask"] == 0
    assert padding.any() and not packed[padding].any()
    assert packed.dtype == np.float32 and packed.shape == (*batch["input_ids"].shape, 384)


@pytest.mark.llamacpp
@pytest.mark.slow
def test_inputs_llama_cpp_cannot_take_raise_instead_of_aborting(baseline_project, gguf_variants):
    from edgekit.runtimes.llamacpp.backend import RowTooLongError

    folder = Layout(baseline_project).variant_dir("gguf-f32")
    backend = _backend(folder, n_ubatch=16)
    batch = TextEncoder(folder, 64).encode(["a sentence long enough to need more than sixteen word pieces in one row " * 2])
    with pytest.raises(RowTooLongError, match="raise options.n_ubatch"):
        backend.run(batch)
    pair = TextEncoder(folder, 64).encode(["short"])
    pair["token_type_ids"][0, 1:] = 1
    with pytest.raises(Exception, match="ignores token_type_ids"):
        backend.run(pair)


@pytest.mark.llamacpp
@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "refusal"), [
    ("BertModel", None),
    ("DistilBertModel", None),  # mapped onto llama.cpp's BERT graph
    ("LlamaForCausalLM", "runs BERT-family encoders, and 'LlamaForCausalLM' is a 'llama' model"),
    ("EdgekitTestModel", "cannot convert architecture 'EdgekitTestModel' (model_type 'edgekit-test')"),
])
def test_architectures_the_converter_cannot_embed_are_refused_before_converting(tmp_path, architecture, refusal):
    from edgekit.errors import UnsupportedModelError

    try:
        source = converter.converter_source()
    except converter.ConverterUnavailableError as exc:
        pytest.skip(f"PyPI not reachable for the first fetch: {exc}")
    (tmp_path / "config.json").write_text(f'{{"architectures": ["{architecture}"], "model_type": "edgekit-test"}}')
    if refusal is None:
        assert converter.check_architecture(source, tmp_path) == architecture
        return
    with pytest.raises(UnsupportedModelError, match=re.escape(refusal)) as error:
        converter.check_architecture(source, tmp_path)
    assert "DistilBertModel" in error.value.hint and error.value.variant_record()["status"] == "skipped"
