"""Fuzzing the pickle interpreter's limits against CPython's pickler as the oracle.

Hypothesis builds plain values whose containers share references (a DAG, as a billion-laughs
pickle does), CPython's ``pickle.dumps`` writes them with every protocol, and the interpreter
must rebuild exactly the value ``pickle.loads`` would, or refuse with a one-line
:class:`UnsafeFileError` that names the limit. The opcode limit is checked to the opcode,
against ``pickletools``' own count. No deadlines: timing is not behaviour.
"""

from __future__ import annotations

import pickle
import pickletools
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

from paramscope.core.errors import ParamscopeError, UnsafeFileError  # noqa: E402
from paramscope.parsers.pickle import PickleLimits, scan_pickle  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

_SCALARS = hs.one_of(hs.none(), hs.booleans(), hs.integers(-(2**70), 2**70), hs.text(max_size=8),
                     hs.binary(max_size=8), hs.floats(allow_nan=False))  # fmt: skip


@hs.composite
def shared_values(draw: Any) -> Any:
    """A value built bottom-up where each container picks its members from everything built so far,
    so one object is often reached along many paths (up to 2**steps)."""
    pool: list[Any] = draw(hs.lists(_SCALARS, min_size=1, max_size=4))
    hashable: list[Any] = list(pool)
    for _ in range(draw(hs.integers(1, 24))):
        kind = draw(hs.sampled_from(["list", "tuple", "dict", "frozenset", "set"]))
        picks = draw(hs.lists(hs.integers(0, len(pool) - 1), max_size=3))
        members = [pool[i] for i in picks]
        if kind == "list":
            pool.append(members)
        elif kind == "tuple":
            made = tuple(members)
            pool.append(made)
            if all(_hashable(m) for m in members):
                hashable.append(made)
        else:
            keys = [hashable[draw(hs.integers(0, len(hashable) - 1))] for _ in picks]
            if kind == "dict":
                pool.append(dict(zip(keys, members)))
            else:
                made_set = frozenset(keys) if kind == "frozenset" else set(keys)
                pool.append(made_set)
                if kind == "frozenset":
                    hashable.append(made_set)
    return pool[-1]


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _same(a: Any, b: Any, seen: set[tuple[int, int]]) -> bool:
    """Structural equality that visits each pair of shared objects once (== would expand a DAG)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        if (id(a), id(b)) in seen:
            return True
        seen.add((id(a), id(b)))
        return len(a) == len(b) and all(_same(x, y, seen) for x, y in zip(a, b))
    if isinstance(a, dict):
        if (id(a), id(b)) in seen:
            return True
        seen.add((id(a), id(b)))
        return list(a) == list(b) and all(_same(a[k], b[k], seen) for k in a)
    return bool(a == b)


def _scan(data: bytes, limits: PickleLimits = PickleLimits()) -> Any:
    return scan_pickle(data, where="f.pkl", resolve=_resolve, reduce=_reduce, limits=limits).value


#: What protocols 0-2 call to rebuild sets and bytes: the only globals a plain value needs.
_BUILDERS = {"set": set, "frozenset": frozenset, "bytes": bytes, "encode": lambda s, enc: s.encode(enc)}


def _resolve(module: str, name: str, offset: int) -> Any:
    if module in ("builtins", "__builtin__", "_codecs") and name in _BUILDERS:
        return name
    raise UnsafeFileError(f"{module}.{name} at byte {offset}")


def _reduce(func: Any, args: tuple[Any, ...], offset: int) -> Any:
    return _BUILDERS[func](*args)


@FUZZ
@given(value=shared_values(), protocol=hs.integers(0, pickle.HIGHEST_PROTOCOL))
def test_rebuilds_what_pickle_loads_rebuilds(value: Any, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    try:
        ours = _scan(data)
    except UnsafeFileError as e:
        assert "limit of" in e.message and "\n" not in str(e)  # only a limit may refuse a real pickle
        return
    assert _same(ours, pickle.loads(data), set())


@FUZZ
@given(value=shared_values(), protocol=hs.integers(2, pickle.HIGHEST_PROTOCOL))
def test_opcode_limit_is_exact(value: Any, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    n_ops = sum(1 for _ in pickletools.genops(data))
    try:
        _scan(data, PickleLimits(max_opcodes=n_ops))
    except UnsafeFileError as e:
        assert "opcodes" not in e.message  # another limit (hashing a DAG) may refuse first
        return
    with pytest.raises(UnsafeFileError, match=f"runs more than {n_ops - 1:,} opcodes"):
        _scan(data, PickleLimits(max_opcodes=n_ops - 1))


@FUZZ
@given(value=shared_values(), protocol=hs.integers(0, pickle.HIGHEST_PROTOCOL),
       objects=hs.integers(1, 40), depth=hs.integers(1, 6), hashed=hs.integers(1, 200))  # fmt: skip
def test_small_limits_refuse_with_their_own_message(value: Any, protocol: int, objects: int, depth: int, hashed: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    limits = PickleLimits(max_objects=objects, max_depth=depth, max_hash_values=hashed)
    try:
        ours = _scan(data, limits)
    except ParamscopeError as e:
        assert isinstance(e, UnsafeFileError), e
        units = {"objects": objects, "levels": depth, "values": hashed}
        assert any(f"limit of {v:,} {unit}" in e.message for unit, v in units.items()), e.message
        return
    assert _same(ours, pickle.loads(data), set())


@FUZZ
@given(depth=hs.integers(1, 300), limit=hs.integers(1, 300), as_key=hs.booleans())
def test_nesting_limit_is_exact(depth: int, limit: int, as_key: bool) -> None:
    value: Any = ()
    for _ in range(depth - 1):
        value = (value,)
    data = pickle.dumps({value: 1} if as_key else frozenset([value]), protocol=4)
    # Hashing a tuple of depth d reaches d values; frozenset([t]) nests one more level.
    levels = depth + (0 if as_key else 1)
    if levels <= limit:
        _scan(data, PickleLimits(max_depth=limit))
    else:
        with pytest.raises(UnsafeFileError, match=f"limit of {limit:,} levels"):
            _scan(data, PickleLimits(max_depth=limit))


@FUZZ
@given(value=shared_values(), protocol=hs.integers(0, pickle.HIGHEST_PROTOCOL), cut=hs.floats(0, 1))
def test_cut_short_pickles_end_in_one_paramscope_error(value: Any, protocol: int, cut: float) -> None:
    # Every prefix of a real pickle lacks its STOP: pickle.loads fails on it, and the interpreter
    # must refuse it with its own error, wherever the cut falls (mid-opcode or between opcodes).
    data = pickle.dumps(value, protocol=protocol)
    prefix = data[: int(cut * (len(data) - 1))]
    with pytest.raises(Exception) as theirs:
        pickle.loads(prefix)
    assert not isinstance(theirs.value, ParamscopeError)
    with pytest.raises(ParamscopeError) as ours:
        _scan(prefix)
    assert "\n" not in str(ours.value)


@FUZZ
@given(value=shared_values(), protocol=hs.integers(0, pickle.HIGHEST_PROTOCOL), at=hs.floats(0, 1),
       byte=hs.integers(0, 255))  # fmt: skip
def test_mutated_pickles_rebuild_or_end_in_one_paramscope_error(value: Any, protocol: int, at: float, byte: int) -> None:
    # A byte changed anywhere: the interpreter rebuilds some value or refuses in one line; no other
    # exception escapes (pickle.loads is not run on these: a changed byte may name any global).
    data = bytearray(pickle.dumps(value, protocol=protocol))
    data[int(at * (len(data) - 1))] = byte
    try:
        _scan(bytes(data))
    except ParamscopeError as e:
        assert "\n" not in str(e)
