"""What one pickle may cost, counted while it is interpreted.

:mod:`paramscope.parsers.pickle` asks a :class:`Budget` before each opcode, each container or
record it builds, each tuple or frozenset it nests, and each dict key or set member it hashes.
Each count has a limit in :class:`PickleLimits`, far above what a real checkpoint needs (its
tensors live outside the pickle), and exceeding one raises :class:`LimitExceeded`, which the
interpreter turns into a one-line :class:`~paramscope.core.errors.UnsafeFileError` naming the
limit, its value and the byte offset.

Hashing is where Python itself does unbounded work on data: ``hash`` of a tuple recurses in C
with no recursion guard (a 300,000-deep tuple kills the process) and does not cache its result,
so a tuple whose members are memo references to one smaller tuple, 40 times over, reaches 2**40
values; and keys crafted to share one hash value make each insertion compare with all the
others. The budget tracks, for every tuple and frozenset that holds another, its depth and how
many values hashing it reaches (shared references counted each time, as ``hash`` counts them),
so these are refused before Python hashes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PickleLimits", "Budget", "LimitExceeded", "CONTAINERS"]

#: Containers counted against ``max_objects`` when an opcode builds one.
CONTAINERS = frozenset({dict, list, tuple, set, frozenset, bytearray})

_WHAT_TO_DO = (
    "a real checkpoint's pickle stays far below it, its tensors being stored outside the pickle; if this "
    "file is genuine, load it only if you trust its author and re-save its state dict with torch.save"
)
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class PickleLimits:
    """Bounds on what one pickle may build; each is far above what a real checkpoint needs.

    A state dict's pickle takes about 32 opcodes and 5 containers per tensor (its data lives in
    other members); a training checkpoint with Adam state about 125 opcodes per parameter tensor.

    Attributes:
        max_items: most values on the stack, the mark stack and the memo together (checked
            every 1,024 opcodes: each opcode adds at most one value).
        max_long_bytes: longest binary integer (``LONG1``/``LONG4``) accepted.
        max_text_digits: longest decimal number written as text accepted.
        max_opcodes: most opcodes run (2,000,000: a 60,000-tensor state dict, or Adam state for
            16,000 parameter tensors; a few seconds of interpretation).
        max_objects: most containers and records built (1,000,000; about 220 MB if all were
            empty sets, the largest empty container).
        max_depth: deepest nesting of tuples and frozensets (torch writes 3 levels).
        max_hash_values: most values reached while hashing dict keys and set members, shared
            references counted each time (a real checkpoint's keys are strings and small ints).
        max_hash_collisions: most distinct keys or members (strings and bytes aside, whose hashes
            are randomised) that may share one hash value with another. Integers that differ by a
            multiple of 2**61 - 1 hash alike, and a dict of n such keys costs n**2 comparisons:
            20,000 of them take seconds, 600,000 (what the opcode limit allows) hours.

    Example:
        >>> PickleLimits().max_opcodes
        2000000
    """

    max_items: int = 20_000_000
    max_long_bytes: int = 1024
    max_text_digits: int = 1000
    max_opcodes: int = 2_000_000
    max_objects: int = 1_000_000
    max_depth: int = 100
    max_hash_values: int = 10_000_000
    max_hash_collisions: int = 64


class LimitExceeded(Exception):
    """A limit was hit; the interpreter adds the byte offset and the file."""

    def __init__(self, what: str, limit: int, unit: str) -> None:
        super().__init__(what)
        self.what, self.limit, self.unit = what, limit, unit

    def message(self, offset: int) -> str:
        """The one-line message, at ``offset``."""
        return (
            f"the pickle {self.what} at byte {offset}, over paramscope's limit of {self.limit:,} {self.unit} "
            f"per pickle; refused, nothing ran ({_WHAT_TO_DO})"
        )


class _Colliding(list[Any]):
    """The different keys that share one hash value (a key itself is never one of these)."""


class Budget:
    """The counts of one pickle's interpretation against its :class:`PickleLimits`.

    Example:
        >>> budget = Budget(PickleLimits(max_depth=2))
        >>> inner = budget.nested(((),))
        >>> budget.nested((inner,))
        Traceback (most recent call last):
        paramscope.parsers.pickle_budget.LimitExceeded: nests tuples or sets 3 deep
    """

    def __init__(self, limits: PickleLimits) -> None:
        self.limits = limits
        self.opcodes = 0
        self.objects = 0
        self.hashed = 0
        #: hash value -> the key seen with it, or the different keys (strings and bytes aside).
        self.by_hash: dict[int, Any] = {}
        #: id -> (tuple or frozenset, nesting depth, values reached by hashing it), for those that
        #: hold another; the entry keeps the object alive, so an id is never reused while listed.
        self.shapes: dict[int, tuple[Any, int, int]] = {}

    def opcode(self) -> None:
        """Count one opcode."""
        self.opcodes += 1
        if self.opcodes > self.limits.max_opcodes:
            raise LimitExceeded(f"runs more than {self.limits.max_opcodes:,} opcodes", self.limits.max_opcodes, "opcodes")

    def new_object(self) -> None:
        """Count one container or record built."""
        self.objects += 1
        if self.objects > self.limits.max_objects:
            raise LimitExceeded(f"builds more than {self.limits.max_objects:,} containers and records",
                                self.limits.max_objects, "objects")  # fmt: skip

    def nested(self, container: Any) -> Any:
        """Record how deep a new tuple or frozenset nests and how many values hashing it reaches;
        refuse nesting past ``max_depth`` (hashing recurses in C, past Python's recursion guard).
        Returns ``container``."""
        depth, reach = 1, 1
        for item in container:
            if type(item) is tuple or type(item) is frozenset:
                known = self.shapes.get(id(item))
                d, r = (known[1], known[2]) if known is not None else (1, 1 + len(item))
                depth = max(depth, d + 1)
                reach += r
            else:
                reach += 1
        if depth > self.limits.max_depth:
            raise LimitExceeded(f"nests tuples or sets {depth} deep", self.limits.max_depth, "levels")
        if depth > 1:
            # Saturated: what matters is only whether it exceeds the hashing budget.
            self.shapes[id(container)] = (container, depth, min(reach, self.limits.max_hash_values + 1))
        return container

    def hashing(self, key: Any) -> None:
        """Count hashing ``key`` (a dict key or set member) before Python does it."""
        if type(key) is tuple or type(key) is frozenset:
            known = self.shapes.get(id(key))
            self.hashed += known[2] if known is not None else 1 + len(key)
        else:
            self.hashed += 1
        if self.hashed > self.limits.max_hash_values:
            raise LimitExceeded(
                f"hashes more than {self.limits.max_hash_values:,} values for its dict keys and set members "
                "(shared references reached again and again: a billion-laughs pickle)",
                self.limits.max_hash_values, "values",
            )  # fmt: skip
        if type(key) is not str and type(key) is not bytes:
            self._collisions(key)

    def _collisions(self, key: Any) -> None:
        try:
            h = hash(key)  # bounded: ``hashing`` has counted what it reaches
        except TypeError:
            return  # the insertion itself reports an unhashable key
        known = self.by_hash.get(h, _ABSENT)
        if known is _ABSENT:
            self.by_hash[h] = key
            return
        distinct = known if type(known) is _Colliding else _Colliding([known])
        if any(k is key or k == key for k in distinct):
            return
        distinct.append(key)
        self.by_hash[h] = distinct
        if len(distinct) > self.limits.max_hash_collisions + 1:
            raise LimitExceeded(
                f"has more than {self.limits.max_hash_collisions:,} different dict keys or set members sharing one "
                "hash value with another (a hash-collision attack: each would be compared with all the others)",
                self.limits.max_hash_collisions, "collisions",
            )  # fmt: skip
