"""One ``torch.save`` zip file read with a caller's pickle rules: the rank files of sharded folders.

DeepSpeed and Megatron-LM write ordinary ``torch.save`` archives whose pickles also name a few
of their own classes (a loss scaler, a ZeRO stage enum, ``argparse.Namespace``). The folder
readers pass rules that record those as inert data; this module reads ``data.pkl`` (bounded),
interprets it with :mod:`paramscope.parsers.pickle`, and checks every referenced storage
against the archive's entries, as :mod:`paramscope.readers.torch.checkpoint` does for one file.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.core.files import open_regular
from paramscope.parsers.pickle import scan_pickle
from paramscope.readers.torch.tensor_pickle import TensorRef, TorchPickleRules

__all__ = ["load_torch_file", "tensors_in", "MAX_PICKLE_BYTES"]

#: The most one rank file's data.pkl may inflate to.
MAX_PICKLE_BYTES = 64 * 2**20


def load_torch_file(path: Path, rules: TorchPickleRules) -> Any:
    """The value ``path``'s data pickle builds under ``rules`` (storages land in ``rules.storages``).

    Raises:
        UnsafeFileError: the pickle names something ``rules`` refuse, or an entry inflates past the cap.
        CorruptFileError: not a torch zip archive, or a storage is missing or shorter than declared.
    """
    where = str(path)
    try:
        with open_regular(path) as fh, zipfile.ZipFile(fh) as zf:  # a FIFO rank file must not block
            infos = {i.filename: i for i in zf.infolist()}
            entries = [n for n in infos if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
            if len(entries) != 1:
                raise CorruptFileError(f"the archive holds {len(entries)} data.pkl entries; a torch.save file has one", where=where)
            info = infos[entries[0]]
            if info.flag_bits & 0x1:
                raise CorruptFileError(f"entry {info.filename} is encrypted", where=where)
            with zf.open(info) as f:
                data = f.read(MAX_PICKLE_BYTES + 1)
            if len(data) > MAX_PICKLE_BYTES:
                raise UnsafeFileError(f"entry {info.filename} inflates past {MAX_PICKLE_BYTES} bytes; paramscope stops reading", where=where)
    except zipfile.BadZipFile as e:
        raise CorruptFileError(f"not a torch.save zip archive ({e})", where=where) from None
    except (OSError, EOFError, ValueError, NotImplementedError, zlib.error) as e:
        raise CorruptFileError(f"cannot read the zip archive ({type(e).__name__}: {e})", where=where) from None
    prefix = entries[0][: -len("data.pkl")]
    value = scan_pickle(data, where=f"{where}: {entries[0]}", resolve=rules.resolve, reduce=rules.reduce,
                        build=rules.build, persistent=rules.persistent, newobj=rules.newobj).value  # fmt: skip
    for key, ref in rules.storages.items():
        found = infos.get(f"{prefix}data/{key}")
        if found is None:
            raise CorruptFileError(f"storage {key!r} has no entry {prefix}data/{key}", where=where)
        if ref.n_bytes > found.file_size:
            raise CorruptFileError(f"storage {key!r} declares {ref.n_bytes} bytes but its entry holds {found.file_size}", where=where)
    return value


def tensors_in(value: Any, prefix: str = "", *, lists: bool = True, depth: int = 0) -> Iterator[tuple[str, TensorRef]]:
    """The tensors a loaded rank file's value holds, by dotted path through its dicts (and lists),
    at most 32 containers deep.

    Example:
        >>> list(tensors_in({"a": [1, {"b": None}]}))
        []
    """
    if depth > 32:
        return
    if isinstance(value, TensorRef):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from tensors_in(v, f"{prefix}.{k}" if prefix else str(k), lists=lists, depth=depth + 1)
    elif lists and isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from tensors_in(v, f"{prefix}.{i}" if prefix else str(i), lists=lists, depth=depth + 1)
