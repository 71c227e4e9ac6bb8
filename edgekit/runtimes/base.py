"""The runtime plug-in interface: a light config and a heavy backend per runtime.

A ``RuntimeConfig`` subclass imports only the standard library and edgekit, so params validation,
``doctor`` and the registry work without the runtime installed. Its backend module is imported only
when a variant is optimized, loaded or run.

A runtime serves one or more model kinds (``edgekit.tasks``): ``kinds`` maps each to its ``Support`` (backend class,
precisions, conformance floors), and ``backend(kind)`` imports that backend.

Example:
    >>> config = get_runtime("onnxruntime")
    >>> sorted(config.kinds)
    ['embedding', 'generation']
    >>> backend_class = config.backend("embedding")  # imports onnxruntime
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, ClassVar

from edgekit.deps import Dependency, probe, require
from edgekit.errors import ConfigError
from edgekit.fsutil import read_json
from edgekit.tasks.base import Support, get_task


@dataclasses.dataclass(frozen=True)
class Options:
    """Base for a runtime's variant options; subclasses add typed fields with defaults."""

    @classmethod
    def parse(cls, raw: dict[str, Any] | None, field: str) -> Options:
        """Build options from params, naming any unknown key or bad type."""
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(field, raw, "a mapping of option names to values, e.g. {per_channel: true}")
        raw = dict(raw or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in known:
                expected = ", ".join(sorted(known)) or "no options for this runtime"
                raise ConfigError(f"{field}.{key}", raw[key], f"one of: {expected}")
        for key, value in raw.items():
            kind = known[key].type
            allowed = {"bool": bool, "int": int, "float": (int, float), "str": str}.get(str(kind))
            if allowed and (not isinstance(value, allowed) or (kind != "bool" and isinstance(value, bool))):
                raise ConfigError(f"{field}.{key}", value, f"a value of type {kind}")
        options = cls(**raw)
        options.validate(field)
        return options

    def validate(self, field: str) -> None:
        """Check cross-field constraints; raise ``ConfigError``."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RuntimeConfig:
    """What edgekit knows about a runtime without importing it.

    Attributes:
        name: the ``runtime`` value in params.yaml.
        extra: the edgekit extra that installs it.
        dependencies: packages the backend needs to load and run a variant.
        optimize_dependencies: further packages needed only to make a variant (exporters).
        options: the dataclass of its per-variant options.
        kinds: per model kind it serves (``embedding``, ``generation``), its backend, precisions and the
            fidelity floor per precision the conformance suite holds it to.
        runs_on: other runtimes whose code its variants run (Olive's models run on ONNX Runtime); their
            folders are part of what its pipeline stages import.
    """

    name: ClassVar[str]
    extra: ClassVar[str]
    dependencies: ClassVar[tuple[Dependency, ...]]
    optimize_dependencies: ClassVar[tuple[Dependency, ...]] = ()
    options: ClassVar[type[Options]] = Options
    kinds: ClassVar[dict[str, Support]] = {}
    runs_on: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for kind, support in cls.kinds.items():  # a plug-in's wrong declaration fails where it is written
            get_task(kind, f"{cls.__name__}.kinds").check_floor(getattr(cls, "name", cls.__name__), support)

    @classmethod
    def support(cls, kind: str, field: str = "runtime") -> Support:
        """How this runtime serves ``kind``.

        Raises:
            UnknownNameError: ``kind`` is no known model kind.
            ConfigError: this runtime has no backend for it (the error lists the runtimes that have one).
        """
        task = get_task(kind)
        if kind not in cls.kinds:
            serving = ", ".join(task.runtimes()) or "none is registered"
            raise ConfigError(field, cls.name, f"a runtime that serves the {kind} kind: {serving}")
        return cls.kinds[kind]

    @classmethod
    def devices(cls) -> list[str]:
        """Devices this runtime can run on here (may import the runtime; only ``doctor`` asks)."""
        return ["CPU"]

    @classmethod
    def evaluate_processes(cls, options: Options, threads: int) -> int:
        """Processes the ``evaluate`` stage splits a variant's batches over: 1, since a runtime uses ``threads``
        itself; a runtime that computes on one thread whatever ``threads`` says returns ``threads``."""
        return 1

    @classmethod
    def missing(cls, for_optimize: bool = True) -> list[Dependency]:
        """The dependencies that are not installed."""
        needed = cls.dependencies + (cls.optimize_dependencies if for_optimize else ())
        return [dep for dep in needed if not probe(dep).found]

    @classmethod
    def backend(cls, kind: str, for_optimize: bool = False) -> type:
        """Import and return this runtime's backend class for ``kind``; raise if the runtime is missing, or if the
        class does not implement the kind's interface (``Task.interface``)."""
        support = cls.support(kind)
        require(*cls.dependencies, *(cls.optimize_dependencies if for_optimize else ()))
        module_name, _, class_name = support.backend.partition(":")
        return get_task(kind).check_backend(cls.name, getattr(importlib.import_module(module_name), class_name))


def model_type(folder: Path) -> str:
    """``model_type`` of ``folder/config.json`` ('' when absent)."""
    return str(read_json(Path(folder) / "config.json").get("model_type", ""))
