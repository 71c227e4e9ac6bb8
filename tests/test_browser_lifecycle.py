"""The lifecycle in a real JupyterLab, in a real browser: Debian's chromium, headless, driven by Playwright (no
browser download; every request that is not to the local server is blocked and listed).

JupyterLab serves ``notebooks/lifecycle.ipynb`` (papermill-parameterized for the registry test project) on
127.0.0.1 with a token. The test runs every cell from the Run menu, then, in the registry panel: Promote on a
version whose production gates fail (the refusal must show, nothing is written), and Promote, Approve (signed
with alice's key) and Promote again on one that passes, up to production; `edgekit registry show` must agree
with the panel. Screenshots of the panel and of the explorer are saved in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from registry_project import MODEL as M

from conftest import REPO
from edgekit import registry as reg

pytestmark = [pytest.mark.browser, pytest.mark.notebook, pytest.mark.slow]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(registry_project, registry_keys, tmp_path):
    """JupyterLab on 127.0.0.1 serving the parameterized lifecycle notebook; yields (url, project)."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    root = tmp_path / "lab"
    root.mkdir()
    notebook = parameterize_notebook(load_notebook_node(str(REPO / "notebooks" / "lifecycle.ipynb")),
                                     {"project_dir": str(registry_project), "key": str(registry_keys["alice"])})
    nbformat.write(notebook, root / "lifecycle.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log = (tmp_path / "jupyter.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
                               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
                               *(["--allow-root"] if os.geteuid() == 0 else [])],
                              cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "jupyter.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/lab/tree/lifecycle.ipynb?token={token}", registry_project
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def registry_state(project: Path) -> dict:
    done = subprocess.run([str(Path(sys.executable).parent / "edgekit"), "registry", "show", "--json", "-C", str(project)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["models"][M]


def test_a_signed_production_promotion_from_jupyterlab_and_a_refusal_shown_in_the_panel(lab, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    url, project = lab
    # the registry before the browser opens: ort-fp32 in staging (it fails production's memory and size gates),
    # ort-int8 registered (it passes both stages)
    monkeypatch.setattr("edgekit.registry.record.dvc_status", lambda folder: {})
    reg.register(project, variant="ort-fp32")
    reg.promote(project, f"{M}@v1.0.0")
    reg.register(project, variant="ort-int8")
    ARTIFACTS.mkdir(exist_ok=True)
    blocked: list[str] = []
    kernel_ready: list[bool] = []

    def only_local(route) -> None:
        address = urlparse(route.request.url)
        if address.scheme in ("data", "blob") or address.hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    def watch(socket_) -> None:  # a cell sent before the kernel's kernel_info_reply can be dropped on a fresh server
        def frame(payload) -> None:
            text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
            if "kernel_info_reply" in text:
                kernel_ready.append(True)

        socket_.on("framereceived", frame)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.route("**/*", only_local)
        page.on("websocket", watch)
        try:
            page.goto(url)
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            deadline = time.monotonic() + 90
            while not kernel_ready:
                assert time.monotonic() < deadline, "no kernel_info_reply from the kernel"
                page.wait_for_timeout(250)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            promote = page.get_by_role("button", name="Promote", exact=True)
            expect(promote).to_be_visible(timeout=180_000)
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)  # the explorer's Pareto plot, live
            versions = page.locator(".widget-select select")

            def act(button: str, expected: str) -> str:
                page.get_by_role("button", name=button, exact=True).click()
                page.get_by_role("button", name="Confirm", exact=True).click()
                said = page.get_by_text(expected).last
                expect(said).to_be_visible(timeout=60_000)
                return said.inner_text()

            versions.select_option(label="v1.0.0 · ort-fp32 · staging")
            refused = act("Promote", "refused:")
            assert "memory_reduction" in refused and "size_mb" in refused, refused
            assert [e["type"] for e in reg.history(project)] == ["register", "promote", "register"]
            expect(page.locator(".widget-html", has_text="refused:")).to_have_count(1)  # the panel's status line

            versions.select_option(label="v1.1.0 · ort-int8 · registered")
            act("Promote", "v1.1.0 → staging")
            act("Approve", "approved for production")
            act("Promote", "v1.1.0 → production")
            expect(page.locator(".widget-select option", has_text="v1.1.0 · ort-int8 · production")).to_have_count(1)
            no_news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's first-start question about news
            if no_news.count():
                no_news.click()
            # the notebook scrolls inside its own panel: each picture is the viewport with its widget in view
            page.locator(".widget-select").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "lifecycle-panel.png"))
            page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "lifecycle-explorer.png"))
        finally:
            if not (ARTIFACTS / "lifecycle-panel.png").exists():
                page.screenshot(path=str(ARTIFACTS / "lifecycle-failed.png"), full_page=True)
            browser.close()

    shown = registry_state(project)
    assert shown["stages"] == {"staging": None, "production": "v1.1.0"}
    history = reg.history(project)
    assert [(e["type"], e.get("stage")) for e in history[3:]] == [("promote", "staging"), ("approve", "production"), ("promote", "production")]
    assert history[4]["signed"] and history[4]["signer"]["principal"] == "alice@example.com"
    print(f"browser test: {time.monotonic() - started:.1f} s wall; {len(blocked)} non-local request(s) blocked: {blocked[:5]}")
