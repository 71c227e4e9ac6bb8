"""Optional dependencies: probed by import name, reported by distribution name.

Probing never imports the package (``find_spec`` only), so ``edgekit doctor`` stays fast and a
broken runtime cannot take the CLI down with it.

Example:
    >>> probe(ONNXRUNTIME).version
    '1.32.0'
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

from edgekit.errors import MissingDependencyError, install_command


@dataclass(frozen=True)
class Dependency:
    """A package edgekit can use when it is installed.

    Attributes:
        import_name: the top-level module, as ``import`` spells it.
        distribution: the name pip knows it by (its version comes from here).
        extra: the edgekit extra that installs it.
    """

    import_name: str
    distribution: str
    extra: str


@dataclass(frozen=True)
class Probe:
    """What a probe found: ``version`` is None when the package is missing."""

    dependency: Dependency
    version: str | None

    @property
    def found(self) -> bool:
        return self.version is not None

    @property
    def install(self) -> str:
        return install_command(self.dependency.extra)


TORCH = Dependency("torch", "torch", "pytorch")
TRANSFORMERS = Dependency("transformers", "transformers", "pytorch")
TOKENIZERS = Dependency("tokenizers", "tokenizers", "pytorch")
SENTENCEPIECE = Dependency("sentencepiece", "sentencepiece", "pytorch")
ONNXRUNTIME = Dependency("onnxruntime", "onnxruntime", "onnxruntime")
ONNX = Dependency("onnx", "onnx", "onnxruntime")
OPTIMUM_ONNX = Dependency("optimum.exporters.onnx", "optimum-onnx", "onnxruntime")
OPENVINO = Dependency("openvino", "openvino", "openvino")
NNCF = Dependency("nncf", "nncf", "openvino")
LLAMA_CPP = Dependency("llama_cpp", "llama-cpp-python", "llamacpp")
MLX = Dependency("mlx", "mlx", "mlx")
MLX_LM = Dependency("mlx_lm", "mlx-lm", "mlx")
OLIVE = Dependency("olive", "olive-ai", "olive")
PAPERMILL = Dependency("papermill", "papermill", "notebook")
DVC = Dependency("dvc", "dvc", "pipeline")


def probe(dependency: Dependency) -> Probe:
    """Look for ``dependency`` without importing it."""
    try:
        spec = importlib.util.find_spec(dependency.import_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return Probe(dependency, None)
    try:
        version = importlib.metadata.version(dependency.distribution)
    except importlib.metadata.PackageNotFoundError:
        # Importable but not installed as that distribution (a source checkout): still usable.
        version = "unknown"
    return Probe(dependency, version)


def require(*dependencies: Dependency) -> None:
    """Raise ``MissingDependencyError`` naming the first missing dependency and its extra."""
    for dependency in dependencies:
        if not probe(dependency).found:
            raise MissingDependencyError(dependency.distribution, dependency.extra)
