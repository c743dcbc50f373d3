"""Fuzzing the limits: generated names, ONNX function call graphs and config sizes either pass
or are refused with a LimitError, and what passes agrees with a brute-force oracle.

- names: :func:`build_tree` either builds a tree whose tensors are exactly the input's (checked
  by walking it) or refuses a name past ``MAX_NAME_CHARS``/``MAX_NAME_PARTS``; never another
  exception, never recursion.
- ONNX functions: a random call graph (possibly with cycles) is counted by
  :func:`check_model`; the count equals a naive recursive expansion when that terminates, and a
  cycle or too deep a chain is refused.
- Hugging Face sizes: :func:`check_sizes` refuses exactly the configs past the layer, expert and
  parameter limits.
"""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

from paramscope.core import limits  # noqa: E402
from paramscope.core.errors import LimitError  # noqa: E402
from paramscope.core.tree import FlatTensor, build_tree  # noqa: E402
from paramscope.readers.hf.sizes import check_sizes  # noqa: E402
from paramscope.readers.onnx.bounds import check_model  # noqa: E402
from paramscope.readers.onnx.proto import OFunction, OGraph, OModel, ONode  # noqa: E402

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

_part = hs.text(alphabet="ab0_", min_size=1, max_size=3)


@FUZZ
@given(hs.lists(hs.tuples(hs.integers(1, limits.MAX_NAME_PARTS + 40), _part), min_size=1, max_size=6))
def test_names_build_or_refuse(specs: list[tuple[int, str]]) -> None:
    names = list(dict.fromkeys(".".join([part] * depth) for depth, part in specs))
    flat = [FlatTensor(n, (1,), "float32") for n in names]
    too_deep = any(n.count(".") + 1 > limits.MAX_NAME_PARTS for n in names)
    try:
        layers = build_tree(flat)
    except LimitError as e:
        assert too_deep and e.limit == "MAX_NAME_PARTS"
        return
    assert not too_deep
    found, stack = 0, list(layers)
    while stack:
        layer = stack.pop()
        found += len(layer.tensors)
        stack.extend(layer.children)
    assert found == len(names)


@FUZZ
@given(hs.integers(limits.MAX_NAME_CHARS - 2, limits.MAX_NAME_CHARS + 2))
def test_name_length_limit_is_exact(length: int) -> None:
    flat = [FlatTensor("w" * length, (1,), "float32")]
    if length > limits.MAX_NAME_CHARS:
        with pytest.raises(LimitError, match="MAX_NAME_CHARS"):
            build_tree(flat)
    else:
        assert build_tree(flat)[0].name == "w" * length


def _naive(fn: str, calls: dict[str, list[str]], depth: int = 0) -> int | None:
    """Layers one call of ``fn`` expands to, by plain recursion; None for a cycle or too deep."""
    if depth >= limits.MAX_ONNX_FUNCTION_DEPTH:
        return None
    total = 0
    for callee in calls[fn]:
        total += 1
        if callee in calls:
            sub = _naive(callee, calls, depth + 1)
            if sub is None:
                return None
            total += sub
    return total


@FUZZ
@given(hs.integers(1, 6).flatmap(lambda n: hs.lists(
    hs.lists(hs.sampled_from([f"f{i}" for i in range(n)] + ["Relu"]), max_size=4), min_size=n, max_size=n)))
def test_onnx_function_expansion_matches_naive_count(bodies: list[list[str]]) -> None:
    calls = {f"f{i}": body for i, body in enumerate(bodies)}
    functions = [OFunction(name=f, domain="local", nodes=[ONode(op_type=c, domain="local" if c != "Relu" else "")
                                                          for c in body]) for f, body in calls.items()]  # fmt: skip
    model = OModel(graph=OGraph(nodes=[ONode(op_type="f0", domain="local")]), functions=functions)
    expected = _naive("f0", calls)
    try:
        got = check_model(model, "m.onnx")
    except LimitError as e:
        assert expected is None or expected + 1 > limits.MAX_ONNX_NODES, (e, expected)
        return
    assert expected is not None and got == expected + 1


@FUZZ
@given(layers=hs.integers(1, 3 * limits.MAX_HF_LAYERS), hidden=hs.integers(1, 10**7),
       experts=hs.integers(1, 2 * limits.MAX_HF_EXPERTS))  # fmt: skip
def test_hf_sizes_refused_exactly_past_the_limits(layers: int, hidden: int, experts: int) -> None:
    doc = {"model_type": "x", "num_hidden_layers": layers, "hidden_size": hidden, "num_local_experts": experts}
    estimate = layers * (12 * hidden**2 + 3 * hidden * experts) + hidden
    past = (
        layers > limits.MAX_HF_LAYERS
        or experts > limits.MAX_HF_EXPERTS
        or layers * experts > limits.MAX_HF_EXPERT_MODULES
        or estimate > limits.MAX_HF_PARAMS
    )
    try:
        assert check_sizes(doc, "config.json") == estimate
    except LimitError:
        assert past
        return
    assert not past
