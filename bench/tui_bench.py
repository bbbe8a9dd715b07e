"""App figures with a 10,000-note vault open.

1. Keystroke latency in the progress-note editor: from a key event entering the app to the
   end of the screen refresh that shows it (`call_after_refresh`, headless driver), typing
   in bursts so the debounced autosave runs on the store thread while keys keep arriving.
   p50, p99, max.
2. Key presses from the unlock screen to a signed SOAP note when the clinical text is
   pasted (each paste counts as one action), driven through the real app, checked in the
   store afterwards.

    python -m bench.tui_bench [--notes 10000] [--clients 200] [--rebuild] [--keys 400]

The vault is built once into bench/out/ and reused. Target: p99 <= 16 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import date
from pathlib import Path

from bench.common import PASSPHRASE, load, pct, synthetic_vault
from store.models import Modality, NoteStatus, ProgressNote, SessionFacts
from store.vault import Vault

# With a snippet trigger in it (";mse "), expanded in place as typed.
TYPED = "Client reports sleeping better and using the breathing exercise before work. ;mse "
PASTED = {
    "subjective": "Client reports two panic episodes this week, both shorter than last month.",
    "objective": "Client was alert, made steady eye contact and described the episodes calmly.",
    "assessment": "Client responded well to interoceptive exposure and named two catastrophic predictions.",
    "plan": "Meet next week; client will practise daily breathing and keep a panic log.",
}


def new_draft(path: Path) -> tuple[str, str]:
    vault = Vault.open(path, PASSPHRASE)
    try:
        client = vault.record.list_clients()[0]
        note = vault.record.create_note(
            ProgressNote(
                client_id=client.client_id,
                format="SOAP",
                facts=SessionFacts(date_of_service=date.today(), modality=Modality.VIDEO),
            )
        )
        return client.client_id, note.id
    finally:
        vault.close()


async def wait_until(pilot, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not reach the expected state")
        await pilot.pause(0.02)


async def time_key(app, area, ch: str) -> float:
    """Seconds from one key event entering the app to the end of the refresh that shows it
    in `area` (a TextArea with focus)."""
    from textual import events

    before = area.text
    refreshed: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    t0 = time.perf_counter()
    app.post_message(events.Key("space" if ch == " " else ch, ch))
    while area.text == before:
        await asyncio.sleep(0)
    app.call_after_refresh(lambda: refreshed.done() or refreshed.set_result(time.perf_counter()))
    return await refreshed - t0


async def keystroke_latency(path: Path, keys: int, cpu: list[float] | None = None) -> list[float]:
    """Seconds per key (see `time_key`); this process's CPU seconds while typing (the app and
    its store thread, autosaves included) appended to `cpu`."""
    from textual.widgets import TextArea

    from tui.app import NotewellApp
    from tui.screens.main import MainScreen
    from tui.screens.note_editor import NoteEditorScreen

    _client_id, note_id = new_draft(path)
    app = NotewellApp(path, passphrase=PASSPHRASE, test_mode=True, idle_lock_seconds=3600)
    times: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        app.screen.open_note("progress", note_id)
        await wait_until(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded)
        area = app.screen.query_one("#section-subjective", TextArea)
        area.focus()
        await pilot.pause()
        cpu0 = time.process_time()
        for i in range(keys):
            times.append(await time_key(app, area, TYPED[i % len(TYPED)]))
            # Bursts of typing with short pauses, so autosaves overlap the next keys.
            await asyncio.sleep(0.45 if i % 40 == 39 else 0.03)
        await app.screen.flush()
        if cpu is not None:
            cpu.append(time.process_time() - cpu0)
    return times


async def keys_to_signed_note(path: Path, passphrase: str = PASSPHRASE, **app_options) -> tuple[list[str], int, int, int]:
    """(the key presses beyond typed values, in order; typed characters of values: times and
    numbers; passphrase characters; pastes). The clinician fills every clinical fact: the
    copy action is theirs, and nothing is chosen for them."""
    from textual import events
    from textual.widgets import Select

    from tui.app import NotewellApp
    from tui.screens.dialogs import ConfirmDialog
    from tui.screens.main import MainScreen
    from tui.screens.note_editor import NoteEditorScreen
    from tui.screens.unlock import UnlockScreen

    app = NotewellApp(path, test_mode=True, idle_lock_seconds=3600, **app_options)
    presses: list[str] = []
    count = {"typed": 0, "pastes": 0}

    async with app.run_test(size=(120, 40)) as pilot:

        async def press(*keys: str) -> None:
            for key in keys:
                presses.append(key)
                await pilot.press(key)

        async def type_value(text: str) -> None:
            count["typed"] += len(text)
            await pilot.press(*text)

        async def paste(text: str) -> None:
            count["pastes"] += 1
            app.post_message(events.Paste(text))
            await pilot.pause()

        await wait_until(pilot, lambda: isinstance(app.screen, UnlockScreen))
        await pilot.press(*passphrase, "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.client_id)
        await press("n")
        await wait_until(pilot, lambda: app.screen.query("#format") and app.screen.query_one("#format").has_focus)
        await press("enter")  # SOAP is first
        await wait_until(pilot, lambda: isinstance(app.screen, NoteEditorScreen) and app.screen.loaded)
        editor = app.screen

        async def tab_to(widget_id: str) -> None:
            while app.screen.focused is None or app.screen.focused.id != widget_id:
                await press("tab")
                if len(presses) > 200:
                    raise RuntimeError(f"{widget_id} is never reached by Tab")

        await type_value("1000")
        await press("tab")
        await type_value("1050")  # the CPT code is then suggested and filled in
        # No fact is filled for the clinician: one action copies the last note's modality,
        # diagnoses addressed and goals (FactsForm.copy_previous); what it could not copy is chosen.
        if editor.query("#copy-last-facts"):
            await press("ctrl+y")  # the copy action's key (the button does the same)
        if editor.query_one("#f-modality").value is Select.NULL:
            await tab_to("f-modality")
            await press("enter", "down", "enter")  # in person
        dx = editor.query("#f-dx")
        if dx and not dx.first().selected:
            await tab_to("f-dx")
            await press("space")
        goal = next(iter(editor.query(".goal-rating")))
        if goal.value is Select.NULL:
            await tab_to(goal.id)
            await press("enter", "down", "down", "down", "enter")  # some progress
        await tab_to("f-interventions")
        await paste("cognitive restructuring, interoceptive exposure")
        await tab_to("f-suicide")
        await press("enter", "down", "enter")  # none
        await tab_to("f-violence")
        await press("enter", "down", "enter")  # none
        for key in ("subjective", "objective", "assessment", "plan"):
            await tab_to(f"section-{key}")
            await paste(PASTED[key])
        await press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog) or app.screen is not editor)
        if not isinstance(app.screen, ConfirmDialog):
            raise RuntimeError("signing was refused: missing " + ", ".join(editor.query_one("#checklist").missing))
        await press("enter")
        await wait_until(pilot, lambda: app.screen is editor and editor.mode == "signed")
        note_id = editor.note_id
    vault = Vault.open(path, passphrase)
    try:
        note = vault.record.get_note(note_id)
        assert note.status == NoteStatus.SIGNED and note.sections == PASTED
    finally:
        vault.close()
    return presses, count["typed"], len(passphrase), count["pastes"]


def press_sequence(presses: list[str]) -> str:
    """"n enter tab x3 enter ...": repeated keys counted."""
    out: list[str] = []
    for key in presses:
        if out and out[-1].split(" x")[0] == key:
            n = int(out[-1].split(" x")[1]) if " x" in out[-1] else 1
            out[-1] = f"{key} x{n + 1}"
        else:
            out.append(key)
    return " ".join(out)


def with_snippets(path: Path, count: int) -> dict[str, str]:
    """`count` snippets in the vault (the most a vault holds is 200), the same each run."""
    from store.snippets import MAX_SNIPPETS

    vault = Vault.open(path, PASSPHRASE)
    try:
        wanted = {f"s{i}": f"Standard phrase number {i} for the bench." for i in range(min(count, MAX_SNIPPETS) - 1)}
        if count:
            wanted["mse"] = "Client was alert and oriented, affect congruent with mood."
        for trigger in set(vault.record.snippets()) - set(wanted):
            vault.record.delete_snippet(trigger)
        for trigger, text in wanted.items():
            vault.record.save_snippet(trigger, text)
        return vault.record.snippets()
    finally:
        vault.close()


def report_latency(path: Path, args: argparse.Namespace) -> None:
    """With snippets and without, alternately (`--rounds`), so both see the same load. The
    CPU figure is this process's (the app, its store thread and autosaves) while typing."""
    runs: dict[int, tuple[list[float], list[float]]] = {args.snippets: ([], []), 0: ([], [])}
    for round_ in range(args.rounds):
        # Each round in the other order, so neither always types first after the vault was written.
        for count in (args.snippets, 0) if round_ % 2 == 0 else (0, args.snippets):
            with_snippets(path, count)
            times, cpu = runs[count]
            times += asyncio.run(keystroke_latency(path, args.keys, cpu))
    for count, (times, cpu) in runs.items():
        print(f"keystroke to screen in the note editor ({args.notes} notes, {count} snippets"
              f"{f', a trigger expanded every {len(TYPED)} keys' if count else ''}, {len(times)} keys): "
              f"p50 {pct(times, 50) * 1000:.2f} ms, p99 {pct(times, 99) * 1000:.2f} ms, max {max(times) * 1000:.2f} ms; "
              f"CPU {sum(cpu) / len(times) * 1000:.2f} ms a key, autosaves included "
              f"(target p99 <= 16 ms; {load()})")
    with_snippets(path, args.snippets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--keys", type=int, default=400)
    parser.add_argument("--snippets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of typing with and without snippets, alternately")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--presses-only", action="store_true", help="only count the key presses to a signed note")
    args = parser.parse_args()
    path = synthetic_vault("tui", args.notes, args.clients, rebuild=args.rebuild)
    # The presses first: the typing runs leave the first client's newest note a draft with no
    # session facts, and a copy of the last note's facts would then have nothing to copy.
    presses, typed, passphrase_chars, pastes = asyncio.run(keys_to_signed_note(path))
    print(f"unlock to signed SOAP note: {len(presses)} key presses beyond typed values (target <= 25), "
          f"+ {pastes} pastes, {typed} typed characters of times, "
          f"{passphrase_chars} characters of passphrase and Enter ({load()})")
    print(f"  the presses: {press_sequence(presses)}")
    if not args.presses_only:
        report_latency(path, args)


if __name__ == "__main__":
    main()
