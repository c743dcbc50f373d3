"""JSON from untrusted files: duplicate keys, absurd nesting and oversized text are refused."""

from __future__ import annotations

import json
from typing import Any

from paramscope.core.errors import CorruptFileError

__all__ = ["loads_strict", "MAX_JSON_BYTES"]

#: Largest JSON document read (a 70B model's index is ~30 KB; a big Keras config a few MB).
MAX_JSON_BYTES = 256 * 1024 * 1024


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise CorruptFileError(f"duplicate JSON key {k!r}; the file is ambiguous and is refused")
        out[k] = v
    return out


def loads_strict(
    text: str | bytes, *, where: str = "", max_bytes: int = MAX_JSON_BYTES
) -> Any:
    """Parse JSON, refusing duplicate keys, NaN/Infinity constants, deep nesting and huge input.

    Args:
        text: the document.
        where: the file (and entry) it came from, for error messages.
        max_bytes: largest accepted document.

    Raises:
        CorruptFileError: the document is not strict JSON.

    Example:
        >>> loads_strict('{"a": [1, 2]}')
        {'a': [1, 2]}
    """
    if len(text) > max_bytes:
        raise CorruptFileError(
            f"JSON document of {len(text):,} bytes exceeds the {max_bytes:,}-byte limit",
            where=where or None,
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorruptFileError(f"JSON is not UTF-8 (byte {e.start})", where=where or None) from None

    def _bad_constant(name: str) -> Any:
        raise CorruptFileError(f"non-standard JSON constant {name}", where=where or None)

    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_bad_constant)
    except CorruptFileError as e:
        if e.where is None and where:
            raise CorruptFileError(e.message, where=where) from None
        raise
    except RecursionError:
        raise CorruptFileError("JSON nested too deeply", where=where or None) from None
    except json.JSONDecodeError as e:
        raise CorruptFileError(
            f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", where=where or None
        ) from None
