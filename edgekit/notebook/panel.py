"""``RegistryPanel``: the registry in a notebook, with its actions (ipywidgets).

A model and one of its versions are chosen on the left; the version's record, gate verdicts, approvals and
events show on the right. Register, Promote, Approve, Archive and Rollback each ask for a confirmation that
names exactly what will be written, then call the same ``edgekit.registry`` function as the CLI, so they
leave the same events; a refusal (a failing gate, a missing signature, a conflict, a dirty workspace) is shown
in the panel with its fix, and nothing is written.

Example:
    >>> from edgekit.notebook import RegistryPanel
    >>> RegistryPanel(".", key="~/.ssh/id_ed25519")     # the last expression of a cell: the panel shows
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from edgekit.errors import EdgekitError
from edgekit.notebook.display import HistoryView, RegistryView, ServingView, VersionView


def default_key(project: Path) -> str:
    """git's ``user.signingkey`` when it is an SSH key file, else ``~/.ssh/id_ed25519`` when it exists, else ''."""
    from edgekit.registry.gitrepo import configured

    configured_key = configured(project, "user.signingkey") or ""
    for candidate in (configured_key, "~/.ssh/id_ed25519"):
        if candidate and Path(candidate).expanduser().is_file():
            return candidate
    return ""


class RegistryPanel:
    """The registry of ``project`` as a widget; ``widget`` is what the notebook shows."""

    def __init__(self, project: str | Path = ".", key: str | Path | None = None):
        from edgekit import registry

        self.api = registry
        self.project = Path(project)
        self.models = widgets.Dropdown(description="model")
        self.versions = widgets.Select(description="version", rows=10)
        self.variant = widgets.Dropdown(description="variant")
        self.key = widgets.Text(value=str(key) if key else default_key(self.project), description="SSH key",
                                placeholder="~/.ssh/id_ed25519 (signs approvals)")
        self.buttons = {name: widgets.Button(description=name, tooltip=tip, layout=widgets.Layout(width="auto")) for name, tip in (
            ("Register", "register the chosen variant as a new version"), ("Promote", "promote the version one stage on"),
            ("Approve", "sign an approval of the version for its next stage"), ("Archive", "retire the version"),
            ("Rollback", "put the previous production version back"))}
        self.confirm, self.cancel = widgets.Button(description="Confirm", button_style="warning"), widgets.Button(description="Cancel")
        self.question = widgets.HTML()
        self.confirmation = widgets.HBox([self.question, self.confirm, self.cancel], layout=widgets.Layout(display="none"))
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="", layout=widgets.Layout(display="none", width="200px"))
        self.status = widgets.HTML()
        self.detail = widgets.HTML()
        self.pending: Callable[[], Any] | None = None

        for name, button in self.buttons.items():
            button.on_click(lambda _, name=name: self.ask(name))
        self.confirm.on_click(lambda _: self.run_pending())
        self.cancel.on_click(lambda _: self._hide_confirmation("cancelled"))
        self.models.observe(lambda _: self._fill_versions(), names="value")
        self.versions.observe(lambda _: self._show_version(), names="value")
        left = widgets.VBox([self.models, self.versions, self.variant, self.key, widgets.HBox(list(self.buttons.values()))])
        self.widget = widgets.VBox([widgets.HBox([left, self.detail]), self.confirmation, self.progress, self.status])
        self.refresh()

    # -- what is shown ----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the registry and the pipeline's variants; keep the current choices where they still exist."""
        shown = self.api.show(self.project)
        self.shown = shown
        model = self.models.value
        self.models.options = list(shown["models"]) or [_default_model(self.project)]
        self.models.value = model if model in self.models.options else self.models.options[0]
        self._fill_versions()
        self.variant.options = _measured_variants(self.project)

    def _fill_versions(self) -> None:
        model = self.shown["models"].get(self.models.value, {"versions": []})
        chosen = self.versions.value
        self.versions.options = [(f"{v['version']} · {v['variant']} · {v['stage'] or 'registered'}", v["version"])
                                 for v in reversed(model["versions"])]
        values = [value for _, value in self.versions.options]
        self.versions.value = chosen if chosen in values else (values[0] if values else None)
        self._show_version()

    def _show_version(self) -> None:
        if not self.versions.value:
            self.detail.value = "<i>no version registered yet: choose a variant and Register</i>"
            return
        ref = self.ref()
        view = VersionView(self.api.describe(self.project, ref))
        trail = HistoryView(self.api.history(self.project, self.models.value, self.versions.value)).body()
        seen = self.api.observations(self.project, self.models.value, self.versions.value)
        serving = f"<h4>{ServingView(seen).title}</h4>" + ServingView(seen).body() if seen else ""
        self.detail.value = view._repr_html_() + serving + "<h4>audit trail</h4>" + trail

    def ref(self) -> str:
        return f"{self.models.value}@{self.versions.value}"

    # -- actions --------------------------------------------------------------------------------------
    def ask(self, action: str) -> None:
        """Show what ``action`` will write, with Confirm and Cancel; nothing is written yet."""
        question, call = self._plan(action)
        if call is None:
            self._say(question, ok=False)
            return
        self.pending = call
        self.question.value = f"<b>{html.escape(question)}</b>"
        self.confirmation.layout.display = "flex"

    def run_pending(self) -> None:
        call, self.pending = self.pending, None
        self.confirmation.layout.display = "none"
        if call is None:
            return
        self.progress.layout.display, self.progress.bar_style, self.progress.value = "flex", "info", 0
        self.status.value = "<i>working…</i>"
        try:
            message = call()
        except EdgekitError as exc:  # the registry's refusal: nothing was written
            self._say(f"refused: {exc.message}" + (f" — {exc.hint}" if exc.hint else ""), ok=False)
        else:
            self.refresh()
            self._say(message, ok=True)
        finally:
            self.progress.value, self.progress.layout.display = 1, "none"

    def _hide_confirmation(self, why: str) -> None:
        self.pending, self.confirmation.layout.display = None, "none"
        self._say(why, ok=True)

    def _say(self, text: str, ok: bool) -> None:
        colour = "#1a7f37" if ok else "#cf222e"
        self.status.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def _plan(self, action: str) -> tuple[str, Callable[[], str] | None]:
        api, project, ref, key = self.api, self.project, self.ref(), os.path.expanduser(self.key.value.strip()) or None
        model = self.models.value
        signs = key if _signs_every_event(project) else None  # else only approvals are signed (policy lifecycle.sign)
        if action == "Register":
            variant = self.variant.value
            if not variant:
                return "no measured variant to register: run the pipeline first (dvc repro)", None
            return (f"register {variant} as a new version of {model}?",
                    lambda: _said(api.register(project, model, variant, key=signs), "registered {model}@{version} ({variant})"))
        if action == "Rollback":
            return (f"roll {model} back to its previous production version?",
                    lambda: _said(api.rollback(project, model, reason="from the notebook panel", key=signs), "{model}: {version} is back in {stage}"))
        if not self.versions.value:
            return "choose a version first", None
        if action == "Promote":
            return f"promote {ref} to its next stage (its gates are re-evaluated, its approvals re-verified)?", \
                lambda: _said(api.promote(project, ref, key=signs), "{model}@{version} → {stage}")
        if action == "Approve":
            if not key:
                return "an approval is signed: give the path of your SSH private key", None
            return f"sign an approval of {ref} for its next stage with {key}?", \
                lambda: _said(api.approve(project, ref, key=key), "{model}@{version} approved for {stage}")
        if action == "Archive":
            return f"archive {ref}?", lambda: _said(api.archive(project, ref, reason="from the notebook panel", key=signs), "{model}@{version} → {stage}")
        raise ValueError(action)

    def static_html(self) -> str:
        """What a notebook without a widget frontend shows (papermill, nbconvert): the registry, the chosen
        version's record and trail, and the last action's outcome."""
        return RegistryView(self.shown)._repr_html_() + f'<div class="edgekit-view">{self.detail.value}{self.status.value}</div>'

    def _repr_mimebundle_(self, include=None, exclude=None) -> Any:
        return {**self.widget._repr_mimebundle_(include=include, exclude=exclude), "text/html": self.static_html()}


def _said(result: dict[str, Any], template: str) -> str:
    return template.format(**result) + f" (event {result['event']['seq']})"


def _signs_every_event(project: Path) -> bool:
    from edgekit.registry.core import Registry

    return Registry.open(project).lifecycle().sign == "all"


def _measured_variants(project: Path) -> list[str]:
    from edgekit.fsutil import read_json
    from edgekit.layout import Layout

    summary = Layout(project).summary
    if not summary.is_file():
        return []
    data = read_json(summary)
    recommended = (data.get("recommendation") or {}).get("variant")
    names = [name for name, row in data.get("variants", {}).items() if row.get("status") == "ok"]
    return sorted(names, key=lambda name: name != recommended)


def _default_model(project: Path) -> str:
    from edgekit.registry.api import default_model_name

    return default_model_name(project)
