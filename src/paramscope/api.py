"""The Python API: read anything, then render a summary or an explanation of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import ParamscopeError
from paramscope.readers import read as _read_source

if TYPE_CHECKING:
    from paramscope.planner.result import MemoryPlan

__all__ = ["FORMATS", "STYLES", "Report", "read", "summary", "explain", "memory", "render_memory"]

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
    return _render(doc, format, width, plan.name)


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
