"""What the Hugging Face checkpoint readers share: the shard index and the files beside the weights.

A sharded checkpoint (safetensors or PyTorch ``.bin``) is a ``*.index.json`` whose
``weight_map`` names the shard of each tensor. Every path in it must stay inside the folder,
which is checked from the path's text and the symlinks on the way before any shard is opened.
A ``config.json`` beside the weights adds the model type and the weight ties it declares; an
``adapter_config.json`` marks a PEFT adapter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from paramscope.core.errors import CorruptFileError, TargetError
from paramscope.core.files import folder_member, open_regular
from paramscope.core.strict_json import loads_strict
from paramscope.rules.names import TOKEN_TABLES, natural_key

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_INDEX_BYTES",
    "load_json",
    "shard_path",
    "read_index",
    "folder_facts",
    "short",
]

#: Largest config.json read beside the weights.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: Largest index file read (a 400-shard index is a few MB).
MAX_INDEX_BYTES = 64 * 1024 * 1024


def load_json(path: Path, limit: int) -> Any:
    """A JSON file parsed strictly, refused unread when it holds more than ``limit`` bytes or is
    not a regular file (a FIFO would block the read forever)."""
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise CorruptFileError(f"{size:,} bytes, over the {limit:,}-byte limit for this file", where=str(path))
            raw = f.read(size)
    except OSError as e:
        raise TargetError(f"cannot read file: {e.strerror or e}", where=str(path)) from None
    return loads_strict(raw, where=str(path), max_bytes=limit)


def shard_path(folder: Path, rel: object, index: Path, tensor: str) -> Path:
    """Resolve a shard named in an index, refusing anything that leaves the folder or is not a
    regular file (:func:`~paramscope.core.files.folder_member`).

    Nothing is opened here: only the path's text and the symlinks on the way are examined.

    Example:
        >>> shard_path(Path("ckpt"), "../secret.bin", Path("ckpt/x.index.json"), "w")
        Traceback (most recent call last):
        ...
        paramscope.core.errors.UnsafeFileError: ckpt/x.index.json, weight_map['w']: shard path '../secret.bin' leaves the checkpoint folder; refusing to open it
    """
    where = f"{index}, weight_map[{tensor!r}]"
    if not isinstance(rel, str) or not rel:
        raise CorruptFileError(f"shard file name must be a non-empty string, got {rel!r}", where=where)
    return folder_member(folder, rel, what="shard path", where=where, must_exist=False)


def read_index(index: Path, folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """(tensor name -> shard path, the index's ``metadata`` as strings) of a shard index.

    Every shard path is checked (:func:`shard_path`) before any is opened, and every shard
    named must exist.

    Raises:
        CorruptFileError: the index is not JSON, has no ``weight_map``, or names a missing shard.
        UnsafeFileError: a shard path leaves the folder.
    """
    doc = load_json(index, MAX_INDEX_BYTES)
    wm = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wm, dict):
        raise CorruptFileError("index has no \"weight_map\" object", where=str(index))
    meta_doc = doc.get("metadata")
    index_meta = (
        {str(k): str(v) for k, v in meta_doc.items() if isinstance(v, (str, int, float))}
        if isinstance(meta_doc, dict)
        else {}
    )
    # Every path is checked before any shard is opened.
    # A 70B index names 15 shards 723 times: each distinct name is resolved (and checked) once.
    resolved: dict[str, Path] = {}
    weight_map = {}
    for name, rel in wm.items():
        path = resolved.get(rel) if isinstance(rel, str) else None
        if path is None:
            path = shard_path(folder, rel, index, name)
            resolved[str(rel)] = path
        weight_map[name] = path
    for f in sorted(set(weight_map.values()), key=lambda q: natural_key(q.name)):
        if not f.is_file():
            raise CorruptFileError(f"shard {f.name} named in the index does not exist", where=str(index))
    return weight_map, index_meta


#: Facts copied from a transformers config.json into the metadata.
_CONFIG_KEYS = (
    "model_type", "architectures", "torch_dtype", "dtype", "hidden_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size",
    "max_position_embeddings", "tie_word_embeddings",
)  # fmt: skip
#: Facts copied from a PEFT adapter_config.json (prefixed ``adapter.``).
_ADAPTER_KEYS = ("peft_type", "base_model_name_or_path", "r", "lora_alpha", "target_modules")


def _facts(doc: Mapping[str, Any], keys: Sequence[str]) -> dict[str, str]:
    """Scalar or list-of-scalar values of ``keys`` as display strings."""
    out: dict[str, str] = {}
    for key in keys:
        value = doc.get(key)
        if isinstance(value, bool):
            out[key] = str(value).lower()
        elif isinstance(value, (str, int, float)):
            out[key] = short(str(value))
        elif isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            out[key] = short(", ".join(map(str, value)))
    return out


def _config(folder: Path, name: str) -> dict[str, Any] | None:
    if not os.path.lexists(folder / name):
        return None
    # A config.json beside the weights follows the folder's rule: inside it, a regular file
    # (a dangling link, as in a half-downloaded hub cache, is ignored like a missing file).
    cfg = folder_member(folder, name, what="config file", must_exist=False)
    if not cfg.is_file():
        return None
    doc = load_json(cfg, MAX_CONFIG_BYTES)
    return doc if isinstance(doc, dict) else None


_HEAD_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")


def _ties(config: Mapping[str, Any] | None, names: Sequence[str]) -> tuple[dict[str, str], str]:
    """Weight ties a transformers config declares, as alias -> target, and how it says so."""
    if config is None or "lm_head.weight" in names and config.get("tie_word_embeddings") is not True:
        return {}, ""
    tie = config.get("tie_word_embeddings")
    archs = config.get("architectures")
    has_head = isinstance(archs, list) and any(
        isinstance(a, str) and a.endswith(_HEAD_ARCHITECTURES) for a in archs
    )
    if tie is not True and not (tie is None and has_head):
        return {}, ""
    tables = [n for n in names if n.endswith(".weight") and n.rsplit(".", 2)[-2] in TOKEN_TABLES]
    if not tables:
        return {}, ""
    how = "config.json: tie_word_embeddings true" if tie is True else "config.json: tie_word_embeddings unset, which transformers ties by default"
    return {"lm_head.weight": tables[0]}, how


def folder_facts(folder: Path, names: Sequence[str], metadata: dict[str, str], notes: list[str]) -> tuple[dict[str, str], str]:
    """Add what ``config.json`` and ``adapter_config.json`` beside the weights say.

    Args:
        folder: the checkpoint's folder.
        names: the names of the tensors read.
        metadata: updated with the config's facts (``model_type``, ``architectures``, ...).
        notes: a note is added for an adapter.

    Returns:
        The ties the config declares (alias -> target) and where they come from, for
        :func:`~paramscope.rules.names.anatomy_from_flat`.

    Example:
        >>> meta: dict[str, str] = {}
        >>> folder_facts(Path("no-such-folder"), ["fc.weight"], meta, [])
        ({}, '')
    """
    tied: dict[str, str] = {}
    how = ""
    config = _config(folder, "config.json")
    if config is not None:
        metadata.update(_facts(config, _CONFIG_KEYS))
        tied, how = _ties(config, names)
    adapter = _config(folder, "adapter_config.json")
    if adapter is not None:
        metadata.update({f"adapter.{k}": v for k, v in _facts(adapter, _ADAPTER_KEYS).items()})
        notes.append(
            "This is an adapter (PEFT): its tensors are added to the base model "
            f"{adapter.get('base_model_name_or_path') or '(not named)'}, which is not counted here."
        )
    return tied, how


def short(value: str, limit: int = 200) -> str:
    """``value``, cut to ``limit`` characters with its length said.

    Example:
        >>> short("abcdef", 3)
        'abc... (6 characters)'
    """
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value):,} characters)"
