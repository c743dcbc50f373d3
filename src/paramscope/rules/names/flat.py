"""A whole :class:`Anatomy` from the flat tensors a checkpoint reader found."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType

from paramscope.core.anatomy import Anatomy
from paramscope.core.tree import Explanation, FlatTensor, build_tree, check_names
from paramscope.rules.names.explain import explain_name
from paramscope.rules.names.formulas import Shape
from paramscope.rules.names.order import data_flow_key
from paramscope.rules.names.ties import apply_declared_ties, mark_shared, shared_groups

__all__ = ["CHECKPOINT_NOTE", "anatomy_from_flat"]

#: The note file readers add: a checkpoint records tensors, not how training treated them.
CHECKPOINT_NOTE = (
    "A checkpoint does not record which weights were frozen in training: weights are counted "
    "as trainable, running statistics and constants as not."
)


def anatomy_from_flat(
    flat: Iterable[FlatTensor],
    *,
    name: str,
    framework: str,
    source: str = "",
    sep: str = ".",
    explain: Callable[[str, str, Shape | None, frozenset[str]], Explanation] | None = None,
    metadata: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    tied: Mapping[str, str] | None = None,
    tie_reason: str = "",
    sort: bool = False,
) -> Anatomy:
    """Build a whole anatomy from the flat tensors a file reader found.

    Tensors with equal ``key`` are one storage: they are counted once, and each says with
    whom it shares. ``tied`` names ties the file does not store (``{"lm_head.weight":
    "model.embed_tokens.weight"}`` from ``tie_word_embeddings``): a present alias gets its
    target's key; an absent one gets a note.

    Args:
        flat: the tensors in file order.
        name: the model's name (usually the file name).
        framework: the format (``"safetensors"``, ``"gguf"``, ...).
        source: where it was read from.
        sep: separator inside names.
        explain: the explainer (default: :func:`explain_name` with ``sep``).
        metadata: facts read from the file, as strings.
        notes: sentences for the user.
        tied: alias full name -> target full name for ties declared outside the tensors.
        tie_reason: where ``tied`` comes from, for the note (``"tie_word_embeddings: true"``).
        sort: order modules by the usual data flow (embeddings, attention, MLP, final norm,
            head), then by :func:`natural_key`, then ``weight`` before ``bias``, instead of
            file order (safetensors headers are sorted by dtype, not by model).

    Returns:
        The anatomy; every tensor is known, so its totals are complete.

    Example:
        >>> a = anatomy_from_flat([FlatTensor("fc.weight", (2, 3), "float32")], name="m", framework="safetensors")
        >>> a.layers[0].type, a.layers[0].tensors[0].count
        ('Linear', 6)
    """
    tensors = list(flat)
    # Names are checked before they are sorted or split: sorting splits every name.
    check_names(tensors, sep, where=source or None)
    if sort:
        tensors.sort(key=lambda ft: data_flow_key(ft.name, sep))
    tensors, tie_notes = apply_declared_ties(tensors, tied or {}, tie_reason)
    shared = shared_groups(tensors)
    out_notes = [*notes, *tie_notes]
    out_notes += [f"{' and '.join(group)} share one storage (tied weights), counted once." for group in shared.values()]

    def _default(p: str, t: str, s: Shape | None, sib: frozenset[str]) -> Explanation:
        return explain_name(p, t, s, sib, sep=sep)

    layers = mark_shared(build_tree(tensors, sep=sep, explain=explain or _default), shared, sep)
    return Anatomy(
        name=name,
        framework=framework,
        layers=layers,
        source=source,
        metadata=MappingProxyType(dict(metadata or {})),
        notes=tuple(out_notes),
    )
