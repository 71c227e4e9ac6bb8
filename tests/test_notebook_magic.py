"""``%load_ext edgekit`` in a real IPython shell: the ``%edgekit`` magic runs registry verbs in the kernel
(same parser, API and events as the CLI) and other verbs in a child process, and never raises."""

from __future__ import annotations

import json

import pytest
from IPython.testing.globalipapp import start_ipython
from registry_project import MODEL as M

from edgekit import registry as reg


@pytest.fixture(scope="module")
def shell():
    ip = start_ipython()
    ip.run_line_magic("load_ext", "edgekit")
    return ip


def test_load_ext_registers_the_magic(shell):
    assert "edgekit" in shell.magics_manager.magics["line"]


def test_registry_verbs_run_in_the_kernel_and_leave_the_cli_s_events(shell, registry_project, capsys, monkeypatch):
    monkeypatch.setattr("edgekit.registry.record.dvc_status", lambda folder: {})  # `dvc status` (2 s) is tested elsewhere
    shell.run_line_magic("edgekit", f"registry register --variant ort-int8 -C {registry_project} --json")
    registered = json.loads(capsys.readouterr().out)
    assert registered["version"] == "v1.0.0"

    shell.run_line_magic("edgekit", f"registry promote {M}@v1.0.0 -C {registry_project} --json")
    assert json.loads(capsys.readouterr().out)["stage"] == "staging"
    assert [e["type"] for e in reg.history(registry_project)] == ["register", "promote"]

    shell.run_line_magic("edgekit", f"registry show -C {registry_project} --json")
    assert json.loads(capsys.readouterr().out) == reg.show(registry_project)

    history = shell.run_line_magic("edgekit", f"registry history {M}@v1.0.0 -C {registry_project}")  # a rich display
    assert [row[:4] for row in history._rows()] == [[1, "register", f"{M}@v1.0.0", None], [2, "promote", f"{M}@v1.0.0", "staging"]]
    assert history.data == reg.history(registry_project, M, "v1.0.0") and "<td>promote</td>" in history._repr_html_()
    shown = shell.run_line_magic("edgekit", f"registry show -C {registry_project}")  # a rich display
    assert shown.data == reg.show(registry_project) and "<td>v1.0.0</td><td>ort-int8</td><td>staging</td>" in shown._repr_html_()
    described = shell.run_line_magic("edgekit", f"registry show {M}@v1.0.0 -C {registry_project}")
    assert described.data == reg.describe(registry_project, f"{M}@v1.0.0")


def test_a_refusal_is_one_error_line_and_the_notebook_goes_on(shell, registry_project, capsys):
    shell.run_line_magic("edgekit", f"registry promote nonsense -C {registry_project}")
    err = capsys.readouterr().err
    assert err.startswith("error: 'nonsense' is not a version reference") and "(edgekit exited with 1)" in err

    shell.run_line_magic("edgekit", "registry promote")  # a usage error: argparse's message, exit 2, no SystemExit
    assert "the following arguments are required: ref" in capsys.readouterr().err


def test_other_verbs_stream_from_a_child_process(shell, capsys):
    shell.run_line_magic("edgekit", "--version")
    assert capsys.readouterr().out.strip() == "edgekit 0.1.0"
    shell.run_line_magic("edgekit", "repro --help")
    assert "usage: dvc repro" in capsys.readouterr().out


@pytest.mark.onnxruntime
@pytest.mark.slow
def test_bench_runs_in_the_kernel_with_a_progress_bar_and_shows_each_scenario(shell, baseline_project, capsys):
    from edgekit import api
    from edgekit.fsutil import read_json
    from edgekit.layout import Layout

    assert api.optimize("ort-fp32", baseline_project)["status"] == "ok"
    planned = api.planned_runs("ort-fp32", baseline_project)
    view = shell.run_line_magic("edgekit", f"bench ort-fp32 -C {baseline_project}")
    bar = capsys.readouterr().err  # tqdm.auto's text bar here; in a notebook the same call draws an ipywidgets bar
    assert "benchmark ort-fp32: 100%" in bar and f"{planned}/{planned}" in bar
    written = read_json(Layout(baseline_project).benchmark_metrics("ort-fp32"))
    assert view.title == "benchmark ort-fp32: ok" and view.data["scenarios"].keys() == written["scenarios"].keys() == {"b1_s16", "b2_s16"}
    for row in view._rows():
        assert row[1] == written["scenarios"][row[0]]["p50_ms"]
    assert shell.run_line_magic("edgekit", f"bench nope -C {baseline_project}") is None
    refused = capsys.readouterr().err
    assert "error: " in refused and "'nope'" in refused and "(edgekit exited with 1)" in refused
