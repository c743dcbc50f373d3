"""Text read from a file, made safe to show: the one place every displayed string passes.

Names, types, dtypes, metadata and notes come from files an attacker may have written. Shown
raw, an ANSI or OSC escape rewrites the terminal, a BiDi override (U+202E) reorders what the
reader sees, a zero-width character hides a difference, and a lone UTF-16 surrogate makes the
encoder raise. Every character Python does not call printable is therefore shown as its escape.
"""

from __future__ import annotations

__all__ = ["clean"]

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clean(text: str) -> str:
    r"""``text`` with every character that is not printable written as its escape.

    Not printable, by :meth:`str.isprintable`: the C0 and C1 controls and DEL (so ``ESC`` of
    every ANSI/OSC sequence), format characters (the BiDi overrides U+202A-202E and isolates
    U+2066-2069, zero-width U+200B-200D, U+2060, U+FEFF), U+2028/2029, lone surrogates,
    private-use and unassigned code points, and every space but U+0020.

    Example:
        >>> clean("w\x1b[31m\u202e\udc80 ok")
        'w\\x1b[31m\\u202e\\udc80 ok'
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
