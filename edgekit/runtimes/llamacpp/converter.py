"""llama.cpp's HF→GGUF converter, pinned to the installed llama-cpp-python and cached offline.

``convert_hf_to_gguf.py`` ships only in the llama-cpp-python source distribution (vendor/llama.cpp),
and it needs the ``gguf-py`` bundled next to it (PyPI's ``gguf`` lags behind). The first call fetches
exactly the installed version's sdist with pip, checks its sha256 against the table below, and unpacks
only the converter files into ``$EDGEKIT_CACHE/llama.cpp/<version>/`` (default ``~/.cache/edgekit``).
Later calls are offline and re-check every cached file. The converter always runs in a child Python
with that gguf-py on PYTHONPATH, never inside the edgekit process.

``EDGEKIT_LLAMA_CPP_SOURCE`` may name an extracted llama.cpp tree (or sdist) or the sdist .tar.gz
itself, for machines that never reach PyPI.

Example:
    >>> source = converter_source()  # pip-fetched once, then from the cache
    >>> convert(source, Path("models/source"), Path("out/model.gguf"), outtype="f16")
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError, IntegrityError, UnsupportedModelError
from edgekit.fsutil import file_digests, fsync_dir, sha256_file, tree_digest, write_json

DISTRIBUTION = "llama-cpp-python"
SOURCE_ENV = "EDGEKIT_LLAMA_CPP_SOURCE"
CACHE_ENV = "EDGEKIT_CACHE"
SCRIPT = "convert_hf_to_gguf.py"
MARKER = "edgekit-source.json"
# sha256 of each llama-cpp-python sdist on PyPI (pip checked it against the index when it was added).
SDIST_SHA256 = {
    "0.3.36": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
}
# What the converter reads from vendor/llama.cpp: the script, its model-class package (split out of the
# script in 2025), the bundled gguf-py, and the chat templates some model classes embed.
_KEEP = (SCRIPT, "conversion/", "gguf-py/gguf/", "gguf-py/LICENSE", "models/templates/", "LICENSE")
_OFFLINE_FIX = f"run once on a machine that reaches PyPI, or set {SOURCE_ENV} to an extracted llama-cpp-python sdist"


class ConverterUnavailableError(EdgekitError):
    """The converter source can be neither found in the cache nor fetched."""


class ConverterIntegrityError(IntegrityError):
    """A fetched sdist or a cached converter file does not match its recorded sha256."""


class ConversionError(EdgekitError):
    """The converter or the quantizer failed on a model."""


@dataclasses.dataclass(frozen=True)
class ConverterSource:
    """A llama.cpp tree holding the converter.

    Attributes:
        root: the folder with convert_hf_to_gguf.py, conversion/ and gguf-py/.
        version: the llama-cpp-python version it comes from (None for an unversioned override).
        sdist_sha256: sha256 of the sdist it was unpacked from (None for an extracted override).
        origin: ``download``, ``cache`` or ``override``.
    """

    root: Path
    version: str | None
    sdist_sha256: str | None
    origin: str

    def record(self) -> dict[str, Any]:
        """What the manifest keeps about the converter."""
        return {
            "llama_cpp_python": self.version,
            "sdist_sha256": self.sdist_sha256,
            "sdist_sha256_pinned": self.version in SDIST_SHA256 and self.sdist_sha256 == SDIST_SHA256[self.version],
            "override": self.origin == "override",  # not download/cache: where the same sdist came from varies by run
            "files_sha256": tree_digest(file_digests(self.root, exclude=(MARKER,))),
        }


def installed_version() -> str:
    """The installed llama-cpp-python version (the project's lock pins it)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConverterUnavailableError(
            f"{DISTRIBUTION} is not installed, so there is no converter version to match",
            'pip install -c requirements/lock.txt -e ".[llamacpp]"',
        ) from exc


def cache_root() -> Path:
    """``$EDGEKIT_CACHE/llama.cpp`` or ``~/.cache/edgekit/llama.cpp``."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgekit"
    return Path(base).expanduser() / "llama.cpp"


def converter_source(version: str | None = None) -> ConverterSource:
    """Find or fetch the converter for ``version`` (default: the installed llama-cpp-python).

    Raises:
        ConverterUnavailableError: no cache, no override, and pip cannot fetch the sdist.
        ConverterIntegrityError: the sdist or a cached file does not match its sha256.
    """
    version = version or installed_version()
    override = os.environ.get(SOURCE_ENV)
    if override:
        return _from_override(Path(override).expanduser(), version)
    final = cache_root() / version
    with _cache_lock(final):
        if (final / MARKER).is_file():
            return _verified_cache(final, "cache")
        if final.exists():
            raise ConverterIntegrityError(
                f"{final} exists but edgekit did not write it (no {MARKER})",
                f"delete {final} and run again to fetch a fresh copy",
            )
        with tempfile.TemporaryDirectory(prefix="edgekit-llama-sdist-") as download:
            sdist = fetch_sdist(version, Path(download))
            digest = verify_sdist(sdist, version)
            unpack_converter(sdist, final, version, digest)
        return _verified_cache(final, "download")


def _from_override(path: Path, version: str) -> ConverterSource:
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        digest = verify_sdist(path, version)
        final = cache_root() / version
        with _cache_lock(final):
            if not (final / MARKER).is_file():
                unpack_converter(path, final, version, digest)
            return _verified_cache(final, "override")
    for root in (path, path / "vendor" / "llama.cpp"):
        if (root / SCRIPT).is_file() and (root / "gguf-py" / "gguf").is_dir():
            return ConverterSource(root.resolve(), None, None, "override")
    raise ConverterUnavailableError(
        f"{SOURCE_ENV}={path} holds no {SCRIPT} with gguf-py/ next to it",
        f"point it at an extracted llama-cpp-python-{version} sdist, its vendor/llama.cpp, or the .tar.gz",
    )


@contextlib.contextmanager
def _cache_lock(final: Path) -> Iterator[None]:
    """Serialize fetches of one version, so parallel optimize stages download it once."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no lock; the atomic rename still keeps the cache whole
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch_sdist(version: str, dest: Path) -> Path:
    """Download the llama-cpp-python ``version`` sdist into ``dest`` with pip; return its path.

    A pinned version is fetched in pip's hash-checking mode, so a mismatch stops pip itself.
    pip prepares the sdist's metadata (in an isolated build env), but builds nothing.
    """
    requirement = f"{DISTRIBUTION}=={version}"
    if version in SDIST_SHA256:
        requirement += f" --hash=sha256:{SDIST_SHA256[version]}"
    requirements = dest / "requirements.txt"
    requirements.write_text(requirement + "\n")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        DISTRIBUTION,
        "--dest",
        str(dest),
        "--retries",
        "2",
        "-r",
        str(requirements),
    ]
    if version in SDIST_SHA256:
        command.append("--require-hashes")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        _raise_fetch_error(result.stdout + result.stderr, version)
    found = sorted(dest.glob("*.tar.gz"))
    if not found:
        raise ConverterUnavailableError(f"pip downloaded no sdist for {requirement}", _OFFLINE_FIX)
    return found[0]


def _raise_fetch_error(output: str, version: str) -> None:
    tail = " | ".join(line.strip() for line in output.strip().splitlines()[-4:])
    if "DO NOT MATCH THE HASHES" in output:
        raise ConverterIntegrityError(
            f"the {DISTRIBUTION} {version} sdist from the index does not match the pinned sha256 {SDIST_SHA256.get(version)}",
            "check the package index or proxy pip uses; do not use that file",
        )
    raise ConverterUnavailableError(f"pip could not fetch the {DISTRIBUTION} {version} sdist ({tail})", _OFFLINE_FIX)


def verify_sdist(path: Path, version: str) -> str:
    """Return the sdist's sha256, refusing it when it differs from the pinned one for ``version``."""
    digest = sha256_file(path)
    expected = SDIST_SHA256.get(version)
    if expected and digest != expected:
        raise ConverterIntegrityError(
            f"hash mismatch for {path.name}: expected {expected[:12]}… for {DISTRIBUTION} {version}, got {digest[:12]}…",
            f"use the PyPI sdist of {DISTRIBUTION}=={version}, or delete {path} and fetch it again",
        )
    return digest


def unpack_converter(sdist: Path, final: Path, version: str, sdist_sha256: str) -> None:
    """Unpack only the converter's files from ``sdist`` into ``final`` (temp folder, then rename)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            members = _converter_members(archive)
            if not any(m.name.endswith("/" + SCRIPT) for m in members):
                raise ConverterUnavailableError(
                    f"{sdist.name} has no vendor/llama.cpp/{SCRIPT}", f"use the {DISTRIBUTION}=={version} sdist from PyPI"
                )
            # The "data" filter (Python 3.10.12+) also refuses links and absolute paths.
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(tmp, members=members, **safe)
        tree = next(tmp.glob("*/vendor/llama.cpp"))
        payload = {
            "distribution": DISTRIBUTION,
            "version": version,
            "sdist": sdist.name,
            "sdist_sha256": sdist_sha256,
            "files": file_digests(tree),
        }
        write_json(tree / MARKER, payload)
        os.replace(tree, final)  # one rename: readers see no cache or a whole one
        fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _converter_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in archive.getmembers():
        _, _, rest = member.name.partition("/vendor/llama.cpp/")
        inside = rest and ".." not in Path(rest).parts
        if inside and rest.startswith(_KEEP) and (member.isfile() or member.isdir()):
            members.append(member)
    return members


def _verified_cache(folder: Path, origin: str) -> ConverterSource:
    """Check every cached file against the digests recorded at unpack time."""
    marker = json.loads((folder / MARKER).read_text())
    fix = f"delete {folder} and run again to fetch a fresh copy"
    actual = file_digests(folder, exclude=(MARKER,))
    for name, expected in marker["files"].items():
        got = actual.get(name, {}).get("sha256")
        if got != expected["sha256"]:
            state = "is missing" if got is None else f"was changed: expected {expected['sha256'][:12]}…, got {got[:12]}…"
            raise ConverterIntegrityError(f"cached converter file {folder / name} {state}", fix)
    extra = sorted(set(actual) - set(marker["files"]) - {n for n in actual if "__pycache__" in n})
    if extra:
        raise ConverterIntegrityError(f"{folder} holds files the converter cache did not write: {', '.join(extra)}", fix)
    return ConverterSource(folder, marker["version"], marker["sdist_sha256"], origin)


def child_env(source: ConverterSource) -> dict[str, str]:
    """Environment for a child Python that imports the bundled gguf-py (and never a model hub)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("NO_LOCAL_GGUF", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(source.root / "gguf-py"), os.environ.get("PYTHONPATH"))))
    return env


# The converter module of the encoders llama.cpp embeds with llama_encode (BERT, DistilBERT, RoBERTa, ...).
ENCODER_MODULE = "bert"


def architecture_table(source: ConverterSource) -> dict[str, str] | None:
    """HF architecture → converter module, read (not imported) from ``conversion/__init__.py``.

    None when the tree predates that table (the converter then answers for itself when it runs).
    """
    path = source.root / "conversion" / "__init__.py"
    if not path.is_file():
        return None
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "TEXT_MODEL_MAP":
            return ast.literal_eval(node.value)
    return None


def check_architecture(source: ConverterSource, model: Path) -> str:
    """The model's HF architecture, if the converter makes an encoder llama.cpp can embed with; else refuse.

    Raises:
        UnsupportedModelError: the converter does not know the architecture, or it is not a BERT-family encoder.
    """
    config = json.loads((model / "config.json").read_text())
    architecture = (config.get("architectures") or [""])[0]
    table = architecture_table(source)
    if table is None:
        return architecture
    encoders = sorted(name for name, module in table.items() if module == ENCODER_MODULE)
    fix = f"use another runtime for this model; llama.cpp's converter embeds: {', '.join(encoders)}"
    if architecture not in table:
        raise UnsupportedModelError(
            f"the llamacpp runtime cannot convert architecture {architecture!r} (model_type {config.get('model_type')!r}): "
            f"llama.cpp's converter (llama-cpp-python {source.version}) does not know it", fix)
    if table[architecture] != ENCODER_MODULE:
        raise UnsupportedModelError(
            f"the llamacpp runtime runs BERT-family encoders, and {architecture!r} is a {table[architecture]!r} model", fix)
    return architecture


def convert(source: ConverterSource, model: Path, out: Path, outtype: str) -> None:
    """Run convert_hf_to_gguf.py on the Hugging Face folder ``model``, writing ``out``.

    Raises:
        UnsupportedModelError: the converter says it does not support the architecture.
        ConversionError: the converter exited non-zero otherwise (its last lines are in the message).
    """
    command = [sys.executable, str(source.root / SCRIPT), str(model), "--outtype", outtype, "--outfile", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=child_env(source))
    if result.returncode != 0 or not out.is_file():
        tail = " | ".join(result.stderr.strip().splitlines()[-5:])
        if re.search(r"Model \S+ is not supported", tail):  # convert_hf_to_gguf.py's words for an architecture it lacks
            raise UnsupportedModelError(f"llama.cpp's converter refused {model}: {tail}",
                                        "use another runtime for this model (llama.cpp embeds BERT-family encoders)")
        raise ConversionError(
            f"{SCRIPT} failed on {model} (outtype {outtype}, exit {result.returncode}): {tail}",
            "check that the model's architecture is one llama.cpp supports (BERT family for embeddings)",
        )


_DESCRIBE = """
import collections, json, sys
from gguf import GGUFReader
reader = GGUFReader(sys.argv[1])
types = collections.Counter(t.tensor_type.name for t in reader.tensors)
print(json.dumps({"tensors": len(reader.tensors), "tensor_types": dict(sorted(types.items()))}))
"""


def describe_gguf(source: ConverterSource, path: Path) -> dict[str, Any]:
    """Tensor count and tensor types of a GGUF file, read by the bundled gguf-py in a child Python.

    The types show llama.cpp's fallbacks: a K-quant tensor whose rows are not a multiple of 256
    is stored as Q5_0/Q5_1/Q8_0 instead.
    """
    result = subprocess.run([sys.executable, "-c", _DESCRIBE, str(path)], capture_output=True, text=True, env=child_env(source))
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["gguf reader failed"])[-1]}
    return json.loads(result.stdout)
