"""The model-kind interface: what differs between a sentence encoder and a language model, behind one name.

A ``Task`` owns a kind's specifics: the params.yaml section and pipeline stages that carry it, the workloads it is
timed on (scenario keys), the interface its runtime backends implement, the fidelity floor type the conformance
suite holds them to, its FLOP/byte model for the roofline, the validator accuracy-aware optimizers call, and its
fairness checks. Its quality and fidelity metrics live beside it (``tasks/<kind>/metrics.py``). A runtime declares, per kind
it serves, a ``Support``: its backend class, the precisions it makes and a floor per precision. A new kind is a
new folder under ``edgekit/tasks/`` with a ``Task`` subclass, listed here or in the ``edgekit.tasks``
entry-point group.

Example:
    >>> get_task("generation").runtimes()
    ['llamacpp', 'mlx', 'olive', 'onnxruntime', 'openvino', 'pytorch']
    >>> get_runtime("llamacpp").support("generation").precisions
    ('f32', 'f16', 'q8_0', 'q5_k_m', 'q4_k_m')
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar

from edgekit.errors import UnknownNameError

ENTRY_POINT_GROUP = "edgekit.tasks"
_BUILTINS = {
    "embedding": "edgekit.tasks.embedding.task:EmbeddingTask",
    "generation": "edgekit.tasks.generation.task:GenerationTask",
}


@dataclasses.dataclass(frozen=True)
class Support:
    """How a runtime serves one model kind.

    Attributes:
        backend: ``module:Class`` of the runtime's backend for the kind (a subclass of the task's ``interface``).
        precisions: the ``precision`` values it makes, the first one the default.
        floors: per precision, the least fidelity the conformance suite accepts (the task's ``floor`` type).
        conformance_options: per precision, extra ``(options, floor)`` pairs the conformance suite also runs.
    """

    backend: str
    precisions: tuple[str, ...]
    floors: Mapping[str, Any]
    conformance_options: Mapping[str, tuple[tuple[dict[str, Any], Any], ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # A runtime declared without a floor for a precision would make variants the suite never judges.
        if not self.precisions or set(self.floors) != set(self.precisions):
            raise ValueError(f"Support({self.backend}): floors must name exactly the precisions "
                             f"{list(self.precisions)}, got {sorted(self.floors)}")
        if ":" not in self.backend:
            raise ValueError(f"Support.backend must be 'module:Class', got {self.backend!r}")


class Task(ABC):
    """One model kind.

    Attributes:
        name: the kind's name (``embedding``, ``generation``), the key runtimes declare ``Support`` under.
        summary: one line for ``edgekit doctor`` and the docs.
        params_section: the params.yaml section that describes the kind's model and variants.
        stages: the DVC stages that make, time, score and select its variants, in pipeline order.
        interface: the backend interface (an abstract class) its runtimes implement.
        floor: the dataclass a ``Support.floors`` entry must be.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    params_section: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]
    interface: ClassVar[type]
    floor: ClassVar[type]

    @abstractmethod
    def workloads(self, params: Any) -> list[str]:
        """The scenario keys the kind's benchmark stage times, from the pipeline's ``Params``."""

    @abstractmethod
    def roofline(self, workload: str, model: dict[str, Any]) -> dict[str, float | None]:
        """The FLOP/byte model: the ``flops`` and ``bytes`` one call of ``workload`` costs a variant, from what is
        known of it (``model``: its config.json as ``config``, and what the kind's model needs besides)."""

    def fairness_checks(self) -> dict[str, type]:
        """The fairness checks defined for the kind, by name (none: the kind is not checked for fairness)."""
        return {}

    def validator(self, context: Any) -> Any:
        """What an accuracy-aware optimizer scores candidates with, or None where the kind has none."""
        return None

    def runtimes(self) -> list[str]:
        """The runtimes that declare ``Support`` for this kind (imports their light configs only)."""
        from edgekit.runtimes import runtimes

        return sorted(name for name, config in runtimes().items() if self.name in config.kinds)

    def check_floor(self, runtime: str, support: Support) -> None:
        """Raise ``TypeError`` when a runtime's floors are not this kind's floor type."""
        wrong = {p: type(f).__name__ for p, f in support.floors.items() if not isinstance(f, self.floor)}
        if wrong:
            raise TypeError(f"the {runtime} runtime's {self.name} floors must be {self.floor.__name__}, got {wrong}")

    def check_backend(self, runtime: str, backend: type) -> type:
        """``backend`` if it implements this kind's interface; a plug-in that does not is named."""
        if not (isinstance(backend, type) and issubclass(backend, self.interface)):
            raise TypeError(f"the {runtime} runtime's {self.name} backend {backend!r} does not subclass "
                            f"{self.interface.__module__}.{self.interface.__qualname__}")
        return backend


def _plugins() -> dict[str, importlib.metadata.EntryPoint]:
    return {e.name: e for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if e.name not in _BUILTINS}


@cache
def task_names() -> list[str]:
    """The known kinds' names, without importing any of them."""
    return sorted({*_BUILTINS, *_plugins()})


def get_task(name: str, field: str = "kind") -> Task:
    """The task of kind ``name``; an unknown name lists the known ones."""
    if name not in task_names():
        raise UnknownNameError(field, name, task_names())
    return _task(name)


@cache
def _task(name: str) -> Task:
    if name in _BUILTINS:
        module_name, _, attr = _BUILTINS[name].partition(":")
        task_class = getattr(importlib.import_module(module_name), attr)
    else:
        task_class = _plugins()[name].load()
    if not (isinstance(task_class, type) and issubclass(task_class, Task)):
        raise TypeError(f"the {ENTRY_POINT_GROUP} entry point {name!r} must name a Task subclass, got {task_class!r}")
    if task_class.name != name:
        raise TypeError(f"the {ENTRY_POINT_GROUP} entry point {name!r} names a task called {task_class.name!r}")
    return task_class()


def clear_cache() -> None:
    """Forget the registry (a test that installs a plug-in kind calls this)."""
    task_names.cache_clear()
    _task.cache_clear()
