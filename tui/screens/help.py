"""The help screen, and the list of actions it shares with the command palette.

Both come from the same place, the bindings that carry an id (ours, and remappable), so an
action is never in one and missing from the other, and the keys shown follow the keymap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Label, Static

from tui.screens.base import NotewellModal


@dataclass
class Action:
    title: str
    help: str
    key: str
    binding_id: str
    run: Callable[[], object]


def screen_actions(screen: Screen) -> list[Action]:
    app = screen.app
    actions: list[Action] = []
    seen: set[str] = set()
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not binding.id or binding.id in seen or not binding.description:
            continue
        seen.add(binding.id)
        node, action_name = active.node, binding.action

        def run(node=node, action_name=action_name) -> None:
            app.call_later(app.run_action, action_name, node)

        key = app.get_key_display(binding)
        actions.append(
            Action(
                # The footer's word may be short; the full name is the tooltip where one is given.
                title=binding.tooltip or binding.description,
                help=f"key: {key}",
                key=key,
                binding_id=binding.id,
                run=run,
            )
        )
    return actions


class HelpScreen(NotewellModal[None]):
    BINDINGS = [Binding("escape,f1,q", "close", "Close help", id="help.close")]

    def __init__(self, for_screen: Screen) -> None:
        super().__init__(classes="dialog")
        self._for = for_screen

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide", id="help-box"):
            yield Label("Keys and actions", classes="dialog-title")
            yield Static(
                "Every action is also in the command palette (ctrl+p). Keys can be changed in "
                "the settings file under \\[keymap], using the ids below.",
                classes="hint",
            )
            with VerticalScroll(id="help-list"):
                for action in screen_actions(self._for):
                    yield Static(
                        f"{action.key:>12}  {action.title}   [dim]{action.binding_id}[/dim]",
                        classes="help-row",
                    )
                yield Static(f"{'ctrl+p':>12}  Command palette", classes="help-row")
            yield Static(
                "Progress notes are the record: signed, synced, exportable. Process notes are "
                "private to this device and never synced or exported.",
                classes="hint",
            )

    def action_close(self) -> None:
        self.dismiss(None)
