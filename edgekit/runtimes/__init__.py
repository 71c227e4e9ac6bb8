"""The runtime registry: built-ins first, then the ``edgekit.runtimes`` entry-point group.

Example:
    >>> sorted(runtime_names())
    ['onnxruntime', 'pytorch']
    >>> get_runtime("onnxruntime").precisions
    ('fp32', 'int8')
"""

from __future__ import annotations

import importlib
import importlib.metadata
from functools import cache

from edgekit.errors import UnknownNameError
from edgekit.runtimes.base import Backend, Options, RuntimeConfig

__all__ = ["Backend", "Options", "RuntimeConfig", "get_runtime", "runtime_names", "runtimes"]

_BUILTINS = {
    "pytorch": "edgekit.runtimes.pytorch.config:PyTorchConfig",
    "onnxruntime": "edgekit.runtimes.onnxruntime.config:OnnxRuntimeConfig",
    "openvino": "edgekit.runtimes.openvino.config:OpenVinoConfig",
    "llamacpp": "edgekit.runtimes.llamacpp.config:LlamaCppConfig",
    "mlx": "edgekit.runtimes.mlx.config:MlxConfig",
    "olive": "edgekit.runtimes.olive.config:OliveConfig",
}
ENTRY_POINT_GROUP = "edgekit.runtimes"


def _load(path: str) -> type[RuntimeConfig]:
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@cache
def runtimes() -> dict[str, type[RuntimeConfig]]:
    """Every known runtime config by name (built-ins cannot be shadowed by plug-ins)."""
    table = {name: _load(path) for name, path in _BUILTINS.items()}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        table.setdefault(entry.name, entry.load())
    return table


def runtime_names() -> list[str]:
    return sorted(runtimes())


def get_runtime(name: str, field: str = "runtime") -> type[RuntimeConfig]:
    """The config of runtime ``name``; an unknown name lists the known ones."""
    table = runtimes()
    if name not in table:
        raise UnknownNameError(field, name, list(table))
    return table[name]
