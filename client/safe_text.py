"""Text that other teams wrote, made safe to print in a terminal.

Run names, tags, params, diary entries and server messages come from other teams. Printed as they are, escape
codes in them would set the terminal's title or move the cursor, bidirectional-override characters would show
text in another order than it is stored, and rich would read `[link=...]` as markup and print a clickable link.
`printable` keeps what a reader should see and shows every control character as its `\\x..` code; `one_line`
also folds line breaks, for table cells and listings where a newline would forge another row; `markup` then
escapes rich's markup, for text that rich prints.
"""

from __future__ import annotations

import unicodedata

_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _visible(char: str, keep: str) -> str:
    if char in keep:
        return char
    if char in _BIDI_CONTROLS or unicodedata.category(char) == "Cc":
        return repr(char)[1:-1]
    return char


def printable(value: object) -> str:
    """Any value as text with its control characters shown as codes; line breaks and tabs stay."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(_visible(char, "\n\t") for char in text)


def one_line(value: object) -> str:
    """`printable`, on one line: line breaks of every kind, and tabs, become spaces."""
    if value is None:
        return ""
    return " ".join(printable(" ".join(str(value).splitlines())).split())


def markup(value: object, multiline: bool = False) -> str:
    """Safe to pass to rich's `print`: no control characters and no markup of the writer's own."""
    from rich.markup import escape

    return escape(printable(value) if multiline else one_line(value))
