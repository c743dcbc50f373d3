"""Reader for Keras model configs: a JSON file (``model.to_json()``) or the parsed dict.

The config is read as data by :mod:`paramscope.readers.keras.engine.graph`; Keras is never imported,
and nothing in the file (Lambda bytecode, custom classes) is run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from paramscope.core import sniff
from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import TargetError, UnsupportedFormatError
from paramscope.core import limits
from paramscope.core.files import open_regular
from paramscope.core.strict_json import loads_strict

__all__ = ["can_read", "read"]

#: Bytes peeked at to recognise a Keras config ("class_name" and "config" come first).
_PEEK_BYTES = 4096


def _is_config(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("class_name"), str)
        and isinstance(value.get("config"), Mapping)
    )


def can_read(source: Any) -> bool:
    """Whether ``source`` is a Keras config dict or a JSON file that starts like one.

    Example:
        >>> can_read({"class_name": "Sequential", "config": {"layers": []}})
        True
    """
    if isinstance(source, Mapping):
        return _is_config(source)
    path = sniff.file_path(source)
    if path is None:
        return False
    text = sniff.head(path, _PEEK_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
    # model.to_json() writes "module", "class_name", "config" first: all within the peek.
    return text.startswith(b"{") and b'"class_name"' in text and b'"config"' in text


def read(source: Any, **options: Any) -> Anatomy:
    """The anatomy of the model a Keras config describes (what ``model_from_json`` builds).

    Args:
        source: a config dict, or the path of a JSON file holding one.
        **options: ignored (the config carries its own shapes).

    Raises:
        TargetError: the file does not exist.
        CorruptFileError: the file is not valid JSON or the config is inconsistent.
        UnsupportedFormatError: the JSON is not a Keras config.

    Example:
        >>> a = read({"class_name": "Dense", "config": {"name": "d", "units": 3},
        ...           "build_config": {"input_shape": [None, 4]}})
        >>> a.layers[0].tensors[0].shape
        (4, 3)
    """
    from paramscope.readers.keras.engine.graph import anatomy_from_config

    if isinstance(source, Mapping):
        if not _is_config(source):
            raise UnsupportedFormatError(
                "not a Keras config: expected a dict with 'class_name' and 'config' keys"
            )
        return anatomy_from_config(source, source="config dict")
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise TargetError(f"no such file: {path}")
    cap = limits.MAX_KERAS_CONFIG_BYTES
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > cap:
            raise limits.exceeded(
                f"a Keras config of {size:,} bytes", size, cap, "MAX_KERAS_CONFIG_BYTES", where=path
            )
        data = f.read(cap + 1)
    config = loads_strict(data, where=path, max_bytes=cap)
    if not _is_config(config):
        raise UnsupportedFormatError(
            "JSON, but not a Keras model config (no top-level 'class_name' and 'config'); "
            "pass what model.to_json() writes",
            where=path,
        )
    return anatomy_from_config(config, source=path)
