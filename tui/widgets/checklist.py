"""The live compliance checklist beside the note: every element, ticked or not."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.markup import escape
from textual.widgets import Static

from store.compliance import ADVICE_LABELS, ELEMENT_LABELS, SESSION_ELEMENTS, WARNING, ComplianceProblem


class Checklist(Static):
    """Shows the auditor's elements; problems carry the store's own sentence."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Checking...", id=id)
        self.problems: list[ComplianceProblem] = []
        self._shown = False
        # Advice the screen adds to the store's problems each time they are shown (the
        # note editor's copy-forward check, store/compliance.py `check_copy_forward`).
        self.advice: Callable[[], list[ComplianceProblem]] | None = None
        # The rows for this kind of note (store.compliance.checklist_elements); the editor
        # sets them for an intake, review or discharge note.
        self.elements: tuple[str, ...] = SESSION_ELEMENTS

    @property
    def missing(self) -> list[str]:
        """Element keys that stop signing (what the tests and the sign dialog look at)."""
        return [p.element for p in self.problems if p.severity != WARNING]

    def on_resize(self) -> None:
        self._render_list()

    def show(self, problems: Sequence[ComplianceProblem]) -> None:
        problems = list(problems) + (self.advice() if self.advice is not None else [])
        if problems == self.problems and self._shown:
            return  # most autosaves change nothing here; skip the relayout
        self.problems = problems
        self._render_list()

    def _render_list(self) -> None:
        # In a narrow pane the labels alone; the store's sentences when there is room.
        detail = self.size.width >= 30
        blocking = self.missing
        lines = ["[b]Ready to sign[/b]" if not blocking else f"[b]{len(blocking)} to complete[/b]"]
        by_element: dict[str, list[ComplianceProblem]] = {}
        for p in self.problems:
            by_element.setdefault(p.element, []).append(p)
        keys = list(self.elements) + [k for k in by_element if k not in self.elements]
        for key in keys:
            label = escape(ELEMENT_LABELS.get(key) or ADVICE_LABELS.get(key, key))
            found = by_element.get(key)
            if not found:
                lines.append(f"[green]✓[/green] {label}")
                continue
            for p in found:
                mark = "[yellow]![/yellow] " + label if p.severity == WARNING else f"[red]✗ {label}[/red]"
                lines.append(mark + (f"\n  [dim]{escape(p.message)}[/dim]" if detail else ""))
        self.update("\n".join(lines))
        self._shown = True
