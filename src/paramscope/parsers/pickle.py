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

Opcode meanings follow the reference in the CPython source, ``Lib/pickletools.py``.

This file is long (about 730 lines) because it is the whole pickle machine: the loop runs the
twenty opcodes that make up nearly all of real pickles inline (a 70B model's Distributed
Checkpoint metadata with its Adam state is 1.25 million opcodes), and every other opcode has a
small handler in a dispatch table; its bounds live in pickle_budget.py.
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
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from


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

    def corrupt_at(self, offset: int, what: str) -> CorruptFileError:
        self.op_at = offset
        return self.corrupt(what)

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
        # The hot loop: a 70B DCP metadata with its Adam state runs 1.25 million opcodes here,
        # so the opcodes that make up nearly all of real pickles (memo reads and writes, small
        # ints, short strings, small tuples, MARK, and NEWOBJ/BUILD/REDUCE/SETITEMS) run inline
        # on locals, most frequent first, and a MEMOIZE right after a value is pushed is taken in
        # the same turn. The rest go through their handlers in _OPS with the machine's state
        # written back first. Opcodes and containers are counted in locals and handed to the
        # budget around each handler. Limits are checked exactly; the stack-and-memo bound every
        # 1,024 opcodes, as each opcode adds at most one value.
        raw = self.raw
        stack = self.stack
        push = stack.append
        pop = stack.pop
        memo = self.memo
        marks = self.marks
        budget = self.budget
        nested = budget.nested
        build = self.build
        reduce = self.reduce
        limits = self.limits
        max_opcodes = limits.max_opcodes
        max_objects = limits.max_objects
        max_items = limits.max_items
        u16 = _U16
        u32 = _U32
        i32 = _I32
        ops = _OPS
        count = budget.opcodes
        next_check = min(max_opcodes, count + 1024)
        objects = budget.objects
        floor = marks[-1] if marks else 0  # the stack may not shrink below the innermost MARK
        pos = self.pos
        at = pos
        try:
            while True:
                at = pos
                count += 1
                if count > next_check:
                    if count > max_opcodes:
                        budget.opcodes = count - 1
                        budget.opcode()  # raises the limit's own message
                    if len(stack) + len(memo) + len(marks) > max_items:
                        raise self.corrupt_at(at, f"more than {max_items} values on the stack and memo")
                    next_check = min(max_opcodes, count + 1024)
                op = raw[pos]  # IndexError past the end: see below
                pos += 1
                if op == 0x94:  # MEMOIZE
                    if not stack:
                        raise self.corrupt_at(at, "a memo store with an empty stack")
                    memo[len(memo)] = stack[-1]
                    continue
                if op == 0x6A:  # LONG_BINGET
                    index = u32(raw, pos)[0]
                    pos += 4
                    value = memo.get(index, _MARK)
                    if value is _MARK:
                        raise self.corrupt_at(at, f"memo entry {index} is read before it is written")
                    push(value)
                    continue
                if op == 0x68:  # BINGET
                    index = raw[pos]
                    pos += 1
                    value = memo.get(index, _MARK)
                    if value is _MARK:
                        raise self.corrupt_at(at, f"memo entry {index} is read before it is written")
                    push(value)
                    continue
                if op == 0x85 or op == 0x86 or op == 0x87:  # TUPLE1, TUPLE2, TUPLE3
                    n = op - 0x84
                    if len(stack) - n < floor:
                        raise self.corrupt_at(at, "an opcode pops from an empty stack")
                    value = tuple(stack[-n:])
                    del stack[-n:]
                    for item in value:
                        if type(item) is tuple or type(item) is frozenset:
                            nested(value)
                            break
                    objects += 1
                elif op == 0x4D:  # BININT2
                    value = u16(raw, pos)[0]
                    pos += 2
                elif op == 0x28:  # MARK
                    marks.append(len(stack))
                    floor = len(stack)
                    continue
                elif op == 0x29:  # EMPTY_TUPLE (a container, counted as the handlers count it)
                    value = ()
                    objects += 1
                elif op == 0x81:  # NEWOBJ
                    if len(stack) - 2 < floor:
                        raise self.corrupt_at(at, "an opcode pops from an empty stack")
                    args = pop()
                    cls = pop()
                    if type(args) is not tuple:
                        raise self.corrupt_at(at, "NEWOBJ with arguments that are not a tuple")
                    objects += 1
                    self.op_at = at
                    value = _call_newobj(self, cls, args)
                elif op == 0x62:  # BUILD
                    if len(stack) - 2 < floor:
                        raise self.corrupt_at(at, "an opcode pops from an empty stack")
                    state = pop()
                    value = build(pop(), state, at)
                elif op == 0x75:  # SETITEMS
                    if not marks:
                        raise self.corrupt_at(at, "an opcode needs a MARK that is not there")
                    mark = marks.pop()
                    floor = marks[-1] if marks else 0
                    items = stack[mark:]
                    del stack[mark:]
                    if not stack:
                        raise self.corrupt_at(at, "an opcode reads an empty stack")
                    self.op_at = at
                    _setitems(self, stack[-1], items)
                    continue
                elif op == 0x7D:  # EMPTY_DICT
                    value = {}
                    objects += 1
                elif op == 0x52:  # REDUCE
                    if len(stack) - 2 < floor:
                        raise self.corrupt_at(at, "an opcode pops from an empty stack")
                    args = pop()
                    func = pop()
                    if type(args) is not tuple:
                        raise self.corrupt_at(at, "REDUCE with arguments that are not a tuple")
                    objects += 1
                    value = reduce(func, args, at)
                elif op == 0x4B:  # BININT1
                    value = raw[pos]
                    pos += 1
                elif op == 0x8C:  # SHORT_BINUNICODE
                    n = raw[pos]
                    pos += 1
                    if len(raw) - pos < n:
                        raise self.corrupt_at(at, f"a length of {n} bytes runs past the end ({len(raw) - pos} bytes left)")
                    try:
                        value = raw[pos : pos + n].decode("utf-8", "surrogatepass")
                    except UnicodeDecodeError:
                        raise self.corrupt_at(at, "a string that is not valid UTF-8") from None
                    pos += n
                elif op == 0x4E:  # NONE
                    value = None
                elif op == 0x4A:  # BININT
                    value = i32(raw, pos)[0]
                    pos += 4
                elif op == 0x89 or op == 0x88:  # NEWFALSE, NEWTRUE
                    value = op == 0x88
                else:
                    handler = ops.get(op)
                    if handler is None:
                        raise self.corrupt_at(at, f"unknown or unsupported pickle opcode 0x{op:02x}")
                    self.pos = pos
                    self.op_at = at
                    budget.opcodes = count
                    budget.objects = objects
                    stopped = handler(self)
                    pos = self.pos
                    objects = budget.objects
                    floor = marks[-1] if marks else 0
                    if stopped:
                        if marks:
                            raise self.corrupt_at(at, "STOP inside an open MARK")
                        if len(stack) != 1:
                            raise self.corrupt_at(at, f"STOP with {len(stack)} values on the stack")
                        budget.opcodes = count
                        return Scan(stack[0], pos)
                    continue
                # An inline opcode built ``value``: count it if it is a new container, push it, and
                # take a MEMOIZE that follows in the same turn (counted as its own opcode).
                if objects > max_objects:
                    budget.objects = objects - 1
                    budget.new_object()  # raises the limit's own message
                push(value)
                if raw[pos] == 0x94:
                    memo[len(memo)] = value
                    pos += 1
                    count += 1
        except (IndexError, struct.error):
            # An inline read of ``raw`` past its end (at most 4 bytes wide): the pickle stops
            # mid-opcode or without STOP. Anything else is not ours to relabel.
            if pos + 4 <= len(raw):
                raise
            raise self.corrupt_at(at, "the pickle ends without STOP (it is cut short)") from None
        except (CorruptFileError, LimitExceeded):
            if self.op_at != at:
                self.op_at = at
            raise
        finally:
            self.pos = pos

def _setitems(m: _Machine, target: Any, items: list[Any]) -> None:
    if not isinstance(target, dict):
        raise m.corrupt(f"SETITEM(S) on a {type(target).__name__}, not a dict")
    if len(items) % 2:
        raise m.corrupt("SETITEMS with an odd number of values")
    budget = m.budget
    hashing = budget.hashing
    for i in range(0, len(items), 2):
        key = items[i]
        if type(key) is str:  # the common key: one value to hash, its hash randomised
            budget.hashed += 1
            if budget.hashed > budget.limits.max_hash_values:
                budget.hashed -= 1
                hashing(key)  # raises the limit's own message
        else:
            hashing(key)
        try:
            target[key] = items[i + 1]
        except TypeError:
            raise m.corrupt(f"a dict key of type {type(key).__name__} cannot be used") from None




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








def _op_newobj_ex(m: _Machine) -> None:
    kwargs = m.pop()
    args = m.pop()
    cls = m.pop()
    if not isinstance(args, tuple) or kwargs != {}:
        _refuse("NEWOBJ_EX (cls.__new__ with keyword arguments)")(m)
    m.budget.new_object()
    m.push_ref(_call_newobj(m, cls, args))


def _call_newobj(m: _Machine, cls: Any, args: tuple[Any, ...]) -> Any:
    """``newobj`` for the record of ``cls(*args)`` (the caller has counted it), its error located."""
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




def _stop(m: _Machine) -> bool:
    return True




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

#: The opcodes the loop does not run inline, each with its handler.
_OPS: dict[int, _Handler] = {
    ord("."): _stop,
    0x80: _proto,
    0x95: _frame,
    ord("0"): _pop,
    ord("1"): lambda m: m.pop_mark(),
    ord("2"): _dup,
    ord("I"): lambda m: m.push(_text_int_or_bool(m)),
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
    0x8D: lambda m: m.push(m.text(m.take(m.u("<Q")))),
    ord("B"): lambda m: m.push(bytes(m.take(m.u("<I")))),
    ord("C"): lambda m: m.push(bytes(m.take(m.u("<B")))),
    0x8E: lambda m: m.push(bytes(m.take(m.u("<Q")))),
    0x96: lambda m: m.push(bytearray(m.take(m.u("<Q")))),
    ord("d"): lambda m: m.push(_dict_from(m, m.pop_mark())),
    ord("s"): _op_setitem,
    ord("]"): lambda m: m.push([]),
    ord("l"): lambda m: m.push(m.pop_mark()),
    ord("a"): _op_append,
    ord("e"): _op_appends,
    ord("t"): lambda m: m.push(m.budget.nested(tuple(m.pop_mark()))),
    0x8F: lambda m: m.push(set()),
    0x90: _op_additems,
    0x91: lambda m: m.push(_frozen(m, m.pop_mark())),
    ord("g"): lambda m: m.memo_get(m.text_int(m.line())),
    ord("p"): lambda m: m.memo_put(m.text_int(m.line())),
    ord("q"): lambda m: m.memo_put(m.u("<B")),
    ord("r"): lambda m: m.memo_put(m.u("<I")),
    ord("Q"): lambda m: _persid(m, m.pop()),
    ord("P"): lambda m: _persid(m, m.text(m.line(), "ascii")),
    ord("c"): _op_global,
    0x93: _op_stack_global,
    ord("i"): _op_inst,
    ord("o"): _refuse("OBJ (calling a class from the stack)"),
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
