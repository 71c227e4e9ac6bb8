"""Scan a variant folder before the registry accepts it: every file must be an allowed format.

Formats are identified by content, never by extension, against a short allow-list (safetensors,
ONNX and its external data, GGUF, OpenVINO IR and its weights, JSON, text, and SentencePiece models
such as a decoder's ``tokenizer.model``). Anything else — pickles of any protocol, zip archives
(PyTorch checkpoints, ``.npz``), numpy arrays, HDF5, unknown binary, empty files, symlinks out of the
folder — is refused, because loading it could run code or it hides bytes the registry cannot account
for. picklescan runs on every file as a second opinion.

Every finding in the folder is collected and raised at once, so a user sees the whole list.

Example:
    >>> record = scan_folder(Path("models/variants/ort-int8"))
    >>> record["files"]["model.onnx"]["format"]
    'onnx'
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import logging
import os
import pickletools
import stat
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from edgekit.errors import EdgekitError
from edgekit.fsutil import sha256_file

SCAN_RULES_VERSION = "1"

_MB = 1 << 20
MAX_TEXT_BYTES = 50 * _MB
MAX_JSON_BYTES = 100 * _MB  # a large-vocabulary tokenizer.json is tens of MB
MAX_SAFETENSORS_HEADER = 100 * _MB
MAX_SENTENCEPIECE_BYTES = 100 * _MB  # a 256k-piece tokenizer.model is a few MB
_PICKLE_SNIFF_BYTES = _MB  # enough to see a small pickle end; a big one is refused as unrecognised anyway

ALLOWED_FORMATS = (
    "gguf", "json", "onnx", "onnx-external-data", "openvino-ir", "openvino-ir-weights", "safetensors",
    "sentencepiece-model", "text",
)

SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8, "C64": 8,
}
# Sub-byte dtypes are allowed but their packed size is not checked, only their bounds.
SAFETENSORS_PACKED_DTYPES = ("F4", "F6_E2M3", "F6_E3M2")

# sentencepiece.TrainerSpec.ModelType names; pinned here so the rules digest does not follow the installed package
SENTENCEPIECE_MODEL_TYPES = ("UNIGRAM", "BPE", "WORD", "CHAR")

GGUF_VERSIONS = (2, 3)
GGUF_DEFAULT_ALIGNMENT = 32
# ggml type id -> (elements per block, bytes per block), from ggml.c's type_traits. Types not listed
# (the IQ* family, newer ones) are still accepted, with only their offset checked.
GGML_BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2),
}

RULES: dict[str, Any] = {
    "allowed_formats": list(ALLOWED_FORMATS),
    "max_text_bytes": MAX_TEXT_BYTES,
    "max_json_bytes": MAX_JSON_BYTES,
    "max_safetensors_header": MAX_SAFETENSORS_HEADER,
    "safetensors_dtypes": sorted([*SAFETENSORS_DTYPE_BYTES, *SAFETENSORS_PACKED_DTYPES]),
    "safetensors_trailing_bytes": "refused",
    "gguf_versions": list(GGUF_VERSIONS),
    "gguf_trailing_bytes": "alignment zero padding only",
    "ggml_blocks": {str(k): list(v) for k, v in GGML_BLOCKS.items()},
    "onnx_external_data": "relative, inside folder, regular file, in bounds",
    "openvino_weights": "same-stem .bin, every Const in bounds, no trailing bytes",
    "max_sentencepiece_bytes": MAX_SENTENCEPIECE_BYTES,
    "sentencepiece_model": "files that are not UTF-8 text only; parses as sentencepiece.ModelProto; with unknown "
    "fields dropped re-serializes to the file's exact bytes; trainer_spec and normalizer_spec present; at least "
    "one piece, none empty",
    "sentencepiece_model_types": list(SENTENCEPIECE_MODEL_TYPES),
    "zip_end_record": "refused in every file",
    "pickle": "refused in every file; picklescan findings and errors refused",
    "empty_files": "refused",
    "symlinks": "file links resolving inside the folder scanned as their target; others refused",
}

_PICKLE_HINT = "re-export the model to safetensors/ONNX/GGUF; pickle files can run code when loaded"
_HINTS = {
    "pickle-bearing": _PICKLE_HINT,
    "unrecognised": "remove the file, or convert it to an allowed format: " + ", ".join(ALLOWED_FORMATS),
    "malformed": "re-export the variant (the file is truncated, corrupt or carries extra bytes)",
    "unsafe-path": "copy the file into the variant folder instead of linking or pointing outside it",
}


class ScanError(EdgekitError):
    """A variant folder holds files the registry refuses; ``findings`` lists every one.

    Args:
        findings: one dict per finding, with ``file`` (relative POSIX path), ``finding`` and ``kind``.
        folder: the scanned folder, for the message.
    """

    def __init__(self, findings: list[dict[str, str]], folder: Path):
        listed = "; ".join(f"{f['file']}: {f['finding']}" for f in findings)
        hints = sorted({_HINTS[f["kind"]] for f in findings})
        super().__init__(f"scan refused {len(findings)} finding(s) in {folder}: {listed}", "; ".join(hints))
        self.findings = findings


class _Refused(Exception):
    """One file's content breaks a rule; ``kind`` picks the hint."""

    def __init__(self, finding: str, kind: str = "malformed"):
        super().__init__(finding)
        self.finding = finding
        self.kind = kind


@dataclass
class _Scanned:
    """What is known about one file: its format, the files it claims, and its findings."""

    format: str | None = None
    claims: dict[str, str] = field(default_factory=dict)  # relative path -> format of a claimed file
    findings: list[_Refused] = field(default_factory=list)


def rules_sha256() -> str:
    """Digest of the canonical JSON of the allow-list and rules, recorded with every scan."""
    canonical = json.dumps(RULES, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def scan_folder(folder: Path) -> dict:
    """Scan every file under folder; return the scan record or raise ScanError.

    Symlinks: a link to a file that resolves inside the folder is scanned as its target's content
    (tools such as ``huggingface_hub`` link files); a link resolving outside, and any symlinked
    directory, is refused — the registry must not vouch for bytes that live elsewhere and can change.

    Args:
        folder: the variant folder, e.g. ``models/variants/ort-int8``.

    Returns:
        A deterministic record: ``scanner`` (name, rules version and digest, picklescan version),
        ``files`` (relative POSIX path -> format, bytes, sha256) and ``verdict`` ``"pass"``.

    Raises:
        ScanError: listing every refused file and why, with the fix in the hint.
    """
    root = Path(os.path.realpath(folder))
    if not root.is_dir():
        raise ScanError([{"file": str(folder), "finding": "not a directory", "kind": "unrecognised"}], folder)
    files, findings = _walk(root)
    scanned = _scan_files(files, root)
    findings += _collect_findings(scanned)
    if not files and not findings:
        findings.append({"file": ".", "finding": "the folder holds no files", "kind": "unrecognised"})
    if findings:
        raise ScanError(sorted(findings, key=lambda f: (f["file"], f["finding"])), folder)
    return _record(files, scanned)


def _record(files: dict[str, Path], scanned: dict[str, _Scanned]) -> dict:
    entries = {
        rel: {"format": scanned[rel].format, "bytes": files[rel].stat().st_size, "sha256": sha256_file(files[rel])}
        for rel in sorted(files)
    }
    scanner = {
        "name": "edgekit.registry.scan",
        "rules_version": SCAN_RULES_VERSION,
        "rules_sha256": rules_sha256(),
        "picklescan": importlib.metadata.version("picklescan"),
    }
    return {"files": entries, "scanner": scanner, "verdict": "pass"}


def _collect_findings(scanned: dict[str, _Scanned]) -> list[dict[str, str]]:
    return [
        {"file": rel, "finding": refusal.finding, "kind": refusal.kind}
        for rel, result in scanned.items()
        for refusal in result.findings
    ]


# --- walking ----------------------------------------------------------------------------------


def _inside(root: Path, path: str) -> bool:
    return os.path.commonpath([str(root), path]) == str(root)


def _walk(root: Path) -> tuple[dict[str, Path], list[dict[str, str]]]:
    """Regular files under root by relative POSIX path, and findings for everything else."""
    files: dict[str, Path] = {}
    findings: list[dict[str, str]] = []
    stack = [root]
    while stack:
        for entry in sorted(os.scandir(stack.pop()), key=lambda e: e.name):
            rel = PurePosixPath(Path(entry.path).relative_to(root)).as_posix()
            problem = _entry_problem(root, entry)
            if problem:
                findings.append({"file": rel, "finding": problem[0], "kind": problem[1]})
            elif entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            else:
                files[rel] = Path(os.path.realpath(entry.path))
    return files, findings


def _entry_problem(root: Path, entry: os.DirEntry) -> tuple[str, str] | None:
    """Why a directory entry cannot be scanned as a file or walked into, or None."""
    if entry.is_symlink():
        target = os.path.realpath(entry.path)
        if not _inside(root, target):
            return f"symlink resolving outside the folder (to {target})", "unsafe-path"
        if os.path.isdir(target):
            return "symlinked directory (not followed)", "unsafe-path"
        if not os.path.exists(target):
            return "dangling symlink", "unsafe-path"
    mode = os.stat(entry.path).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "not a regular file (device, FIFO or socket)", "unrecognised"
    if stat.S_ISREG(mode) and os.stat(entry.path).st_size == 0:
        return "empty file (no allowed format is empty)", "malformed"
    return None


# --- per-file scanning ------------------------------------------------------------------------


def _read_head(path: Path, size: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _may_claim(head: bytes) -> bool:
    """ONNX and OpenVINO XML files claim weight files, so they are scanned first."""
    return _looks_like_onnx(head) or head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def _scan_files(files: dict[str, Path], root: Path) -> dict[str, _Scanned]:
    heads = {rel: _read_head(path) for rel, path in files.items()}
    order = sorted(files, key=lambda rel: (not _may_claim(heads[rel]), rel))
    scanned: dict[str, _Scanned] = {}
    claimed: dict[str, str] = {}
    for rel in order:
        if rel in claimed:
            scanned[rel] = _claimed_file(files[rel], claimed[rel])
        else:
            scanned[rel] = _scan_content(files[rel], heads[rel], root)
            claimed.update(scanned[rel].claims)
    _apply_late_claims(scanned, claimed, files)
    for rel, path in files.items():
        scanned[rel].findings += _container_findings(path) + _picklescan_findings(path)
    return dict(sorted(scanned.items()))


def _apply_late_claims(scanned: dict[str, _Scanned], claimed: dict[str, str], files: dict[str, Path]) -> None:
    """A claimed file scanned before its claimer (rare: it looked like a model itself) takes the claim."""
    for rel, fmt in claimed.items():
        if rel in scanned and scanned[rel].format != fmt:
            scanned[rel] = _claimed_file(files[rel], fmt)


def _scan_content(path: Path, head: bytes, root: Path) -> _Scanned:
    try:
        fmt, claims = _identify(path, head, root)
        return _Scanned(format=fmt, claims=claims)
    except _Refused as refusal:
        return _Scanned(findings=[refusal])


def _identify(path: Path, head: bytes, root: Path) -> tuple[str, dict[str, str]]:
    """The allowed format of path's content and the files it claims; raises _Refused otherwise."""
    size = path.stat().st_size
    _refuse_known_containers(path, head)
    if head.startswith(b"GGUF"):
        _check_gguf(path, size)
        return "gguf", {}
    if _looks_like_safetensors(head, size):
        _check_safetensors(path, size)
        return "safetensors", {}
    if _looks_like_onnx(head):
        return "onnx", _check_onnx(path, root)
    # A text-sized file is read whole (a protocol-0 pickle can hide in a long "vocab.txt").
    protocol = _pickle_protocol(path, size if size <= MAX_TEXT_BYTES else _PICKLE_SNIFF_BYTES)
    if protocol is not None:
        raise _Refused(f"pickle (protocol {protocol})", "pickle-bearing")
    return _identify_text(path, size, root)


def _refuse_known_containers(path: Path, head: bytes) -> None:
    """Name the refused container formats, so the message says more than 'unrecognised'."""
    if head.startswith(b"\x93NUMPY"):
        dtype = "object dtype: carries pickles" if b"'|O'" in _read_head(path, 4096) else "not in the allow-list"
        raise _Refused(f"numpy .npy array ({dtype})", "pickle-bearing" if "object" in dtype else "unrecognised")
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        raise _Refused("HDF5 file (not in the allow-list; Keras HDF5 can carry pickled code)", "unrecognised")
    if head.startswith(b"\x80") and len(head) > 1 and 2 <= head[1] <= 5:
        raise _Refused(f"pickle (protocol {head[1]})", "pickle-bearing")


def _identify_text(path: Path, size: int, root: Path) -> tuple[str, dict[str, str]]:
    if size > max(MAX_JSON_BYTES, MAX_SENTENCEPIECE_BYTES):
        raise _Refused(f"unrecognised binary format ({size} bytes)", "unrecognised")
    data = path.read_bytes()
    text = _utf8_text(data)
    if text is None:
        _check_sentencepiece(data)
        return "sentencepiece-model", {}
    if size > MAX_JSON_BYTES:
        raise _Refused(f"text file of {size} bytes (over {MAX_JSON_BYTES})", "unrecognised")
    if text.lstrip("\ufeff \t\r\n").startswith("<"):
        return "openvino-ir", _check_openvino(path, data, root)
    try:
        json.loads(text)
        return "json", {}
    except ValueError:
        pass
    if size > MAX_TEXT_BYTES:
        raise _Refused(f"text file of {size} bytes (over {MAX_TEXT_BYTES})", "unrecognised")
    return "text", {}


def _utf8_text(data: bytes) -> str | None:
    """data decoded, or None when it is binary: not UTF-8, or holding NUL bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


# --- pickles and zips -------------------------------------------------------------------------


def _pickle_opcodes_proto(stream: BinaryIO) -> int | None:
    """Highest protocol among the opcodes when stream starts with a complete pickle, else None.

    Protocol 0 pickles are plain ASCII, so this is what tells a pickle from a text file.
    """
    highest = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(stream):
            highest = max(highest, opcode.proto)
            if opcode.name == "STOP":
                return highest
    except Exception:  # noqa: BLE001 - genops raises ValueError, struct.error, UnicodeDecodeError, ...
        return None
    return None


def _pickle_protocol(path: Path, limit: int) -> int | None:
    """The protocol of a pickle at the start of path (its PROTO byte, or its opcodes'), or None."""
    with open(path, "rb") as f:
        sample = f.read(limit)
    highest = _pickle_opcodes_proto(io.BytesIO(sample))
    if highest is None:
        return None
    return sample[1] if sample[:1] == b"\x80" else highest


def _claimed_file(path: Path, fmt: str) -> _Scanned:
    """Weights claimed by a model are raw bytes, but a pickle may still not hide behind the claim."""
    protocol = _pickle_protocol(path, _PICKLE_SNIFF_BYTES)
    if protocol is None:
        return _Scanned(format=fmt)
    return _Scanned(format=fmt, findings=[_Refused(f"pickle (protocol {protocol}) claimed as {fmt}", "pickle-bearing")])


def _container_findings(path: Path) -> list[_Refused]:
    """A zip end record anywhere makes a file a zip (or a polyglot with one appended): refuse it."""
    if not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return [_Refused("zip end-of-central-directory record (zip or polyglot)", "pickle-bearing")]
    pickles = [n for n in names if n.endswith((".pkl", ".pickle")) or PurePosixPath(n).name == "data.pkl"]
    if pickles:
        return [_Refused(f"zip archive containing pickles ({', '.join(pickles[:5])})", "pickle-bearing")]
    return [_Refused(f"zip archive ({len(names)} member(s); zips are not in the allow-list)", "pickle-bearing")]


def _picklescan_findings(path: Path) -> list[_Refused]:
    """picklescan's second opinion: any dangerous or suspicious global, or a scan error, is refused."""
    from picklescan.scanner import SafetyLevel, scan_file_path  # heavy-ish; only when scanning

    # picklescan logs a warning for every file that is not a pickle, i.e. for every allowed model file
    quiet = logging.getLogger("picklescan")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        result = scan_file_path(str(path))
    except Exception as exc:  # noqa: BLE001 - any crash of the second opinion is itself a finding
        return [_Refused(f"picklescan failed: {type(exc).__name__}: {exc}", "pickle-bearing")]
    finally:
        quiet.setLevel(level)
    flagged = sorted(
        f"{g.module}.{g.name} ({g.safety.value})" for g in result.globals if g.safety != SafetyLevel.Innocuous
    )
    findings = []
    if flagged or result.issues_count:
        findings.append(_Refused(f"picklescan: dangerous globals {', '.join(flagged)}", "pickle-bearing"))
    if result.scan_err:
        findings.append(_Refused("picklescan: scan error (partial pickle with globals)", "pickle-bearing"))
    return findings


# --- safetensors ------------------------------------------------------------------------------


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= MAX_SAFETENSORS_HEADER


def _check_safetensors(path: Path, size: int) -> None:
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        raw = f.read(header_len)
    if header_len > size - 8:
        raise _Refused(f"safetensors header of {header_len} bytes runs past the end of the {size}-byte file (truncated)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise _Refused(f"safetensors header is not UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _Refused("safetensors header is not a JSON object")
    data_len = size - 8 - header_len
    ends = [_safetensors_entry_end(name, entry, data_len) for name, entry in header.items() if name != "__metadata__"]
    if max(ends, default=0) != data_len:
        raise _Refused(f"safetensors data section is {data_len} bytes but tensors end at {max(ends, default=0)} (trailing bytes)")


def _safetensors_entry_end(name: str, entry: Any, data_len: int) -> int:
    if not isinstance(entry, dict) or entry.get("dtype") not in RULES["safetensors_dtypes"]:
        raise _Refused(f"safetensors tensor {name!r}: unknown dtype or bad entry")
    begin, end = _pair(entry.get("data_offsets"), name)
    if not 0 <= begin <= end <= data_len:
        raise _Refused(f"safetensors tensor {name!r}: data_offsets {begin}..{end} outside the {data_len}-byte data section")
    item = SAFETENSORS_DTYPE_BYTES.get(entry["dtype"])
    shape = entry.get("shape")
    if item and isinstance(shape, list) and end - begin != item * _product(shape):
        raise _Refused(f"safetensors tensor {name!r}: {end - begin} bytes do not match shape {shape}")
    return end


def _pair(value: Any, name: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)):
        raise _Refused(f"safetensors tensor {name!r}: data_offsets is not two integers")
    return value[0], value[1]


def _product(values: list[Any]) -> int:
    total = 1
    for value in values:
        if type(value) is not int or value < 0:
            raise _Refused(f"bad dimension {value!r}")
        total *= value
    return total


# --- ONNX -------------------------------------------------------------------------------------


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto field 1 (ir_version, varint) is serialized first; without this cheap gate protobuf
    # would happily "parse" many random byte strings, slowly.
    return len(head) >= 2 and head[0] == 0x08 and 1 <= head[1] <= 64


def _check_onnx(path: Path, root: Path) -> dict[str, str]:
    import onnx  # heavy; only when a file looks like ONNX

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise _Refused(f"ONNX protobuf does not parse ({type(exc).__name__})") from None
    if model.ir_version <= 0 or not model.graph.node:
        raise _Refused("ONNX model without ir_version or graph nodes")
    claims = {_external_location(t, path, root): "onnx-external-data" for t in _external_tensors(model)}
    try:
        onnx.checker.check_model(str(path))  # by path: resolves external data next to the model
    except Exception as exc:  # noqa: BLE001 - ValidationError, or protobuf errors on a corrupt file
        raise _Refused(f"ONNX checker: {str(exc).splitlines()[0][:200]}") from None
    return claims


def _external_tensors(model: Any) -> list[Any]:
    """Every tensor stored outside the model file: initializers, sparse ones, attribute tensors."""
    from onnx import TensorProto

    tensors: list[Any] = []
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        tensors += list(graph.initializer)
        tensors += [t for s in graph.sparse_initializer for t in (s.values, s.indices)]
        for node in graph.node:
            for attr in node.attribute:
                tensors += ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
                graphs += ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
    return [t for t in tensors if t.data_location == TensorProto.EXTERNAL]


def _external_location(tensor: Any, model_path: Path, root: Path) -> str:
    """Check one external-data reference and return the referenced file's relative path."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    parts = PurePosixPath(location.replace("\\", "/")).parts
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")) or ".." in parts or ":" in location:
        raise _Refused(f"ONNX tensor {tensor.name!r}: external data location {location!r} is not a plain relative path", "unsafe-path")
    target = os.path.realpath(model_path.parent / location)
    if not _inside(root, target):
        raise _Refused(f"ONNX tensor {tensor.name!r}: external data {location!r} resolves outside the folder", "unsafe-path")
    if not os.path.isfile(target):
        raise _Refused(f"ONNX tensor {tensor.name!r}: external data file {location!r} is missing")
    _check_extent(f"ONNX tensor {tensor.name!r} in {location!r}", info, os.path.getsize(target))
    return PurePosixPath(Path(target).relative_to(root)).as_posix()


def _check_extent(what: str, info: dict[str, str], size: int) -> None:
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", size - offset))
    except ValueError:
        raise _Refused(f"{what}: offset/length are not integers") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise _Refused(f"{what}: bytes {offset}..{offset + length} beyond the file's {size} bytes")


# --- OpenVINO IR ------------------------------------------------------------------------------


def _check_openvino(path: Path, data: bytes, root: Path) -> dict[str, str]:
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        # forbid_dtd: an IR never has a DOCTYPE, and entities are how XML bombs and XXE work.
        net = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, SyntaxError) as exc:
        raise _Refused(f"XML refused: {type(exc).__name__}: {exc}") from None
    if net.tag != "net":
        raise _Refused(f"XML whose root is <{net.tag}>, not an OpenVINO IR <net>", "unrecognised")
    extents = [_const_extent(layer) for layer in net.iter("layer") if layer.get("type") == "Const"]
    if not extents:
        return {}
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise _Refused(f"OpenVINO IR has Const layers but no weights file {weights.name}")
    _check_openvino_weights(weights.name, extents, weights.stat().st_size)
    return {PurePosixPath(weights.relative_to(root)).as_posix(): "openvino-ir-weights"}


def _const_extent(layer: Any) -> tuple[int, int]:
    data = layer.find("data")
    try:
        return int(data.get("offset")), int(data.get("size"))
    except (AttributeError, TypeError, ValueError):
        raise _Refused(f"OpenVINO Const layer {layer.get('name')!r} without integer offset/size") from None


def _check_openvino_weights(name: str, extents: list[tuple[int, int]], size: int) -> None:
    for offset, length in extents:
        if offset < 0 or length < 0 or offset + length > size:
            raise _Refused(f"OpenVINO Const bytes {offset}..{offset + length} beyond {name}'s {size} bytes")
    end = max(offset + length for offset, length in extents)
    if end != size:
        raise _Refused(f"{name} is {size} bytes but Const data ends at {end} (trailing bytes)")


# --- SentencePiece ----------------------------------------------------------------------------


def _check_sentencepiece(data: bytes) -> None:
    """Accept a SentencePiece ``ModelProto`` (a ``tokenizer.model``) whose every byte is accounted for.

    Protobuf parsing runs no code, but it keeps unknown fields (and would re-emit them), so a payload can
    ride in one. With unknown fields dropped, the model must re-serialize to exactly the file's bytes: that
    refuses unknown fields at any depth, appended bytes that parse, and repeated or reordered fields.
    """
    model = _parse_sentencepiece(data)
    model.DiscardUnknownFields()
    if model.SerializeToString() != data:
        raise _Refused(
            "SentencePiece model whose bytes are not its re-serialization (unknown fields, appended bytes "
            "or a non-canonical encoding)"
        )
    # Both are serialized after the pieces, so a file cut at a piece boundary parses without them.
    missing = [name for name in ("trainer_spec", "normalizer_spec") if not model.HasField(name)]
    if missing:
        raise _Refused(f"SentencePiece model without {' or '.join(missing)} (truncated)")
    empty = [index for index, piece in enumerate(model.pieces) if not piece.piece]
    if empty:
        raise _Refused(f"SentencePiece model with {len(empty)} empty piece(s), the first at index {empty[0]}")
    spec = model.trainer_spec
    model_type = {number: name for name, number in type(spec).ModelType.items()}.get(spec.model_type)
    if model_type not in SENTENCEPIECE_MODEL_TYPES:
        raise _Refused(f"SentencePiece model_type {model_type or spec.model_type} (allowed: {list(SENTENCEPIECE_MODEL_TYPES)})")


def _parse_sentencepiece(data: bytes) -> Any:
    """The ModelProto in data; refused as unrecognised when data is not one with pieces."""
    not_one = "unrecognised binary format (not UTF-8 text, nor a SentencePiece model: {})"
    try:
        from google.protobuf.message import DecodeError
        from sentencepiece.sentencepiece_model_pb2 import ModelProto
    except Exception as exc:  # noqa: BLE001 - ImportError, or protobuf's VersionError when it is too old
        raise _Refused(not_one.format(f"cannot check without sentencepiece and protobuf: {exc}"), "unrecognised") from None
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError:
        raise _Refused(not_one.format("protobuf does not parse; truncated, corrupt or another format"), "unrecognised") from None
    if not model.pieces:
        raise _Refused(not_one.format("protobuf without pieces"), "unrecognised")
    return model


# --- GGUF -------------------------------------------------------------------------------------


class _GGUFReader:
    """A bounds-checked cursor over a GGUF header; every read past the end is a truncation."""

    _SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.size = f, size

    def take(self, n: int) -> bytes:
        if n < 0 or self.f.tell() + n > self.size:
            raise _Refused("GGUF header truncated (a field runs past the end of the file)")
        return self.f.read(n)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        try:
            return self.take(self.unpack("<Q")).decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused("GGUF string is not UTF-8") from None

    def value(self, value_type: int) -> Any:
        if value_type in self._SCALARS:
            return self.unpack(self._SCALARS[value_type])
        if value_type == 8:
            return self.string()
        if value_type == 9:
            item_type, count = self.unpack("<I"), self.unpack("<Q")
            if item_type == 9:
                raise _Refused("GGUF nested arrays are not supported")
            return [self.value(item_type) for _ in range(count)] if count < 4096 else self._skip_array(item_type, count)
        raise _Refused(f"GGUF metadata value of unknown type {value_type}")

    def _skip_array(self, item_type: int, count: int) -> None:
        # Token lists hold 30k+ strings; walk them without keeping them (bounds still checked).
        if item_type in self._SCALARS:
            self.take(struct.calcsize(self._SCALARS[item_type]) * count)
            return
        for _ in range(count):
            self.value(item_type)


def _check_gguf(path: Path, size: int) -> None:
    with open(path, "rb") as f:
        reader = _GGUFReader(f, size)
        reader.take(4)
        version = reader.unpack("<I")
        if version not in GGUF_VERSIONS:
            raise _Refused(f"GGUF version {version} (allowed: {list(GGUF_VERSIONS)})")
        n_tensors, n_kv = reader.unpack("<Q"), reader.unpack("<Q")
        alignment = _gguf_alignment(reader, n_kv)
        tensors = [_gguf_tensor(reader) for _ in range(n_tensors)]
        data_start = -(-f.tell() // alignment) * alignment
    _check_gguf_data(path, tensors, data_start, alignment, size)


def _gguf_alignment(reader: _GGUFReader, n_kv: int) -> int:
    alignment = GGUF_DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key, value = reader.string(), reader.value(reader.unpack("<I"))
        if key == "general.alignment":
            alignment = value
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise _Refused(f"GGUF general.alignment {alignment!r} is not a power of two")
    return alignment


def _gguf_tensor(reader: _GGUFReader) -> tuple[str, list[int], int, int]:
    name, n_dims = reader.string(), reader.unpack("<I")
    if n_dims > 8:
        raise _Refused(f"GGUF tensor {name!r} has {n_dims} dimensions")
    dims = [reader.unpack("<Q") for _ in range(n_dims)]
    return name, dims, reader.unpack("<I"), reader.unpack("<Q")


def _gguf_tensor_bytes(name: str, dims: list[int], ggml_type: int) -> int | None:
    if ggml_type not in GGML_BLOCKS:
        return None
    block_elements, block_bytes = GGML_BLOCKS[ggml_type]
    elements = _product(dims)
    if elements % block_elements:
        raise _Refused(f"GGUF tensor {name!r}: {elements} elements is not a whole number of type-{ggml_type} blocks")
    return elements // block_elements * block_bytes


def _check_gguf_data(path: Path, tensors: list, data_start: int, alignment: int, size: int) -> None:
    data_size = size - data_start
    end, sizes_known = 0, True
    for name, dims, ggml_type, offset in tensors:
        length = _gguf_tensor_bytes(name, dims, ggml_type)
        if offset >= data_size or (length is not None and offset + length > data_size):
            raise _Refused(f"GGUF tensor {name!r} at data offset {offset} runs past the end of the file")
        end = max(end, offset + (length or 0))
        sizes_known = sizes_known and length is not None
    if not sizes_known:
        return  # a tensor of an unknown ggml type has an unknown end: bounds were all we could check
    # Only alignment zero padding may follow the last tensor: anything more is an appended payload.
    padding = size - (data_start + end)
    if padding >= alignment or _read_tail(path, padding).strip(b"\x00"):
        raise _Refused(f"GGUF has {padding} bytes after its last tensor (only alignment padding is allowed)")


def _read_tail(path: Path, n: int) -> bytes:
    if n <= 0:
        return b""
    with open(path, "rb") as f:
        f.seek(-n, os.SEEK_END)
        return f.read()
