"""Two models compared tensor by tensor: what was added, removed, changed, renamed or tied.

The comparison works on anatomies, so it runs on whatever the readers read: a checkpoint and
the model code, an fp16 safetensors file and its GGUF export, a base model and its fine-tune, a
Keras model and its PyTorch port. Nothing is loaded: only names, shapes, dtypes and roles.

Tensors are matched in three passes, each on what the previous left over:

1. by full name (``layer path`` + ``.`` + ``tensor name``, with Keras's ``/`` read as ``.``);
2. by a canonical name: wrapper prefixes that training code adds are dropped (``module.``
   from DistributedDataParallel, ``_orig_mod.`` from ``torch.compile``,
   ``_fsdp_wrapped_module.``, ``base_model.model.`` from PEFT), GGUF's llama-family names are
   mapped to Hugging Face's (``blk.3.attn_q.weight`` is ``model.layers.3.self_attn.q_proj.weight``),
   and Keras's weight names to PyTorch's (``kernel`` to ``weight``, ``gamma``/``beta`` to
   ``weight``/``bias``, ``moving_mean``/``moving_variance`` to ``running_mean``/``running_var``);
3. by position: the remaining tensors of each side, in model order, are aligned by their kind
   and shape (longest common subsequence), which pairs the layers of a port whose names differ
   (``dense_1.kernel`` and ``fc1.weight``). Such pairs are reported as renamed.

Shapes are compared in PyTorch's layout: a Keras ``Dense`` kernel ``(in, out)`` is the
transpose of ``nn.Linear``'s ``weight`` ``(out, in)``, and a Keras convolution kernel
``(*spatial, in, out)`` is ``(out, in, *spatial)`` in PyTorch; such a pair is the same shape,
with a note. A tensor missing on one side whose storage is shared with a tensor that was
matched (a tied ``lm_head.weight`` that a checkpoint stores once) is reported as tied, and a
buffer the model does not save (PyTorch's non-persistent buffers) as unsaved, not as removed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from paramscope.analysis.totals import Totals, totals
from paramscope.core.anatomy import Anatomy, Role, Shape, Tensor

__all__ = ["Side", "Change", "Diff", "diff", "canonical_name", "flat_tensors", "MAX_ALIGNED_PAIRS"]

#: Bound on the pairs compared when aligning unmatched tensors by position (4,000 x 4,000).
MAX_ALIGNED_PAIRS = 16_000_000

#: Prefixes that wrappers add in front of every name of the model they wrap.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "base_model.model.")

#: GGUF's llama-family tensor names -> Hugging Face's (the names llama.cpp's converter writes;
#: checked against gguf-py's ``TensorNameMap`` in the tests).
_GGUF_TOP = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_GGUF_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GGUF_BLK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")

#: Keras weight names -> PyTorch's, for the same tensor.
_KERAS_TO_TORCH = {
    "kernel": "weight",
    "embeddings": "weight",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a matched pair: what one source says of the tensor."""

    name: str
    shape: Shape | None
    dtype: str
    role: Role
    n_bytes: int | None


@dataclass(frozen=True, slots=True)
class Change:
    """A tensor present on both sides that differs, or was found under another name.

    Attributes:
        a, b: the tensor as each source has it.
        what: the fields that differ (``"shape"``, ``"dtype"``, ``"role"``, ``"bytes"``);
            empty for a pure rename.
        note: how the pair was matched when not by name, or a layout remark (transposed).
    """

    a: Side
    b: Side
    what: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Diff:
    """Everything that differs between two anatomies.

    Attributes:
        a_name, b_name: the two sources.
        added: tensors only in ``b``.
        removed: tensors only in ``a``.
        changed: tensors in both, with a difference (matched by name or canonical name).
        renamed: tensors in both under different names (matched by position), changed or not.
        tied: names present on one side only that share storage with a matched tensor.
        unsaved: names present on one side only that its model does not save (PyTorch's
            non-persistent buffers, such as rotary ``inv_freq``): no checkpoint has them.
        n_same: tensors matched with no difference.
        totals_a, totals_b: totals of each side.
        notes: what the comparison could not do.
    """

    a_name: str
    b_name: str
    added: tuple[Side, ...]
    removed: tuple[Side, ...]
    changed: tuple[Change, ...]
    renamed: tuple[Change, ...]
    tied: tuple[str, ...]
    unsaved: tuple[str, ...]
    n_same: int
    totals_a: Totals
    totals_b: Totals
    notes: tuple[str, ...] = ()

    @property
    def same(self) -> bool:
        """Whether the two hold the same tensors (ties and layout aside)."""
        return not (self.added or self.removed or self.changed or self.renamed)


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    tensor: Tensor
    framework: str


def flat_tensors(anatomy: Anatomy) -> Iterator[tuple[str, Tensor]]:
    """Every tensor with its full dotted name, in model order (shared ones under each name).

    Example:
        >>> from paramscope.core import Anatomy, Layer, Tensor
        >>> a = Anatomy("m", "keras", (Layer("d", "Dense", "enc/d", (Tensor("kernel", (3, 2)),)),))
        >>> [n for n, _ in flat_tensors(a)]
        ['enc.d.kernel']
    """
    for layer in anatomy.walk():
        prefix = layer.path.replace("/", ".")
        for t in layer.tensors:
            # A tensor at the top of a checkpoint (``x``) is read as a layer ``x`` holding ``x``.
            yield (f"{prefix}.{t.name}" if prefix and prefix != t.name else t.name), t


def canonical_name(name: str, framework: str = "") -> str:
    """A name with wrapper prefixes dropped and GGUF and Keras names mapped to PyTorch's.

    Example:
        >>> canonical_name("module.blk.3.attn_q.weight")
        'model.layers.3.self_attn.q_proj.weight'
        >>> canonical_name("dense.kernel", "keras")
        'dense.weight'
    """
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    m = _GGUF_BLK.match(name)
    if m and m.group(2) in _GGUF_BLOCK:
        return f"model.layers.{m.group(1)}.{_GGUF_BLOCK[m.group(2)]}.{m.group(3)}"
    head, dot, last = name.rpartition(".")
    if head in _GGUF_TOP and last in ("weight", "bias"):
        return f"{_GGUF_TOP[head]}.{last}"
    if framework == "keras" and last in _KERAS_TO_TORCH:
        return f"{head}{dot}{_KERAS_TO_TORCH[last]}"
    return name


def _torch_layout(entry: _Entry) -> Shape | None:
    """The shape in PyTorch's layout (Keras kernels reordered)."""
    shape = entry.tensor.shape
    if shape is None or entry.framework != "keras" or entry.name.rpartition(".")[2] != "kernel":
        return shape
    if len(shape) == 2:
        return (shape[1], shape[0])
    if len(shape) >= 3:
        return (shape[-1], shape[-2], *shape[:-2])
    return shape


def _kind(entry: _Entry) -> str:
    last = entry.name.rpartition(".")[2]
    return _KERAS_TO_TORCH.get(last, last) if entry.framework == "keras" else last


def _side(entry: _Entry) -> Side:
    t = entry.tensor
    return Side(entry.name, t.shape, t.dtype, t.role, t.n_bytes)


def _compare(a: _Entry, b: _Entry, note: str = "") -> Change:
    what: list[str] = []
    shape_a, shape_b = _torch_layout(a), _torch_layout(b)
    if shape_a != shape_b:
        what.append("shape")
    elif a.tensor.shape != b.tensor.shape:
        note = "; ".join(x for x in (note, "same tensor, transposed (Keras kernel vs PyTorch weight)") if x)
    if a.tensor.dtype != b.tensor.dtype:
        what.append("dtype")
    ra, rb = a.tensor.role, b.tensor.role
    if ra is not rb and Role.UNKNOWN not in (ra, rb):
        what.append("role")
    if a.tensor.n_bytes != b.tensor.n_bytes:
        what.append("bytes")
    return Change(_side(a), _side(b), tuple(what), note)


def _entries(anatomy: Anatomy) -> list[_Entry]:
    return [_Entry(name, t, anatomy.framework) for name, t in flat_tensors(anatomy)]


def _tie_groups(entries: Sequence[_Entry]) -> dict[str, str]:
    """Name -> key of its storage, for tensors whose storage another name shares."""
    by_key: dict[str, list[str]] = {}
    for e in entries:
        if e.tensor.key:
            by_key.setdefault(e.tensor.key, []).append(e.name)
    return {n: k for k, names in by_key.items() if len(names) > 1 for n in names}


def diff(a: Anatomy, b: Anatomy) -> Diff:
    """Compare two anatomies tensor by tensor.

    Args:
        a: the first model (the "old" side).
        b: the second model (the "new" side).

    Returns:
        A :class:`Diff`; ``diff(a, b).same`` is ``True`` when every tensor matches.

    Example:
        >>> from paramscope.core import Anatomy, Layer, Tensor
        >>> old = Anatomy("a", "torch", (Layer("fc", "Linear", "fc", (Tensor("weight", (4, 8)),)),))
        >>> new = Anatomy("b", "torch", (Layer("fc", "Linear", "fc", (Tensor("weight", (4, 8), "float16"),)),))
        >>> d = diff(old, new)
        >>> d.same, d.changed[0].what
        (False, ('dtype', 'bytes'))
    """
    ea, eb = _entries(a), _entries(b)
    left = {e.name: e for e in ea}
    right = {e.name: e for e in eb}
    changed: list[Change] = []
    renamed: list[Change] = []
    n_same = 0
    matched_a: dict[str, str] = {}

    def record(x: _Entry, y: _Entry, note: str = "", by_position: bool = False) -> None:
        nonlocal n_same
        c = _compare(x, y, note)
        matched_a[x.name] = y.name
        if by_position:
            renamed.append(c)
        elif c.what:
            changed.append(c)
        else:
            n_same += 1
        left.pop(x.name, None)
        right.pop(y.name, None)

    for name in [n for n in left if n in right]:
        record(left[name], right[name])
    canon_b: dict[str, _Entry] = {}
    for e in right.values():
        canon_b.setdefault(canonical_name(e.name, e.framework), e)
    for e in list(left.values()):
        other = canon_b.get(canonical_name(e.name, e.framework))
        if other is not None and other.name in right:
            record(e, other, f"matched as {canonical_name(e.name, e.framework)}")

    # Ties: a name left over whose storage is shared with a matched name is the same tensor.
    tied: list[str] = []
    for entries, rest, matched in ((ea, left, set(matched_a)), (eb, right, set(matched_a.values()))):
        groups = _tie_groups(entries)
        keys_matched = {groups[n] for n in matched if n in groups}
        for name in list(rest):
            if groups.get(name) in keys_matched:
                tied.append(name)
                del rest[name]

    # Non-persistent buffers exist on the live module only; a checkpoint never has them.
    unsaved: list[str] = []
    for rest in (left, right):
        for name in [n for n, e in rest.items() if not e.tensor.persistent]:
            unsaved.append(name)
            del rest[name]

    # Position: align what is left on each side by (kind, shape in PyTorch's layout). The
    # alignment costs up to len(a) x len(b) comparisons, so past a bound it is left out.
    notes: list[str] = []
    rest_a, rest_b = list(left.values()), list(right.values())
    if len(rest_a) * len(rest_b) > MAX_ALIGNED_PAIRS:
        notes.append(
            f"{len(rest_a):,} and {len(rest_b):,} tensors matched by no name; aligning them by "
            f"position was skipped (more than {MAX_ALIGNED_PAIRS:,} pairs to compare)"
        )
    elif rest_a and rest_b:
        sig_a = [(_kind(e), _torch_layout(e)) for e in rest_a]
        sig_b = [(_kind(e), _torch_layout(e)) for e in rest_b]
        matcher = difflib.SequenceMatcher(a=sig_a, b=sig_b, autojunk=False)
        for block in matcher.get_matching_blocks():
            for i in range(block.size):
                record(rest_a[block.a + i], rest_b[block.b + i], "matched by position and shape", True)

    return Diff(
        a_name=a.source or a.name,
        b_name=b.source or b.name,
        added=tuple(_side(e) for e in right.values()),
        removed=tuple(_side(e) for e in left.values()),
        changed=tuple(changed),
        renamed=tuple(renamed),
        tied=tuple(tied),
        unsaved=tuple(unsaved),
        n_same=n_same,
        totals_a=totals(a),
        totals_b=totals(b),
        notes=tuple(notes),
    )
