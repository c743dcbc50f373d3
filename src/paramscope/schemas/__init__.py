"""JSON Schemas (draft 2020-12) of every JSON document paramscope writes, shipped with the package.

``paramscope/1`` (summary and explain), ``paramscope-diff/1`` (``paramscope diff``),
``paramscope-check/1`` (``paramscope check``) and ``paramscope-memory/1`` (``paramscope memory``);
each document names its schema in its ``schema`` field.

Example:
    >>> schema_for("paramscope-diff/1")["title"]
    'paramscope diff'
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["SCHEMA_FILES", "schema_for"]

#: The ``schema`` field of a document -> the file that describes it.
SCHEMA_FILES = {
    "paramscope/1": "paramscope-1.schema.json",
    "paramscope-diff/1": "paramscope-diff-1.schema.json",
    "paramscope-check/1": "paramscope-check-1.schema.json",
    "paramscope-memory/1": "paramscope-memory-1.schema.json",
}


def schema_for(name: str) -> dict[str, Any]:
    """The JSON Schema of the documents whose ``schema`` field is ``name``."""
    try:
        filename = SCHEMA_FILES[name]
    except KeyError:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(SCHEMA_FILES)}") from None
    text = resources.files("paramscope.schemas").joinpath(filename).read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc
