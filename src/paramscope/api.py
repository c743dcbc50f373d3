"""The Python API: read anything, then render a summary or an explanation of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import ParamscopeError
from paramscope.readers import read as _read_source

__all__ = ["FORMATS", "STYLES", "Report", "read", "summary", "explain", "layout"]

#: Output formats every view supports.
FORMATS = ("text", "markdown", "json", "html")
#: Layouts of the summary view.
STYLES = ("paramscope", "keras2", "keras3")


@dataclass(frozen=True, slots=True)
class Report:
    """Rendered output: prints as itself, shows as HTML in notebooks.

    Attributes:
        text: the rendered text (plain text, Markdown, JSON or HTML, per ``format``).
        format: the format it is in.
        anatomy: what it was rendered from.
        view: the table or document behind a text report, for printing with colours.
    """

    text: str
    format: str
    anatomy: Anatomy
    view: Any = None

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str | None:
        if self.format == "html":
            return self.text
        return None


def read(source: Any, **options: Any) -> Anatomy:
    """Read a model, file or config into an :class:`~paramscope.core.Anatomy`.

    Args:
        source: a live Keras model or ``torch.nn.Module``, a Keras config dict, or a path to a
            file or folder (``.keras``, ``.h5``, ``.json``, ``.safetensors``, ``.onnx``, ``.pt``,
            ``.gguf``...).
        **options: reader options, e.g. ``input_size=(1, 3, 224, 224)`` for PyTorch modules.

    Example:
        >>> from paramscope import keras
        >>> x = keras.Input(shape=(8,))
        >>> m = keras.Model(x, keras.layers.Dense(4)(x))
        >>> from paramscope.analysis import totals
        >>> totals(read(m)).params
        36
    """
    if isinstance(source, Anatomy):
        return source
    return _read_source(source, **options)


def _check(fmt_: str, style: str) -> None:
    if fmt_ not in FORMATS:
        raise ParamscopeError(f"unknown format {fmt_!r}; choose one of {', '.join(FORMATS)}")
    if style not in STYLES:
        raise ParamscopeError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")


def summary(
    source: Any,
    *,
    format: str = "text",
    style: str = "paramscope",
    depth: int | None = None,
    expand: bool = False,
    width: int = 120,
    **options: Any,
) -> Report:
    """One row per layer with its counts, then totals, memory by dtype and notes.

    Args:
        source: anything :func:`read` reads, or an anatomy.
        format: ``"text"``, ``"markdown"``, ``"json"`` or ``"html"``.
        style: ``"paramscope"`` (counts split by role, formulas), ``"keras2"`` (the classic
            layout with ``Connected to``) or ``"keras3"``.
        depth: deepest nesting level shown (``None``: all for paramscope style, 0 for Keras styles).
        expand: one row per repeated block instead of ``x32``.
        width: text width.
        **options: reader options (see :func:`read`).

    Example:
        >>> from paramscope import keras
        >>> x = keras.Input(shape=(8,))
        >>> m = keras.Model(x, keras.layers.Dense(4)(x))
        >>> print(summary(m, style="keras2").text.splitlines()[-3])
        Trainable params: 36
    """
    _check(format, style)
    anatomy = read(source, **options)
    from paramscope.render import keras_styles, summary as summary_view

    if format == "json":
        from paramscope.render.json import render_json

        return Report(render_json(anatomy), format, anatomy)
    if style == "keras2":
        body: Any = keras_styles.render_keras2(anatomy, depth=0 if depth is None else depth)
        if format == "markdown":
            body = f"```\n{body}```\n"
            return Report(body, format, anatomy)
    elif style == "keras3":
        body = keras_styles.keras3_table(anatomy, depth=0 if depth is None else depth)
    else:
        body = summary_view.summary_table(anatomy, depth=depth, expand=expand)
    return Report(_render(body, format, width, anatomy.name), format, anatomy, body)


def explain(
    source: Any, *, layer: str | None = None, format: str = "text", width: int = 120, **options: Any
) -> Report:
    """Every tensor of one layer or all layers: shape, count, formula, role and why.

    Args:
        source: anything :func:`read` reads, or an anatomy.
        layer: a layer's path or name; ``None`` explains every layer.
        format: ``"text"``, ``"markdown"``, ``"json"`` or ``"html"``.
        width: text width.
        **options: reader options (see :func:`read`).

    Example:
        >>> from paramscope import keras
        >>> x = keras.Input(shape=(512,))
        >>> m = keras.Model(x, keras.layers.BatchNormalization(name="bn")(x))
        >>> print(explain(m, layer="bn").text.splitlines()[0])
        bn (BatchNormalization): 2,048 params = 4 x 512  [4 x features]
    """
    _check(format, "paramscope")
    anatomy = read(source, **options)
    if format == "json":
        from paramscope.render.json import render_json, to_dict

        if layer is None:
            return Report(render_json(anatomy), format, anatomy)
        import json

        from paramscope.render.explain import find_layer

        keep = {x.path for x in find_layer(anatomy, layer).walk()}
        doc = to_dict(anatomy)
        doc["layers"] = [x for x in doc["layers"] if x["path"] in keep]
        return Report(json.dumps(doc, indent=2), format, anatomy)
    from paramscope.render.explain import explain_document

    view = explain_document(anatomy, layer=layer)
    return Report(_render(view, format, width, anatomy.name), format, anatomy, view)


def layout(
    source: Any, *, world_sizes: tuple[int, ...] = (), rank: int | None = None, format: str = "text", width: int = 120
) -> Report:
    """How a sharded checkpoint folder is laid out over its ranks, and what other world sizes take.

    Args:
        source: a Distributed Checkpoint folder (or another sharded folder paramscope reads).
        world_sizes: world sizes to project the per-rank bytes to (FSDP2 dim-0 sharding).
        rank: list every slice this rank holds instead of the per-rank table.
        format: ``"text"``, ``"markdown"``, ``"json"`` or ``"html"``.
        width: text width.

    Example:
        >>> print(layout("checkpoint/step-1000", world_sizes=(16,)))  # doctest: +SKIP
    """
    _check(format, "paramscope")
    from paramscope.readers.distributed.layout import rank_layout
    from paramscope.render.layout import layout_json, layout_slices, layout_table

    found = rank_layout(source, world_sizes=world_sizes)
    anatomy = read(source)
    if format == "json":
        return Report(layout_json(found), format, anatomy)
    body = layout_table(found) if rank is None else layout_slices(found, rank)
    return Report(_render(body, format, width, anatomy.name), format, anatomy, body)


def _render(body: Any, format: str, width: int, title: str) -> str:
    if format == "markdown":
        from paramscope.render.markdown import render_markdown

        return render_markdown(body)
    if format == "html":
        from paramscope.render.html import render_html

        return render_html(body, title=title)
    if isinstance(body, str):
        return body
    from paramscope.render.text import render_text

    return render_text(body, width=width)
