"""Text from another device, made safe to show.

A device name, a bundle's file name in a shared folder, a client's name or an error sentence
that quotes one may hold anything: terminal escape sequences (ESC, BEL, a carriage return
that overwrites the line), bidirectional overrides that reorder what is shown, characters no
font draws. Every place the command line or the app shows such text passes it through
`printable` first: each such character is shown as an escape (`\\x1b`, `\\u202e`), so it is
seen, never obeyed. In the app the result still goes into widgets that do not read markup
(`markup=False`, `rich.text.Text`, `notify(..., markup=False)`), so a name such as
"[bold red]x" or "[@click=app.quit]x" shows as typed.
"""

from __future__ import annotations


def printable(text: object) -> str:
    """One line of `text` with every character that is not printable shown as an escape
    (a line break too: this is for one line)."""
    text = text if isinstance(text, str) else str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def printable_lines(text: object) -> str:
    """`printable` line by line: the line breaks are kept, everything else is escaped."""
    text = text if isinstance(text, str) else str(text)
    return "\n".join(printable(line) for line in text.split("\n"))


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
