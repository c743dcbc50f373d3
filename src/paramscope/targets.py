"""What a CLI target names: a file or folder, or ``script.py:NAME`` / ``package.module:NAME``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from typing import Any

from paramscope.core.errors import TargetError

__all__ = ["resolve_target"]

_MODULE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def _default_keras_backend() -> None:
    # Keras 3 looks for TensorFlow unless told otherwise; a user's script that imports keras on a
    # machine with only PyTorch (or JAX) would fail before paramscope sees the model.
    if "KERAS_BACKEND" in os.environ or importlib.util.find_spec("tensorflow") is not None:
        return
    for backend in ("torch", "jax"):
        if importlib.util.find_spec(backend) is not None:
            os.environ["KERAS_BACKEND"] = backend
            return


def _load_script(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("__paramscope_target__", path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot load {path} as a Python script")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return module


def resolve_target(target: str) -> Any:
    """The thing to inspect: a path (returned as is), a cached hub id, or the object named by ``where:NAME``.

    A Hugging Face hub id (``meta-llama/Llama-2-7b-hf``, ``gpt2@main``) that is no local path
    is looked up in the local Hugging Face cache, offline (:mod:`paramscope.readers.hf.hub_cache`).

    ``NAME`` may be a model or a zero-argument callable returning one. Loading a script or
    module runs its code: that is the user's own code, named on purpose. Files to inspect are
    never executed. When ``KERAS_BACKEND`` is unset and TensorFlow is not installed, Keras is
    pointed at PyTorch (or JAX) so that a script importing keras can run.

    Raises:
        TargetError: the file, script, module or name does not exist, or NAME needs arguments.

    Example:
        >>> resolve_target(".")  # an existing path is returned as it is, for the readers
        '.'
    """
    if os.path.exists(target):
        return target
    if ":" not in target:
        hub = _hub_snapshot(target)
        if hub is not None:
            return hub
    where, sep, name = target.rpartition(":")
    if not sep or not name.isidentifier():
        raise TargetError(
            f"no such file or folder: {target} (to name a model in Python code, "
            "write path/to/script.py:NAME or package.module:NAME)"
        )
    _default_keras_backend()
    if where.endswith(".py"):
        if not os.path.isfile(where):
            raise TargetError(f"no such script: {where}")
        module = _load_script(where)
    elif _MODULE.match(where):
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            raise TargetError(f"cannot import module {where!r}: {e}") from None
    else:
        raise TargetError(f"no such file or folder: {target}")
    if not hasattr(module, name):
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:10]
        raise TargetError(f"{where} has no name {name!r}; it defines: {', '.join(public)}")
    obj = getattr(module, name)
    if callable(obj) and (isinstance(obj, type) or _is_plain_callable(obj)):
        try:
            obj = obj()
        except TypeError as e:
            raise TargetError(
                f"{where}:{name} must be a model or a function that takes no arguments ({e})"
            ) from None
    return obj


def _hub_snapshot(target: str) -> str | None:
    """A hub id's cached snapshot folder; a TargetError when it looks like one but is not cached."""
    from paramscope.readers.hf.hub_cache import hub_cache_dir, looks_like_hub_id, snapshot_folder, snapshot_source

    if not looks_like_hub_id(target):
        return None
    repo = target.split("@", 1)[0]
    folder = snapshot_folder(target)
    if folder is not None:
        source = snapshot_source(folder)
        if source is None:
            raise TargetError(f"the cached snapshot of {repo} holds neither weights nor config.json", where=str(folder))
        return str(source)
    raise TargetError(
        f"{target} is no file or folder here, and not in the Hugging Face cache ({hub_cache_dir()}); "
        f"paramscope never downloads: fetch the config (and the shard index) first, e.g. "
        f"huggingface-cli download {repo} config.json model.safetensors.index.json, or pass a local path"
    )


def _is_plain_callable(obj: Any) -> bool:
    # Models are callable too (keras.Model, nn.Module): call only functions and factories.
    import types

    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))
