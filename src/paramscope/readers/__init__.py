"""Readers: each turns one kind of source into an :class:`~paramscope.core.Anatomy`.

Every reader module has the same face: ``can_read(source) -> bool``, cheap and safe (it peeks
at a few bytes, never imports a framework it does not need), and
``read(source, **options) -> Anatomy``. :func:`read` asks them in order and uses the first
that accepts the source. Objects may also explain themselves by defining
``__paramscope_anatomy__(**options) -> Anatomy``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import ParamscopeError, TargetError, UnsupportedFormatError

__all__ = ["READERS", "INPUT_READERS", "reader_for", "read", "unused_inputs"]

#: Reader modules in the order they are asked; specific formats before general ones.
READERS: tuple[str, ...] = (
    # A Keras 3 layer on the torch backend is also a torch.nn.Module: Keras is asked first.
    "keras.live",
    # A sharded module is a torch.nn.Module too: its global shapes need this reader first.
    "distributed.live",
    "torch.module",
    # A DCP folder may sit beside .pt files, and its ranks may write safetensors: its .metadata or
    # its shard-*-model-* rank files say what it is, before the generic readers.
    "distributed.dcp",
    "safetensors",
    "gguf",
    "onnx.model",
    "distributed.deepspeed",
    "distributed.deepspeed_universal",
    "distributed.megatron",
    "distributed.fsdp1",
    "torch.checkpoint",
    "keras.archive",
    "keras.weights",
    "hf.config",
    "keras.config",
)


#: Readers that run a graph and so use ``input_size``/``inputs``; every other reader ignores them.
INPUT_READERS = frozenset({"torch.module", "distributed.live", "hf.config", "onnx.model"})

#: What the other readers read, in words, for the message refusing inputs given to them.
_NO_GRAPH = {
    "keras.builder": "a paramscope.keras model, whose input shapes are part of the model",
    "keras": "a Keras model or file, whose input shapes are part of the model",
    "safetensors": "a safetensors checkpoint, which holds tensors, not a graph to run",
    "gguf": "a GGUF checkpoint, which holds tensors, not a graph to run",
    "torch.checkpoint": "a PyTorch checkpoint, which holds tensors, not a graph to run",
    "distributed": "a distributed checkpoint, which holds tensors, not a graph to run",
}


def unused_inputs(reader: str, given: list[str]) -> ParamscopeError | None:
    """The error for inputs (named as the caller spells them) given to ``reader``, which would
    ignore them; ``None`` when it uses them or none were given.

    An option that silently does nothing makes the user believe the shapes and FLOPs shown are
    for their input, so it is an error, not a warning.

    Example:
        >>> print(unused_inputs("gguf", ["input_size"]))
        input_size does nothing for a GGUF checkpoint, which holds tensors, not a graph to run; drop it (inputs apply to PyTorch modules, Hugging Face configs and ONNX files)
        >>> unused_inputs("onnx.model", ["input_size"]) is None
        True
    """
    if not given or reader in INPUT_READERS:
        return None
    what = _NO_GRAPH.get(reader) or _NO_GRAPH.get(reader.split(".")[0], f"what the {reader} reader reads")
    return ParamscopeError(
        f"{' and '.join(given)} do{'es' if len(given) == 1 else ''} nothing for {what}; "
        f"drop {'it' if len(given) == 1 else 'them'} (inputs apply to PyTorch modules, Hugging Face configs and ONNX files)"
    )


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"paramscope.readers.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"paramscope.readers.{name}":
            return None  # reader not part of this build
        raise


def reader_for(source: Any) -> ModuleType:
    """The reader module that accepts ``source``.

    Raises:
        TargetError: ``source`` is a path that does not exist.
        UnsupportedFormatError: no reader accepts it.
    """
    if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
        raise TargetError(f"no such file or folder: {os.fspath(source)}")
    for name in READERS:
        mod = _module(name)
        if mod is not None and mod.can_read(source):
            return mod
    if isinstance(source, (str, os.PathLike)):
        raise UnsupportedFormatError(
            "not a format paramscope reads (Keras .json/.keras/.h5, safetensors, ONNX, "
            "PyTorch .pt/.bin, GGUF, Hugging Face config.json, sharded DCP/DeepSpeed/Megatron-LM folders)",
            where=os.fspath(source),
        )
    raise UnsupportedFormatError(
        f"cannot inspect an object of type {type(source).__module__}.{type(source).__qualname__}; "
        "pass a Keras model, a torch.nn.Module, a config dict or a file path"
    )


def read(source: Any, **options: Any) -> Anatomy:
    """Read any supported source into an anatomy.

    Args:
        source: a file or folder path, a live model, or a config dict.
        **options: passed to the reader (e.g. ``input_size`` for PyTorch modules).

    Example:
        >>> from paramscope import keras
        >>> x = keras.Input(shape=(8,))
        >>> anatomy = read(keras.Model(x, keras.layers.Dense(4)(x)))
        >>> anatomy.framework, [layer.type for layer in anatomy.layers]
        ('keras', ['InputLayer', 'Dense'])
    """
    hook = getattr(source, "__paramscope_anatomy__", None)
    if callable(hook) and not isinstance(source, type):
        result = hook(**options)
        if not isinstance(result, Anatomy):
            raise TargetError("__paramscope_anatomy__ must return a paramscope Anatomy")
        return result
    reader = reader_for(source)
    error = unused_inputs(reader.__name__.removeprefix("paramscope.readers."),
                          [k for k in ("input_size", "inputs") if options.get(k) is not None])  # fmt: skip
    if error is not None:
        raise error
    anatomy: Anatomy = reader.read(source, **options)
    return anatomy
