"""Specific one-line messages for targets that cannot be read, in place of a generic "not a format".

Everything here looks at names, sizes and Python source text only: a script is parsed with
:mod:`ast`, never run, because the user did not ask to run it.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
from pathlib import Path

__all__ = ["did_you_mean", "script_names", "script_without_name", "missing_path", "sibling_hint", "unreadable_path"]

#: What a folder or file must hold for some reader to accept it (for messages only).
_KNOWN = (
    "Keras .keras/.h5/.json, safetensors, ONNX, PyTorch .pt/.pth/.bin, GGUF, Hugging Face config.json"
)
_MODEL_SUFFIXES = (
    ".keras", ".h5", ".hdf5", ".json", ".safetensors", ".onnx", ".pt", ".pth", ".bin", ".gguf",
)
# Formats users try that paramscope does not read, with what to do instead.
_OTHER_FORMATS = {
    ".pb": "a TensorFlow graph or SavedModel, which paramscope does not read; save the model as .keras",
    ".tflite": "a TensorFlow Lite flatbuffer, which paramscope does not read",
    ".ckpt": "a TensorFlow or Lightning checkpoint; for Lightning, save the model's state_dict as .pt",
    ".msgpack": "a Flax checkpoint, which paramscope does not read; save it as safetensors",
    ".npz": "a NumPy archive, which paramscope does not read; save the weights as safetensors",
}
# A Hugging Face Hub id: "gpt2", "org/name" (letters, digits, '-', '_', '.').
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


def did_you_mean(word: str, choices: list[str] | tuple[str, ...], *, cutoff: float = 0.6) -> str:
    """`` (did you mean X?)`` for the closest of ``choices``, or ``""`` when none is close.

    Example:
        >>> did_you_mean("sumary", ["summary", "explain"])
        ' (did you mean summary?)'
        >>> did_you_mean("zzz", ["summary", "explain"])
        ''
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""


def script_names(path: str | os.PathLike[str]) -> list[str]:
    """Names a script binds at its top level that could be models, the likeliest first.

    The script is parsed, not run. Assignments whose value is a call (``m = Model(...)``) and
    functions that take no arguments are kept; a name or a called function mentioning
    "model" ranks first.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = Path(d, "s.py")
        ...     _ = p.write_text("x = Input(4)\\nnet = Model(x, x)\\nk = 3\\ndef build():\\n    return net\\n")
        ...     script_names(p)
        ['net', 'build', 'x']
    """
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return []
    found: list[tuple[bool, str]] = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            callee = ast.unparse(node.value.func).lower()
            for t in targets:
                if isinstance(t, ast.Name):
                    found.append(("model" in t.id.lower() or "model" in callee or "sequential" in callee, t.id))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            required = len(a.posonlyargs) + len(a.args) - len(a.defaults)
            required += sum(d is None for d in a.kw_defaults)
            if required == 0:
                found.append((True, node.name))
    names = [n for _, n in sorted(found, key=lambda x: not x[0])]  # stable: likeliest first
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


def script_without_name(path: str) -> str:
    """The message for ``paramscope summary script.py`` (no ``:NAME``)."""
    names = script_names(path)
    if not names:
        return (
            f"{path} is a Python script, not a model file: name the model in it as {path}:NAME "
            "(NAME: a model, or a function with no arguments that returns one)"
        )
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return (
        f"{path} is a Python script, not a model file: name the model in it as {path}:NAME, "
        f"e.g. {path}:{names[0]} (it defines {shown}; found by reading the script, which was not run)"
    )


def missing_path(target: str) -> str:
    """The message for a target that is neither a path nor ``where:NAME``."""
    parent = os.path.dirname(os.path.normpath(target))
    # A bare word is more likely a Hub id than a typo of a file name next to it.
    hint = sibling_hint(target) if os.path.isdir(parent) or target.lower().endswith(_MODEL_SUFFIXES) else ""
    if hint:
        return f"no such file or folder: {target}{hint}"
    if _HUB_ID.match(target.split("@", 1)[0]) and not target.lower().endswith(_MODEL_SUFFIXES + (".py",)):
        from paramscope.readers.hf.hub_cache import hub_cache_dir

        repo = target.split("@", 1)[0]
        return (
            f"no such file or folder: {target}, and not in the Hugging Face cache ({hub_cache_dir()}); "
            f"paramscope reads local files and downloads nothing: if {repo!r} is a Hugging Face Hub id, "
            f"fetch its config (and shard index) into the cache first, e.g. hf download {repo} config.json "
            "model.safetensors.index.json"
        )
    return (
        f"no such file or folder: {target} (to name a model in Python code, "
        "write path/to/script.py:NAME or package.module:NAME)"
    )


def sibling_hint(target: str) -> str:
    """`` (did you mean folder/closest?)`` for a typo in the last part of a path, or ``""``.

    Example:
        >>> sibling_hint("/no/such/folder/model.keras")
        ''
    """
    parent, name = os.path.split(os.path.normpath(target))
    try:
        siblings = sorted(os.listdir(parent or "."))
    except OSError:
        return ""
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
    return f" (did you mean {os.path.join(parent, close[0])}?)" if close else ""


def unreadable_path(path: str) -> str | None:
    """A specific reason no reader accepts ``path``, or ``None`` when the generic one is best."""
    p = Path(path)
    if p.is_dir():
        return _unreadable_folder(p)
    try:
        size = p.stat().st_size
    except OSError:
        return None
    if size == 0:
        return f"{path}: the file is empty (0 bytes), so it holds no model; was it saved or downloaded completely?"
    other = _OTHER_FORMATS.get(p.suffix.lower())
    if other:
        return f"{path}: this looks like {other}"
    return None


def _unreadable_folder(folder: Path) -> str:
    try:
        entries = sorted(os.listdir(folder))
    except OSError as e:
        return f"{folder}: cannot list the folder ({e.strerror})"
    if not entries:
        return f"{folder}: the folder is empty; point paramscope at a folder with config.json or checkpoint files, or at a file"
    with_models = [
        e for e in entries
        if (folder / e).is_dir() and any(n.lower().endswith(_MODEL_SUFFIXES) for n in _safe_list(folder / e))
    ]
    if with_models:
        shown = ", ".join(str(folder / e) for e in with_models[:3])
        return f"{folder}: no model files at the top of this folder; its subfolders have some: try {shown}"
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    return (
        f"{folder}: no file here is a format paramscope reads ({_KNOWN}); "
        f"the folder holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: {shown}"
    )


def _safe_list(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []
