"""A small pickle machine that rebuilds plain data and nothing else.

Python's own unpickler calls whatever a pickle names, so a checkpoint can run any command
the moment it is loaded. This machine interprets the opcodes itself: dicts, lists, tuples,
sets, numbers, strings, bytes, the memo and persistent ids are rebuilt as ordinary values;
every reference to a global (``GLOBAL``, ``STACK_GLOBAL``) is passed to a ``resolve`` function
that returns an inert marker or refuses; ``REDUCE``, ``NEWOBJ`` and ``BUILD`` on a marker are
passed to ``reduce``, ``newobj`` and ``build``, which rebuild *metadata* (never call anything);
``INST``, ``OBJ`` and the extension registry are refused outright.

Every length is checked against the bytes left before anything is allocated, and the work is
bounded as it happens by a :class:`~paramscope.parsers.pickle_budget.Budget`: opcodes run,
containers and records built, how deep tuples and frozensets nest, and how much hashing dict
keys and set members costs (shared references counted as ``hash`` reaches them, and keys
crafted to share one hash value). Every limit is a one-line
:class:`~paramscope.core.errors.UnsafeFileError` naming it and its value; malformed input is a
:class:`~paramscope.core.errors.CorruptFileError`; nothing from the pickle runs.

The file is long because it holds one small handler per opcode (about 70) beside the machine.
Opcode meanings follow the reference in the CPython source, ``Lib/pickletools.py``.

This file is long (about 570 lines) because it is the pickle machine: one handler per opcode in
a dispatch table; its bounds live in pickle_budget.py.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.parsers.pickle_budget import CONTAINERS, Budget, LimitExceeded, PickleLimits

__all__ = ["Global", "PickleLimits", "scan_pickle", "Scan"]

#: ``struct.Struct`` for each integer format :meth:`_Machine.u` reads.
_INTS: dict[str, struct.Struct] = {}


@dataclass(frozen=True, slots=True)
class Global:
    """An allowed global named by a pickle, kept as a name; it is never imported or called."""

    module: str
    name: str

    @property
    def qualname(self) -> str:
        """``module.name``."""
        return f"{self.module}.{self.name}"


@dataclass(frozen=True, slots=True)
class Scan:
    """The value a pickle builds and the byte offset just after its ``STOP``."""

    value: Any
    end: int


_MARK = object()
#: Called for GLOBAL/STACK_GLOBAL (module, name, offset); returns an inert marker or raises.
Resolve = Callable[[str, str, int], Any]
#: Called for REDUCE (callable marker, args tuple, offset); returns the rebuilt value or raises.
Reduce = Callable[[Any, tuple[Any, ...], int], Any]
#: Called for BUILD (object, state, offset); returns the object to leave on the stack.
Build = Callable[[Any, Any, int], Any]
#: Called for BINPERSID/PERSID (persistent id, offset); returns the object it stands for.
Persistent = Callable[[Any, int], Any]
#: Called for NEWOBJ/NEWOBJ_EX (class marker, args, offset); returns an inert record or raises.
NewObj = Callable[[Any, tuple[Any, ...], int], Any]


def _refuse_newobj(cls: Any, args: tuple[Any, ...], offset: int) -> Any:
    what = cls.qualname if isinstance(cls, Global) else type(cls).__name__
    raise UnsafeFileError(f"the pickle creates an object of {what} (NEWOBJ) at byte {offset}; paramscope refuses it")


def _refuse_persistent(pid: Any, offset: int) -> Any:
    raise CorruptFileError(f"unexpected persistent id {pid!r} at byte {offset}")


class _Machine:
    def __init__(
        self,
        data: bytes | memoryview,
        start: int,
        where: str,
        resolve: Resolve,
        reduce: Reduce,
        build: Build,
        persistent: Persistent,
        limits: PickleLimits,
        newobj: NewObj = _refuse_newobj,
    ) -> None:
        self.buf = memoryview(data)
        self.raw = data if isinstance(data, bytes) else bytes(data)  # for bytes.find in line()
        self.pos = start
        self.where = where
        self.resolve = resolve
        self.reduce = reduce
        self.build = build
        self.persistent = persistent
        self.newobj = newobj
        self.limits = limits
        self.max_items = limits.max_items  # read on every push: one attribute, not two
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.op_at = start
        self.budget = Budget(limits)

    # -- errors and raw reads -------------------------------------------------------------

    def corrupt(self, what: str) -> CorruptFileError:
        return CorruptFileError(
            f"{what} at byte {self.op_at}; the pickle is damaged or not a checkpoint",
            where=self.where,
        )

    def take(self, n: int) -> memoryview:
        if n < 0 or n > len(self.buf) - self.pos:
            raise self.corrupt(
                f"a length of {n} bytes runs past the end ({len(self.buf) - self.pos} bytes left)"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def line(self) -> bytes:
        end = self.raw.find(b"\n", self.pos, self.pos + 4096)
        if end < 0:
            raise self.corrupt("a text argument has no end of line within 4096 bytes")
        out = self.raw[self.pos : end]
        self.pos = end + 1
        return out

    def u(self, fmt: str) -> int:
        # The opcodes' few fixed-width integer formats, compiled once: a DCP metadata of a 70B
        # model with its Adam state runs this 430,000 times.
        packer = _INTS.get(fmt) or _INTS.setdefault(fmt, struct.Struct(fmt))
        if packer.size > len(self.buf) - self.pos:
            raise self.corrupt(
                f"a length of {packer.size} bytes runs past the end ({len(self.buf) - self.pos} bytes left)"
            )
        value = packer.unpack_from(self.buf, self.pos)[0]
        self.pos += packer.size
        return int(value)

    def push(self, value: Any) -> None:
        """Push a value an opcode built (counted against ``max_objects`` if it is a container)."""
        if type(value) in CONTAINERS:
            self.budget.new_object()
        self.push_ref(value)

    def push_ref(self, value: Any) -> None:
        """Push a value that already exists (memo reads, DUP)."""
        stack = self.stack
        if len(stack) + len(self.memo) + len(self.marks) >= self.max_items:
            raise self.corrupt(f"more than {self.max_items} values on the stack and memo")
        stack.append(value)

    def pop(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise self.corrupt("an opcode pops from an empty stack")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise self.corrupt("an opcode reads an empty stack")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self.corrupt("an opcode needs a MARK that is not there")
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def text_int(self, raw: bytes) -> int:
        s = raw.strip().rstrip(b"L")
        if len(s) > self.limits.max_text_digits:
            raise self.corrupt(f"a number written with more than {self.limits.max_text_digits} digits")
        try:
            return int(s)
        except ValueError:
            raise self.corrupt(f"{bytes(s[:40])!r} is not a number") from None

    def long_bytes(self, n: int) -> int:
        if n > self.limits.max_long_bytes:
            raise self.corrupt(f"an integer of {n} bytes (at most {self.limits.max_long_bytes} accepted)")
        return int.from_bytes(self.take(n), "little", signed=True)

    def text(self, raw: memoryview | bytes, encoding: str = "utf-8") -> str:
        try:
            return bytes(raw).decode(encoding, "surrogatepass")
        except UnicodeDecodeError:
            raise self.corrupt("a string that is not valid UTF-8") from None

    def memo_put(self, index: int) -> None:
        if not self.stack:
            raise self.corrupt("a memo store with an empty stack")
        if index not in self.memo and len(self.stack) + len(self.memo) >= self.limits.max_items:
            raise self.corrupt(f"more than {self.limits.max_items} values on the stack and memo")
        self.memo[index] = self.stack[-1]

    def memo_get(self, index: int) -> None:
        if index not in self.memo:
            raise self.corrupt(f"memo entry {index} is read before it is written")
        self.push_ref(self.memo[index])

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> Scan:
        try:
            return self._loop()
        except LimitExceeded as e:
            raise UnsafeFileError(e.message(self.op_at), where=self.where) from None

    def _loop(self) -> Scan:
        # The hot loop: a 70B DCP metadata with its Adam state runs 1.25 million opcodes here.
        # Opcodes are counted in a local and handed to the budget only when it must refuse.
        end = len(self.buf)
        buf = self.buf
        budget = self.budget
        max_opcodes = self.limits.max_opcodes
        count = budget.opcodes
        ops = _OPS
        while True:
            pos = self.pos
            self.op_at = pos
            if pos >= end:
                raise self.corrupt("the pickle ends without STOP")
            count += 1
            if count > max_opcodes:
                budget.opcodes = count - 1
                budget.opcode()  # raises the limit's own message
            op = buf[pos]
            self.pos = pos + 1
            handler = ops.get(op)
            if handler is None:
                raise self.corrupt(f"unknown or unsupported pickle opcode 0x{op:02x}")
            if handler(self):
                if self.marks:
                    raise self.corrupt("STOP inside an open MARK")
                if len(self.stack) != 1:
                    raise self.corrupt(f"STOP with {len(self.stack)} values on the stack")
                budget.opcodes = count
                return Scan(self.stack[0], self.pos)


def _setitems(m: _Machine, target: Any, items: list[Any]) -> None:
    if not isinstance(target, dict):
        raise m.corrupt(f"SETITEM(S) on a {type(target).__name__}, not a dict")
    if len(items) % 2:
        raise m.corrupt("SETITEMS with an odd number of values")
    for i in range(0, len(items), 2):
        key = items[i]
        m.budget.hashing(key)
        try:
            target[key] = items[i + 1]
        except TypeError:
            raise m.corrupt(f"a dict key of type {type(key).__name__} cannot be used") from None


def _op_setitems(m: _Machine) -> None:
    items = m.pop_mark()
    _setitems(m, m.top(), items)


def _op_setitem(m: _Machine) -> None:
    value = m.pop()
    key = m.pop()
    _setitems(m, m.top(), [key, value])


def _op_appends(m: _Machine) -> None:
    items = m.pop_mark()
    target = m.top()
    if not isinstance(target, list):
        raise m.corrupt(f"APPENDS on a {type(target).__name__}, not a list")
    target.extend(items)


def _op_append(m: _Machine) -> None:
    value = m.pop()
    target = m.top()
    if not isinstance(target, list):
        raise m.corrupt(f"APPEND on a {type(target).__name__}, not a list")
    target.append(value)


def _frozen(m: _Machine, items: list[Any]) -> frozenset[Any]:
    for item in items:
        m.budget.hashing(item)
    try:
        out = frozenset(items)
    except TypeError:
        raise m.corrupt("a set member cannot be hashed") from None
    checked: frozenset[Any] = m.budget.nested(out)
    return checked


def _op_additems(m: _Machine) -> None:
    items = m.pop_mark()
    target = m.top()
    if not isinstance(target, set):
        raise m.corrupt(f"ADDITEMS on a {type(target).__name__}, not a set")
    target.update(_frozen(m, items))


def _op_global(m: _Machine) -> None:
    module = m.text(m.line(), "utf-8")
    name = m.text(m.line(), "utf-8")
    m.push(m.resolve(module, name, m.op_at))


def _op_stack_global(m: _Machine) -> None:
    name = m.pop()
    module = m.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise m.corrupt("STACK_GLOBAL needs two strings")
    m.push(m.resolve(module, name, m.op_at))


def _op_reduce(m: _Machine) -> None:
    args = m.pop()
    func = m.pop()
    if not isinstance(args, tuple):
        raise m.corrupt("REDUCE with arguments that are not a tuple")
    m.budget.new_object()
    m.push_ref(m.reduce(func, args, m.op_at))


def _op_build(m: _Machine) -> None:
    state = m.pop()
    obj = m.pop()
    m.push_ref(m.build(obj, state, m.op_at))


def _op_newobj(m: _Machine) -> None:
    args = m.pop()
    cls = m.pop()
    if not isinstance(args, tuple):
        raise m.corrupt("NEWOBJ with arguments that are not a tuple")
    m.push_ref(_call_newobj(m, cls, args))


def _op_newobj_ex(m: _Machine) -> None:
    kwargs = m.pop()
    args = m.pop()
    cls = m.pop()
    if not isinstance(args, tuple) or kwargs != {}:
        _refuse("NEWOBJ_EX (cls.__new__ with keyword arguments)")(m)
    m.push_ref(_call_newobj(m, cls, args))


def _call_newobj(m: _Machine, cls: Any, args: tuple[Any, ...]) -> Any:
    m.budget.new_object()
    try:
        return m.newobj(cls, args, m.op_at)
    except UnsafeFileError as e:
        if e.where:
            raise
        raise UnsafeFileError(e.message, where=m.where) from None


def _refuse(what: str) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        raise UnsafeFileError(
            f"the pickle uses {what} at byte {m.op_at}, which creates objects by running code; "
            "paramscope refuses it and runs nothing",
            where=m.where,
        )

    return op


def _op_inst(m: _Machine) -> None:
    module = m.text(m.line())
    name = m.text(m.line())
    raise UnsafeFileError(
        f"the pickle calls {module}.{name} (INST) at byte {m.op_at}; paramscope refuses to run "
        "code from a file and ran nothing",
        where=m.where,
    )


def _persid(m: _Machine, pid: Any) -> None:
    m.budget.new_object()
    try:
        m.push_ref(m.persistent(pid, m.op_at))
    except CorruptFileError as e:
        if e.where:
            raise
        raise type(e)(e.message, where=m.where) from None


def _tuple(n: int) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        items = [m.pop() for _ in range(n)]
        m.push(m.budget.nested(tuple(reversed(items))))

    return op


def _stop(m: _Machine) -> bool:
    return True


def _mark(m: _Machine) -> None:
    if len(m.stack) + len(m.memo) + len(m.marks) >= m.limits.max_items:
        raise m.corrupt("too many MARKs")
    m.marks.append(len(m.stack))


def _proto(m: _Machine) -> None:
    version = m.u("<B")
    if version > 5:
        raise m.corrupt(f"pickle protocol {version} is unknown")


def _frame(m: _Machine) -> None:
    m.u("<Q")  # frame length: framing only groups opcodes, it changes no value


def _pop(m: _Machine) -> None:
    if m.marks and len(m.stack) == m.marks[-1]:
        m.marks.pop()  # POP on an empty MARK region discards the mark, as CPython does
    else:
        m.pop()


def _dup(m: _Machine) -> None:
    m.push_ref(m.top())


_Handler = Callable[[_Machine], Any]

_OPS: dict[int, _Handler] = {
    ord("."): _stop,
    ord("("): _mark,
    0x80: _proto,
    0x95: _frame,
    ord("0"): _pop,
    ord("1"): lambda m: m.pop_mark(),
    ord("2"): _dup,
    ord("N"): lambda m: m.push(None),
    0x88: lambda m: m.push(True),
    0x89: lambda m: m.push(False),
    ord("I"): lambda m: m.push(_text_int_or_bool(m)),
    ord("J"): lambda m: m.push(m.u("<i")),
    ord("K"): lambda m: m.push(m.u("<B")),
    ord("M"): lambda m: m.push(m.u("<H")),
    ord("L"): lambda m: m.push(m.text_int(m.line())),
    0x8A: lambda m: m.push(m.long_bytes(m.u("<B"))),
    0x8B: lambda m: m.push(m.long_bytes(m.u("<i"))),
    ord("F"): lambda m: m.push(_text_float(m)),
    ord("G"): lambda m: m.push(float(struct.unpack(">d", m.take(8))[0])),
    ord("S"): lambda m: m.push(_text_string(m)),
    ord("T"): lambda m: m.push(bytes(m.take(m.u("<i")))),
    ord("U"): lambda m: m.push(bytes(m.take(m.u("<B")))),
    ord("V"): lambda m: m.push(m.text(m.line(), "raw_unicode_escape")),
    ord("X"): lambda m: m.push(m.text(m.take(m.u("<I")))),
    0x8C: lambda m: m.push(m.text(m.take(m.u("<B")))),
    0x8D: lambda m: m.push(m.text(m.take(m.u("<Q")))),
    ord("B"): lambda m: m.push(bytes(m.take(m.u("<I")))),
    ord("C"): lambda m: m.push(bytes(m.take(m.u("<B")))),
    0x8E: lambda m: m.push(bytes(m.take(m.u("<Q")))),
    0x96: lambda m: m.push(bytearray(m.take(m.u("<Q")))),
    ord("}"): lambda m: m.push({}),
    ord("d"): lambda m: m.push(_dict_from(m, m.pop_mark())),
    ord("s"): _op_setitem,
    ord("u"): _op_setitems,
    ord("]"): lambda m: m.push([]),
    ord("l"): lambda m: m.push(m.pop_mark()),
    ord("a"): _op_append,
    ord("e"): _op_appends,
    ord(")"): lambda m: m.push(()),
    ord("t"): lambda m: m.push(m.budget.nested(tuple(m.pop_mark()))),
    0x85: _tuple(1),
    0x86: _tuple(2),
    0x87: _tuple(3),
    0x8F: lambda m: m.push(set()),
    0x90: _op_additems,
    0x91: lambda m: m.push(_frozen(m, m.pop_mark())),
    ord("g"): lambda m: m.memo_get(m.text_int(m.line())),
    ord("h"): lambda m: m.memo_get(m.u("<B")),
    ord("j"): lambda m: m.memo_get(m.u("<I")),
    ord("p"): lambda m: m.memo_put(m.text_int(m.line())),
    ord("q"): lambda m: m.memo_put(m.u("<B")),
    ord("r"): lambda m: m.memo_put(m.u("<I")),
    0x94: lambda m: m.memo_put(len(m.memo)),
    ord("Q"): lambda m: _persid(m, m.pop()),
    ord("P"): lambda m: _persid(m, m.text(m.line(), "ascii")),
    ord("c"): _op_global,
    0x93: _op_stack_global,
    ord("R"): _op_reduce,
    ord("b"): _op_build,
    ord("i"): _op_inst,
    ord("o"): _refuse("OBJ (calling a class from the stack)"),
    0x81: _op_newobj,
    0x92: _op_newobj_ex,
    0x82: _refuse("EXT1 (the copyreg extension registry)"),
    0x83: _refuse("EXT2 (the copyreg extension registry)"),
    0x84: _refuse("EXT4 (the copyreg extension registry)"),
    0x97: _refuse("NEXT_BUFFER (out-of-band buffers)"),
    0x98: _refuse("READONLY_BUFFER (out-of-band buffers)"),
}


def _text_int_or_bool(m: _Machine) -> int:
    raw = m.line()
    # Protocol 0 spells False and True as INT "00" and "01" (pickletools: "I00\n" is False).
    if raw == b"00":
        return False
    if raw == b"01":
        return True
    return m.text_int(raw)


def _text_float(m: _Machine) -> float:
    raw = m.line()
    try:
        return float(raw)
    except ValueError:
        raise m.corrupt(f"{raw[:40]!r} is not a float") from None


def _text_string(m: _Machine) -> bytes:
    raw = m.line().strip()
    if len(raw) < 2 or raw[:1] != raw[-1:] or raw[:1] not in (b"'", b'"'):
        raise m.corrupt("a quoted string without its quotes")
    import codecs

    try:
        return codecs.escape_decode(raw[1:-1])[0]
    except ValueError:
        raise m.corrupt("a quoted string with a bad escape") from None


def _dict_from(m: _Machine, items: list[Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    _setitems(m, out, items)
    return out


def _no_build(obj: Any, state: Any, offset: int) -> Any:
    raise CorruptFileError(f"BUILD on a {type(obj).__name__} at byte {offset} is not supported")


def scan_pickle(
    data: bytes | memoryview,
    *,
    start: int = 0,
    where: str = "",
    resolve: Resolve,
    reduce: Reduce,
    build: Build = _no_build,
    persistent: Persistent = _refuse_persistent,
    limits: PickleLimits = PickleLimits(),
    newobj: NewObj = _refuse_newobj,
) -> Scan:
    """Interpret one pickle starting at ``start`` without running anything it names.

    Args:
        data: the bytes holding the pickle (more may follow it).
        start: offset of its first opcode.
        where: file and entry, for error messages.
        resolve: turns an allowed ``module.name`` into an inert marker; raises for others.
        reduce: rebuilds ``callable(*args)`` for a marker as metadata; raises for others.
        build: applies ``BUILD`` state to an object as metadata.
        persistent: turns a persistent id (a checkpoint's storage reference) into a value.
        limits: bounds on items and number sizes.
        newobj: turns ``NEWOBJ`` of an allowed class into an inert record; refuses by default.

    Returns:
        The value and the offset after ``STOP``.

    Raises:
        UnsafeFileError: the pickle names a callable that is not allowed.
        CorruptFileError: the pickle is malformed or exceeds a bound.

    Example:
        >>> scan_pickle(b"\\x80\\x02}q\\x00X\\x01\\x00\\x00\\x00aK\\x01s.", resolve=None, reduce=None).value
        {'a': 1}
    """
    machine = _Machine(data, start, where, resolve, reduce, build, persistent, limits, newobj)
    try:
        return machine.run()
    except CorruptFileError as e:  # UnsafeFileError included
        if e.where or not where:
            raise
        raise type(e)(e.message, where=where) from None
    except (struct.error, RecursionError, MemoryError, OverflowError) as e:
        raise machine.corrupt(f"malformed pickle ({type(e).__name__})") from None
