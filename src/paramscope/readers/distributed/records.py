"""Objects a distributed checkpoint's pickle names, kept as data: never imported, never built.

DeepSpeed, Megatron-LM and FSDP1 rank files pickle a few of their own classes (DeepSpeed's
config enums, Megatron's ``argparse.Namespace`` and numpy records, FSDP1's ShardedTensor
metadata). Each reader's allow-list turns a name it accepts into a :class:`ClassName`, and a
``NEWOBJ``, ``REDUCE`` or ``BUILD`` on it into a :class:`Record` of the class's name, its
arguments and the state ``BUILD`` gave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClassName", "Record", "MALFORMED"]

#: What a reader raises while walking a loaded value of an unexpected shape (a list where a name
#: goes, a record without its fields, a self-nested dict): the DeepSpeed, Megatron and FSDP1
#: readers catch these and report the folder as malformed, in one line.
MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, OverflowError, MemoryError)


@dataclass(frozen=True, slots=True)
class ClassName:
    """A class a pickle names, by its qualified name (``"deepspeed.runtime.zero.config.X"``)."""

    qualname: str


@dataclass(eq=False)
class Record:
    """An object of a named class, as data: its class, the arguments it was made with, and the
    state ``BUILD`` gave it (a dict for the classes these checkpoints write).

    Example:
        >>> Record("argparse.Namespace", {"tensor_model_parallel_size": 2}).state
        {'tensor_model_parallel_size': 2}
    """

    cls: str
    state: Any = field(default_factory=dict)
    args: tuple[Any, ...] = ()
