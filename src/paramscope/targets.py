"""What a CLI target names: a file or folder, or ``script.py:NAME`` / ``package.module:NAME``;
and whether the input options given make sense for it."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from typing import Any

from paramscope.core.errors import ParamscopeError, TargetError
from paramscope.diagnose import missing_path, script_without_name, sibling_hint
from paramscope.readers import unused_inputs

__all__ = ["resolve_target", "check_input_options", "input_notes"]

#: Readers that use ``--input-size``/``--input`` (a forward pass, or ONNX's symbolic dimensions).
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
    except ModuleNotFoundError as e:
        raise _missing(e, path) from None
    finally:
        sys.path.pop(0)
    return module


#: Top-level packages a model script imports, and the paramscope extra that installs each.
_EXTRAS = {"torch": "torch", "transformers": "transformers", "keras": "keras", "h5py": "files"}


def _missing(e: ModuleNotFoundError, where: str) -> ParamscopeError:
    # The user's own code needs a package that is not installed: name the install line.
    from paramscope.core.errors import MissingDependencyError

    package = (e.name or "").split(".")[0]
    if package in _EXTRAS:
        return MissingDependencyError(package, _EXTRAS[package], where)
    if package == "tensorflow":
        return TargetError(
            f"{where} imports tensorflow, which is not installed; paramscope reads Keras 3 models "
            "on the torch or jax backend too: pip install 'paramscope[keras,torch]'"
        )
    return TargetError(f"{where} imports {package or e.name}, which is not installed ({e}); install it, then run again")


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
        if os.path.isfile(target) and target.endswith(".py"):
            # Never run a script the user did not ask to run: list its names from the source text.
            raise TargetError(script_without_name(target))
        return target
    if ":" not in target:
        hub = _hub_snapshot(target)
        if hub is not None:
            return hub
    where, sep, name = target.rpartition(":")
    if not sep or not name.isidentifier():
        raise TargetError(missing_path(target))
    _default_keras_backend()
    if where.endswith(".py"):
        if not os.path.isfile(where):
            raise TargetError(f"no such script: {where}{sibling_hint(where)}")
        module = _load_script(where)
    elif _MODULE.match(where):
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            if e.name and where.startswith(e.name):  # the module itself (or its package) is missing
                raise TargetError(f"cannot import module {where!r}: {e}") from None
            raise _missing(e, where) from None
    else:
        raise TargetError(f"no such file or folder: {target}")
    if not hasattr(module, name):
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:10]
        raise TargetError(f"{where} has no name {name!r}; it defines: {', '.join(public)}")
    obj = getattr(module, name)
    if isinstance(obj, (str, bytes)):
        raise TargetError(
            f"{where}:{name} is a {type(obj).__name__} ({_short(obj)}), not a model; NAME must be a "
            "model or a function with no arguments that returns one (to read a file, pass its path)"
        )
    if callable(obj) and (isinstance(obj, type) or _is_plain_callable(obj)):
        try:
            obj = obj()
        except TypeError as e:
            raise TargetError(
                f"{where}:{name} must be a model or a function that takes no arguments ({e})"
            ) from None
    return obj


def _hub_snapshot(target: str) -> str | None:
    """A hub id's cached snapshot (its folder, or its config when the weights are not there)."""
    from paramscope.readers.hf.hub_cache import looks_like_hub_id, snapshot_folder, snapshot_source

    if not looks_like_hub_id(target):
        return None
    folder = snapshot_folder(target)
    if folder is None:
        return None  # not cached: the error for a missing path says so (diagnose.missing_path)
    source = snapshot_source(folder)
    if source is None:
        repo = target.split("@", 1)[0]
        raise TargetError(f"the cached snapshot of {repo} holds neither weights nor config.json", where=str(folder))
    return str(source)


def _is_plain_callable(obj: Any) -> bool:
    # Models are callable too (keras.Model, nn.Module): call only functions and factories.
    import types

    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))


def _short(value: str | bytes) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _reader_name(source: Any) -> str | None:
    # The reader that will read ``source`` ("torch.module", "keras.archive", ...), or None when
    # none does (reading it will then fail with its own message).
    from paramscope.readers import reader_for

    if callable(getattr(source, "__paramscope_anatomy__", None)):
        return "builder"
    try:
        return reader_for(source).__name__.removeprefix("paramscope.readers.")
    except ParamscopeError:
        return None


def check_input_options(source: Any, options: dict[str, Any]) -> None:
    """Refuse ``--input-size``/``--input`` for a source whose reader would ignore them.

    They are an error, not a warning: an option that silently does nothing makes the user
    believe the shapes and FLOPs shown are for their input.

    Raises:
        ParamscopeError: inputs were given for a Keras model, a checkpoint file or a builder model.

    Example:
        >>> check_input_options(".", {})  # no inputs given: nothing to check
    """
    given = [flag for key, flag in (("input_size", "--input-size"), ("inputs", "--input")) if options.get(key)]
    if not given:
        return
    reader = _reader_name(source)
    if reader is None:
        return
    if reader == "builder":  # its anatomy hook takes options but has no use for inputs
        reader = "keras.builder"
    error = unused_inputs(reader, given)
    if error is not None:
        raise error


def input_notes(source: Any, options: dict[str, Any]) -> tuple[str, ...]:
    """Notes about the inputs for the report: a sequence longer than the config allows.

    The config is a live module's ``.config`` or the ``config.json`` a path names (read as data).

    Example:
        >>> input_notes(".", {"inputs": ["input_ids=int64[1,8]"]})
        ()
    """
    specs_given = options.get("inputs")
    if not specs_given:
        return ()
    from paramscope.core.positions import positions_note
    from paramscope.trace.inputs import parse_input_spec

    config = _config_of(source)
    if config is None:
        return ()
    note = positions_note(config, [parse_input_spec(s) for s in specs_given])
    return (note,) if note else ()


def _config_of(source: Any) -> Any:
    config = getattr(source, "config", None)
    if config is not None and not isinstance(source, (str, os.PathLike)):
        return config
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = os.fspath(source)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not path.endswith(".json") or not os.path.isfile(path) or os.path.getsize(path) > (1 << 24):
        return None
    import json

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
