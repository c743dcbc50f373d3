"""The Python API: read anything, then render a summary or an explanation of it.

This file is long (about 440 lines) because it holds every public function, one per command
(summary, explain, memory, layout, diff, check); each is short and documented with a runnable
example.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paramscope.core.anatomy import Anatomy, set_html_display, set_table_export
from paramscope.core.errors import ParamscopeError
from paramscope.readers import read as _read_source

if TYPE_CHECKING:
    from paramscope.planner.result import MemoryPlan

__all__ = [
    "FORMATS", "STYLES", "Report", "default_width", "read", "summary", "explain", "diff", "check", "memory",
    "render_memory", "layout",
]

#: Output formats every view supports.
FORMATS = ("text", "markdown", "json", "html")
#: The summary also writes CSV, one line per row.
SUMMARY_FORMATS = (*FORMATS, "csv")
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
        html: the report as an HTML fragment with scoped style (HTML reports; others are
            shown in a notebook as their text in an escaped ``<pre>``).
    """

    text: str
    format: str
    anatomy: Anatomy
    view: Any = None
    html: str = ""

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        """What a notebook shows: one element whose style rules reach nothing outside it."""
        if self.html:
            return self.html
        from paramscope.render.html import pre_fragment

        return pre_fragment(self.text)


def default_width() -> int:
    """The text width when none is given: the terminal's when standard output is one, else
    :data:`paramscope.render.text.DEFAULT_WIDTH` (120), so that pipes, files and tests get
    the same text everywhere."""
    import shutil

    from paramscope.render.text import DEFAULT_WIDTH

    if sys.stdout is not None and sys.stdout.isatty():
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return DEFAULT_WIDTH


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


def _check(fmt_: str, style: str, formats: tuple[str, ...] = FORMATS) -> None:
    if fmt_ not in formats:
        raise ParamscopeError(f"unknown format {fmt_!r}; choose one of {', '.join(formats)}")
    if style not in STYLES:
        raise ParamscopeError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")


def summary(
    source: Any,
    *,
    format: str = "text",
    style: str = "paramscope",
    depth: int | None = None,
    expand: bool = False,
    width: int | None = None,
    columns: Sequence[str] | None = None,
    layer_range: tuple[str, str] | None = None,
    ascii: bool = False,
    **options: Any,
) -> Report:
    """One row per layer with its counts, then totals, memory by dtype and notes.

    Args:
        source: anything :func:`read` reads, or an anatomy.
        format: ``"text"``, ``"markdown"``, ``"json"``, ``"html"`` (the report with a treemap)
            or ``"csv"`` (one line per row).
        style: ``"paramscope"`` (counts split by role, formulas), ``"keras2"`` (the classic
            layout with ``Connected to``) or ``"keras3"``.
        depth: deepest nesting level shown (``None``: all for paramscope style, 0 for Keras styles).
        expand: one row per repeated block instead of ``x32``.
        width: text width (default: the terminal's when printing to one, else 120; see
            :func:`default_width`).
        columns: the paramscope style's columns, in order, from ``shape``, ``params``,
            ``trainable``, ``non_trainable``, ``buffers``, ``bytes``, ``dtype``, ``flops``,
            ``macs``, ``formula`` (default: those with something to show).
        layer_range: ``(FROM, TO)``: only the top-level layers from the first whose name matches
            ``FROM`` to the last matching ``TO`` (regular expressions, as Keras's ``layer_range``).
        ascii: rule text tables with ``-`` instead of box-drawing characters.
        **options: reader options (see :func:`read`).

    Example:
        >>> from paramscope import keras
        >>> x = keras.Input(shape=(8,))
        >>> m = keras.Model(x, keras.layers.Dense(4)(x))
        >>> print(summary(m, style="keras2").text.splitlines()[-3])
        Trainable params: 36
    """
    _check(format, style, SUMMARY_FORMATS)
    anatomy = read(source, **options)
    from paramscope.analysis.view import build_view
    from paramscope.render import keras_styles, summary as summary_view

    if style == "paramscope":
        view = build_view(anatomy, depth=depth, expand=expand, rows=format != "json")
    else:
        view = build_view(anatomy, depth=0 if depth is None else depth, expand=True, rows=format != "json")
    if columns is not None:
        from paramscope.render.summary import COLUMN_KEYS

        unknown = [c for c in columns if c not in COLUMN_KEYS]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], list(COLUMN_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParamscopeError(f"unknown column {unknown[0]!r}{hint}; choose from {', '.join(COLUMN_KEYS)}")
    if layer_range is not None and view.rows:
        from dataclasses import replace

        from paramscope.analysis.layer_range import select_layer_range

        view = replace(view, rows=select_layer_range(view.rows, *layer_range))
    if format == "json":
        from paramscope.render.json import render_json

        return Report(render_json(view), format, anatomy)
    if format == "csv":
        from paramscope.render.records import render_csv

        return Report(render_csv(view), format, anatomy)
    if format == "html" and style == "paramscope":
        from paramscope.analysis.treemap import build_treemap
        from paramscope.render.html_report import render_report_fragment, render_report_page

        fragment = render_report_fragment(view, build_treemap(view))
        return Report(render_report_page(fragment, view.name), format, anatomy, None, fragment)
    if style == "keras2":
        text = keras_styles.render_keras2(view)
        if format == "markdown":
            return Report(f"```\n{text}```\n", format, anatomy)
        body: Any = text
    elif style == "keras3":
        body = keras_styles.keras3_table(view)
    else:
        body = summary_view.summary_table(view, None if columns is None else tuple(columns))
    return _report(body, format, width, view.name, anatomy, ascii)


def explain(
    source: Any, *, layer: str | None = None, format: str = "text", width: int | None = None, **options: Any
) -> Report:
    """Every tensor of one layer or all layers: shape, count, formula, role and why.

    Args:
        source: anything :func:`read` reads, or an anatomy.
        layer: a layer's path or name; ``None`` explains every layer.
        format: ``"text"``, ``"markdown"``, ``"json"`` or ``"html"``.
        width: text width (see :func:`summary`).
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
    from paramscope.analysis.view import build_view

    view = build_view(anatomy, rows=False)
    if format == "json":
        from paramscope.render.json import render_json

        chosen = None if layer is None else view.subtree(view.find(layer))
        return Report(render_json(view, layers=chosen), format, anatomy)
    from paramscope.render.explain import explain_document

    doc = explain_document(view, layer=layer)
    return _report(doc, format, width, view.name, anatomy)


def memory(
    source: Any,
    *,
    train: bool = False,
    batch: int | None = None,
    seq: int | None = None,
    precision: str | None = None,
    optimizer: str = "adamw",
    checkpointing: str = "none",
    shard: str = "none",
    dp: int | None = None,
    tp: int = 1,
    pp: int = 1,
    sequence_parallel: bool = False,
    offload: str = "none",
    device: str | int | None = None,
    attention: str = "flash",
    input_size: Any = None,
    inputs: Any = None,
) -> MemoryPlan:
    """Memory of one device to serve or train a model: parts, moments of a step, peak, fit.

    Args:
        source: anything :func:`read` reads (a ``torch.nn.Module`` with ``input_size`` or
            ``inputs``, a Hugging Face ``config.json``, a Keras model, a checkpoint file).
        train: plan a training step (forward, backward, optimizer step); default inference.
        batch: sequences per device (default: the inputs' first dimension, 1 for configs).
        seq: tokens per sequence for token models; for inference, the KV cache's context.
        precision: ``fp32``, ``fp16``, ``bf16``, ``fp16-mixed`` or ``bf16-mixed`` (default:
            stored dtype for inference, fp32 for training).
        optimizer: ``sgd``, ``sgd-momentum``, ``adam``, ``adamw``, ``adafactor``,
            ``adamw-8bit`` or ``none``.
        checkpointing: ``none``, ``full`` or ``selective`` activation checkpointing.
        shard: ``none``, ``zero1``, ``zero2``, ``zero3`` or ``fsdp``, over ``dp`` devices.
        dp: data-parallel size (needed with ``shard``).
        tp: tensor-parallel size; pp: pipeline stages; sequence_parallel: with ``tp``.
        offload: ``none``, ``optimizer`` or ``params`` (moved to host memory).
        device: a device name (``"h100-80gb"``) or size (``"24GiB"``, bytes) to check the fit.
        attention: ``flash`` (default; what CUDA kernels keep) or ``math`` (L x S matrices kept).
        input_size: PyTorch modules: the input shape; inputs: typed input specs.

    Returns:
        The plan (see :class:`~paramscope.planner.MemoryPlan`); :func:`render_memory` formats it.

    Raises:
        TargetError: an impossible setup, with what to do.

    Example:
        >>> from paramscope import keras
        >>> x = keras.Input(shape=(512,))
        >>> m = keras.Model(x, keras.layers.BatchNormalization()(x))
        >>> plan = memory(m, train=True, optimizer="adam")
        >>> plan.figure("grads").n_bytes, plan.figure("optimizer").n_bytes
        (4096, 8192)
    """
    from paramscope.planner import make_setup, plan_memory

    setup = make_setup(
        train=train, batch=batch, seq=seq, precision=precision, optimizer=optimizer,
        checkpointing=checkpointing, shard=shard, dp=dp, tp=tp, pp=pp,
        sequence_parallel=sequence_parallel, offload=offload, device=device, attention=attention,
    )
    return plan_memory(source, setup, input_size=input_size, inputs=inputs)


def render_memory(plan: MemoryPlan, *, format: str = "text", width: int = 120) -> str:
    """A memory plan as text, Markdown, HTML or the ``paramscope-memory/1`` JSON document.

    Example:
        >>> from paramscope import keras
        >>> x = keras.Input(shape=(8,))
        >>> plan = memory(keras.Model(x, keras.layers.Dense(4)(x)))
        >>> render_memory(plan, format="json").splitlines()[1]
        '  "schema": "paramscope-memory/1",'
    """
    _check(format, "paramscope")
    from paramscope.render import memory as view

    if format == "json":
        return view.render_memory_json(plan)
    doc = view.memory_document(plan)
    if format == "markdown":
        from paramscope.render.markdown import render_markdown

        return render_markdown(doc)
    if format == "html":
        from paramscope.render.html import render_html

        return render_html(doc, title=plan.name)
    from paramscope.render.text import render_text

    return render_text(doc, width=width)


def layout(
    source: Any, *, world_sizes: tuple[int, ...] = (), rank: int | None = None, format: str = "text",
    width: int | None = None,
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
    return _report(body, format, width, anatomy.name, anatomy)


def _report(body: Any, format: str, width: int | None, title: str, anatomy: Anatomy, ascii: bool = False) -> Report:
    if format == "markdown":
        from paramscope.render.markdown import render_markdown

        return Report(render_markdown(body), format, anatomy, body)
    if format == "html":
        from paramscope.render.html import render_html, render_html_fragment

        return Report(render_html(body, title=title), format, anatomy, body, render_html_fragment(body))
    if isinstance(body, str):
        return Report(body, format, anatomy, body)
    from paramscope.render.text import render_text

    return Report(render_text(body, width=width or default_width(), ascii_only=ascii), format, anatomy, body)


def _anatomy_html(anatomy: Anatomy) -> str:
    return summary(anatomy, format="html").html


def _anatomy_frame(anatomy: Anatomy) -> Any:
    from paramscope.analysis.view import build_view
    from paramscope.render.records import to_pandas

    return to_pandas(build_view(anatomy))


set_html_display(_anatomy_html)
set_table_export(_anatomy_frame)


def diff(a: Any, b: Any, **options: Any) -> Any:
    """Compare two sources tensor by tensor (see :mod:`paramscope.analysis.diff`).

    Args:
        a: the first source: anything :func:`read` reads, or an anatomy.
        b: the second source.
        **options: reader options for both (e.g. ``input_size``).

    Returns:
        A :class:`~paramscope.analysis.diff.Diff`: ``added``, ``removed``, ``changed``,
        ``renamed``, ``tied``, totals of each side, and ``same``.

    Example:
        >>> from paramscope import keras
        >>> x = keras.Input(shape=(8,))
        >>> m1 = keras.Model(x, keras.layers.Dense(4, name="d")(x))
        >>> y = keras.Input(shape=(8,))
        >>> m2 = keras.Model(y, keras.layers.Dense(5, name="d")(y))
        >>> d = diff(m1, m2)
        >>> d.same, [c.a.name for c in d.changed]
        (False, ['d.kernel', 'd.bias'])
    """
    from paramscope.analysis.diff import diff as _diff

    return _diff(read(a, **options), read(b, **options))


def check(source: Any, budgets: Any, **options: Any) -> Any:
    """Check a source against budgets (see :mod:`paramscope.analysis.budget`).

    Args:
        source: anything :func:`read` reads, or an anatomy.
        budgets: :class:`~paramscope.analysis.budget.Budget` objects, or a mapping such as
            ``{"max-params": "150M", "max-bytes": "600MiB"}``.
        **options: reader options (e.g. ``input_size`` for FLOPs of a PyTorch module).

    Returns:
        One :class:`~paramscope.analysis.budget.Verdict` per budget; ``.ok`` says if it holds.

    Example:
        >>> from paramscope import keras
        >>> x = keras.Input(shape=(8,))
        >>> m = keras.Model(x, keras.layers.Dense(4)(x))
        >>> [(v.budget.key, v.value, v.ok) for v in check(m, {"max-params": "30"})]
        [('params', 36, False)]
    """
    from collections.abc import Mapping

    from paramscope.analysis.budget import budgets_from_mapping, check_budgets

    if isinstance(budgets, Mapping):
        budgets = budgets_from_mapping(budgets, "budgets")
    return check_budgets(read(source, **options), tuple(budgets))
