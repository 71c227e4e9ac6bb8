"""Optional dependencies: probed by import name, reported by distribution name, never imported."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from functools import cache

import pytest

from conftest import REPO
from edgekit import deps
from edgekit.deps import Dependency, probe, require
from edgekit.errors import MissingDependencyError

MADE_UP = Dependency("edgekit_no_such_module_4f2a", "edgekit-no-such-dist", "extra")
ALL = {name: value for name, value in vars(deps).items() if isinstance(value, Dependency)}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_probe_of_a_missing_package():
    found = probe(MADE_UP)
    assert found.found is False
    assert found.version is None
    assert 'pip install -c requirements/lock.txt -e ".[extra]"' in found.install


def test_probe_of_a_missing_submodule_of_a_missing_package():
    found = probe(Dependency("edgekit_no_such_module_4f2a.sub", "edgekit-no-such-dist", "extra"))
    assert not found.found


def test_probe_of_an_installed_package():
    found = probe(Dependency("yaml", "PyYAML", "core"))
    assert found.found
    assert found.version == importlib.metadata.version("PyYAML")


def test_require_names_the_distribution_and_the_install_command():
    with pytest.raises(MissingDependencyError, match=r"edgekit-no-such-dist is not installed") as info:
        require(Dependency("yaml", "PyYAML", "core"), MADE_UP)
    assert 'pip install -c requirements/lock.txt -e ".[extra]"' in str(info.value)
    assert info.value.distribution == "edgekit-no-such-dist"
    assert info.value.extra == "extra"


def test_require_passes_when_everything_is_installed():
    require(Dependency("yaml", "PyYAML", "core"), Dependency("numpy", "numpy", "core"))


def test_every_runtime_dependency_is_declared():
    expected = {
        "TORCH",
        "TRANSFORMERS",
        "ONNXRUNTIME",
        "ONNX",
        "OPTIMUM_ONNX",
        "OPENVINO",
        "NNCF",
        "LLAMA_CPP",
        "MLX",
        "OLIVE",
        "PAPERMILL",
        "DVC",
    }
    assert expected <= set(ALL)


@cache
def _providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


@pytest.mark.parametrize("name", sorted(ALL))
def test_probe_agrees_with_the_installed_distribution(name):
    dependency = ALL[name]
    found = probe(dependency)
    try:
        installed = importlib.metadata.version(dependency.distribution)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    importable = _importable(dependency.import_name)
    assert found.found == importable, f"{dependency}: probe says found={found.found}, find_spec says {importable}"
    if installed is not None:
        # An installed distribution must be found and report its real version (not None/'unknown'):
        # this fails when the import name does not match the distribution.
        assert found.version == installed
        top = dependency.import_name.split(".")[0]
        providers = {_normalize(d) for d in _providers().get(top, [])}
        assert _normalize(dependency.distribution) in providers, f"{dependency.distribution} does not provide {top!r}"
    elif importable:
        assert found.version == "unknown"
    else:
        assert found.version is None
        assert f'".[{dependency.extra}]"' in found.install


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


HEAVY = {"torch", "onnxruntime", "transformers", "openvino", "nncf", "llama_cpp", "gguf", "mlx", "olive"}


def test_importing_the_light_modules_loads_no_runtime():
    modules = _modules_after("import edgekit.params, edgekit.runtimes, edgekit.cli")
    assert "edgekit" in modules  # the probe itself works
    assert not modules & HEAVY


def test_every_runtime_config_and_its_options_load_without_its_runtime():
    """params validation, `edgekit check` and the registry never pay for (or need) a runtime."""
    modules = _modules_after(
        "from edgekit.runtimes import runtimes\n"
        "for config in runtimes().values():\n"
        "    config.options.parse({}, 'options')\n"
        "    assert config.kinds, config.name\n"
        "    for kind, support in config.kinds.items():\n"
        "        assert set(support.floors) == set(support.precisions), (config.name, kind)\n"
    )
    assert not modules & HEAVY


def test_validating_params_and_doctor_load_no_runtime():
    modules = _modules_after(
        "from pathlib import Path\n"
        "from edgekit.params import load_params\n"
        "from edgekit.fingerprint import fingerprint\n"
        "load_params('params.yaml')\n"
        "fingerprint(Path('.'))"
    )
    assert "edgekit" in modules
    assert not modules & HEAVY
