"""The Keras config engine: a model's JSON config (``model.to_json()``) to an anatomy.

Nothing here imports Keras. The config is walked as data: Functional models through their
``inbound_nodes`` (each input tensor records its producer in ``keras_history`` and, in Keras 3,
its ``shape``), Sequential models layer after layer, nested models recursively, each layer
explained by its rule (:mod:`paramscope.rules.keras`). Lambda functions and custom classes
are never run or imported. The public face is :func:`anatomy_from_config`,
:func:`explain_layer` and :class:`StoredWeight`.

Example:
    >>> cfg = {"class_name": "Dense", "config": {"name": "d", "units": 2},
    ...        "build_config": {"input_shape": [None, 3]}}
    >>> anatomy_from_config(cfg).layers[0].tensors[0].shape
    (3, 2)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import CorruptFileError, ModelError
from paramscope.rules.keras.configs import entry_name, is_model_entry
from paramscope.readers.keras.engine.entries import (
    FROZEN_PARENT_WHY,
    Built,
    Context,
    StoredWeight,
    StoredWeights,
    explain_entry,
    explain_layer,
)
from paramscope.rules.keras.flops import sum_compute
from paramscope.readers.keras.engine.models import functional_layers, model_layers, sequential_layers
from paramscope.rules.keras.policy import Policy, parse_policy

__all__ = ["StoredWeight", "StoredWeights", "Policy", "anatomy_from_config", "explain_layer"]


def _root_entry(config: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    if not isinstance(config, Mapping) or not isinstance(config.get("class_name"), str) or not isinstance(
        config.get("config"), Mapping
    ):
        raise CorruptFileError(
            "not a Keras config: expected an object with 'class_name' and 'config' "
            "(what model.to_json() writes)",
            where=where or None,
        )
    return config


def anatomy_from_config(
    config: Mapping[str, Any],
    *,
    source: str = "",
    stored_weights: StoredWeights | None = None,
) -> Anatomy:
    """The anatomy of a Keras model or layer described by its config.

    Args:
        config: what ``model.to_json()`` gives, parsed (``{"class_name", "config", ...}``),
            for a Functional or Sequential model or a single layer.
        source: where the config came from, used in messages and ``Anatomy.source``.
        stored_weights: for each layer path (``"dense"``, ``"encoder/dense_1"``), the weights a
            saved file holds for it, in Keras's save order. Rule-derived shapes are checked
            against them; layers without a rule take their tensors from them.

    Returns:
        The anatomy; what ``keras.models.model_from_json`` would build.

    Raises:
        CorruptFileError: the config is not a Keras config, refers to missing layers, or
            disagrees with ``stored_weights``.
        ModelError: the graph has a cycle or a layer's config cannot be sized.

    Example:
        >>> cfg = {"class_name": "BatchNormalization", "config": {"name": "bn"},
        ...        "build_config": {"input_shape": [None, 512]}}
        >>> sum(t.count or 0 for t in anatomy_from_config(cfg).layers[0].tensors)
        2048
    """
    try:
        return _anatomy(config, source, stored_weights)
    except RecursionError:
        raise ModelError(
            "models are nested too deeply to walk (past Python's recursion limit); real models "
            "nest a few levels, so the config is refused as corrupt or hostile",
            where=source or None,
        ) from None


def _anatomy(config: Mapping[str, Any], source: str, stored_weights: StoredWeights | None) -> Anatomy:
    root = _root_entry(config, source)
    ctx = Context(stored_weights or {}, source, model_layers)
    metadata: dict[str, str] = {}
    for key in ("keras_version", "backend"):
        if isinstance(config.get(key), str):
            metadata[key] = config[key]
    inner = root["config"]
    name = entry_name(root)
    try:
        is_model = is_model_entry(root)
    except CorruptFileError as e:
        raise CorruptFileError(e.message, where=source or None) from None
    if is_model:
        frozen = FROZEN_PARENT_WHY if inner.get("trainable") is False else ""
        policy = parse_policy(inner.get("dtype"))
        if root["class_name"] == "Sequential":
            built = sequential_layers(root, "", frozen, policy, ctx, ())
        else:
            built = functional_layers(inner, "", frozen, policy, ctx)
        metadata["model_class"] = root["class_name"]
    else:
        layer, outs = explain_entry(root, (), "", "", parse_policy(None), ctx)
        built = Built((layer,), layer.input_shapes or (), outs)
    notes = list(ctx.notes)
    unknown: dict[str, int] = {}
    for layer in (x for top in built.layers for x in top.walk()):
        if not layer.known:
            unknown[layer.type] = unknown.get(layer.type, 0) + 1
    if unknown:
        kinds = ", ".join(f"{t} x{n}" if n > 1 else t for t, n in unknown.items())
        notes.append(
            f"{sum(unknown.values())} layer(s) could not be explained ({kinds}), so the totals "
            "are incomplete: what such a layer holds is counted only when a weights file "
            "lists it, and even then whether it is trainable is not known"
        )
    paths_by_name: dict[str, list[str]] = {}
    for top in built.layers:
        for sub in top.walk():
            if sub.tensors:
                paths_by_name.setdefault(sub.name, []).append(sub.path)
    for lname, paths in paths_by_name.items():
        if len(paths) > 1:
            notes.append(
                f"layer {lname!r} appears in several sub-models ({', '.join(paths)}): in the saved "
                "model it was probably one layer shared by them, but a config cannot say so and "
                "keras.models.model_from_json builds one copy per sub-model, which is what is "
                "counted here; Keras's own summary of the original model lists the shared "
                "weights in each sub-model's row, so its rows add up to more than its total"
            )
    compute = sum_compute([layer.compute for layer in built.layers])
    if compute is not None and compute.flops is not None:
        notes.append(
            "FLOPs are for one inference pass of one sample (batch 1); the elementwise work of "
            "Keras layers (bias, activations, normalisation, pooling) is not costed"
        )
    return Anatomy(
        name=name,
        framework="keras",
        layers=built.layers,
        source=source,
        inputs=tuple(s for s in built.inputs if s is not None),
        outputs=tuple(s for s in built.outputs if s is not None),
        metadata=metadata,
        notes=tuple(notes),
        compute=compute,
    )
