"""The runtime registry: built-ins first, then the ``edgekit.runtimes`` entry-point group.

Example:
    >>> sorted(runtime_names())
    ['onnxruntime', 'pytorch']
    >>> get_runtime("onnxruntime").support("embedding").precisions
    ('fp32', 'int8')
"""

from __future__ import annotations

import importlib
import importlib.metadata
from functools import cache

from edgekit.errors import UnknownNameError
from edgekit.runtimes.base import Options, RuntimeConfig

__all__ = ["Options", "RuntimeConfig", "clear_cache", "get_runtime", "runtime_names", "runtimes"]

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


def _plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points of the ``edgekit.runtimes`` group not shadowing a built-in (listed, not imported)."""
    return {e.name: e for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if e.name not in _BUILTINS}


@cache
def runtimes() -> dict[str, type[RuntimeConfig]]:
    """Every known runtime config by name (built-ins cannot be shadowed by plug-ins); imports every config."""
    return {name: get_runtime(name) for name in runtime_names()}


@cache
def runtime_names() -> list[str]:
    """The known runtimes' names, without importing any of them."""
    return sorted({*_BUILTINS, *_plugins()})


def get_runtime(name: str, field: str = "runtime") -> type[RuntimeConfig]:
    """The config of runtime ``name``, importing that runtime's config module only; an unknown name lists the known ones."""
    if name not in runtime_names():
        raise UnknownNameError(field, name, runtime_names())
    return _config(name)


@cache
def _config(name: str) -> type[RuntimeConfig]:
    return _load(_BUILTINS[name]) if name in _BUILTINS else _plugins()[name].load()


def clear_cache() -> None:
    """Forget the registry (a test that installs a plug-in runtime calls this)."""
    for cached in (runtimes, runtime_names, _config):
        cached.cache_clear()
