"""Reader for Hugging Face ``config.json`` files: the model built on the meta device.

A config alone fixes every tensor shape of a ``transformers`` model. The reader builds the
model on PyTorch's meta device (shapes and dtypes, no storage, no weights downloaded) and
hands it to the live-module reader, which lists the tensors and, given inputs, runs a forward
pass on meta for output shapes and FLOPs.

Safety: the JSON is read with :func:`~paramscope.core.strict_json.loads_strict` under a size
cap, only classes that ship with ``transformers`` are used (``trust_remote_code`` is never
set, nothing is downloaded), and a config that asks for custom code is refused when
``transformers`` has no built-in class for its ``model_type``.

Default inputs when none are given (batch 1): ``input_ids=int64[1,128]`` for text models
(fewer tokens when the model has fewer positions; plus ``decoder_input_ids`` for
encoder-decoders), ``pixel_values=float[1,C,S,S]`` with ``S = image_size`` and
``C = num_channels`` for vision models, both for CLIP-style models, and
``input_features=float[1,num_mel_bins,2 x max_source_positions]`` for Whisper-style speech
models. Any other model is read without a forward pass (tensors only), with a note.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import (
    CorruptFileError,
    MissingDependencyError,
    ModelError,
    ParamscopeError,
    TargetError,
)
from paramscope.core.files import folder_member, open_regular
from paramscope.core.strict_json import loads_strict
from paramscope.readers.hf.sizes import check_sizes

__all__ = ["can_read", "read", "MAX_CONFIG_BYTES", "DEFAULT_SEQ_LEN"]

#: Largest config.json read; real ones are a few kilobytes.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
#: Tokens in the default text input.
DEFAULT_SEQ_LEN = 128
#: A folder holding any of these has weights: it belongs to the checkpoint readers.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
_WEIGHT_INDEX_SUFFIXES = (".safetensors.index.json", ".bin.index.json", ".pt.index.json")
#: Keys the reader decides itself: no remote code, and the attention and experts kernels that
#: can run on the meta device (a config asking for flash attention would otherwise fail to build).
_NOT_PASSED = frozenset(
    {"model_type", "trust_remote_code", "attn_implementation", "_attn_implementation",
     "experts_implementation", "_experts_implementation"}
)


def _config_path(source: Any) -> str | None:
    """The config.json a path stands for, or ``None`` when it is not this reader's."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = os.fspath(source)
    if os.path.isdir(path):
        try:
            names = os.listdir(path)
        except OSError:
            return None
        if any(n.endswith(_WEIGHT_SUFFIXES + _WEIGHT_INDEX_SUFFIXES) for n in names):
            return None
        if "config.json" not in names:
            return None
        try:  # the folder's rule: config.json inside it and a regular file
            return str(folder_member(path, "config.json", what="config file", noun="the model's folder"))
        except ParamscopeError:
            return os.path.join(path, "config.json")  # claimed, so that reading it says why not
    if path.endswith(".json") and os.path.isfile(path):
        return path
    return None


def _read_json(path: str) -> Any:
    with open_regular(path) as f:  # a FIFO named config.json would block a plain open forever
        size = os.fstat(f.fileno()).st_size
        if size > MAX_CONFIG_BYTES:
            raise CorruptFileError(
                f"{size:,} bytes is too large for a model config (limit {MAX_CONFIG_BYTES:,})", where=path
            )
        return loads_strict(f.read(MAX_CONFIG_BYTES + 1), where=path, max_bytes=MAX_CONFIG_BYTES)


def _is_hf_config(doc: Any) -> bool:
    # Keras configs name a class at the top ("class_name"); Hugging Face configs never do.
    return isinstance(doc, dict) and isinstance(doc.get("model_type"), str) and "class_name" not in doc


def _hf_config_object(source: Any) -> bool:
    import sys

    tf = sys.modules.get("transformers")
    base = getattr(tf, "PretrainedConfig", None) if tf is not None else None
    return base is not None and isinstance(source, base)


def can_read(source: Any) -> bool:
    """Whether ``source`` is a Hugging Face config: a ``config.json`` (or a folder holding one
    and no weights), a config dict with ``model_type``, or a ``transformers`` config object.

    Example:
        >>> can_read({"model_type": "gpt2", "n_layer": 2})
        True
    """
    if isinstance(source, Mapping):
        return _is_hf_config(dict(source))
    if _hf_config_object(source):
        return True
    path = _config_path(source)
    if path is None:
        return False
    try:
        return _is_hf_config(_read_json(path))
    except ParamscopeError:
        # A broken file named config.json is claimed, so that reading it says what is wrong.
        return os.path.basename(path) == "config.json"
    except OSError:
        return False


def _transformers() -> Any:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        package = "torch" if getattr(e, "name", "") == "torch" else "transformers"
        raise MissingDependencyError(package, "transformers", "Reading a Hugging Face config") from None
    return transformers


@contextmanager
def _quiet(tf: Any) -> Iterator[None]:
    """transformers' own warnings about a config (token ids, defaults) are not the reader's output."""
    logging = tf.utils.logging
    old = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(old)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _build_config(tf: Any, doc: dict[str, Any], where: str) -> Any:
    model_type = doc["model_type"]
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        if "auto_map" in doc:
            raise ModelError(
                f"model_type {model_type!r} needs the model's own code (auto_map), which "
                "paramscope never runs; only architectures built into transformers can be read",
                where=where,
            )
        raise ModelError(
            f"model_type {model_type!r} is not known to transformers {tf.__version__}; "
            "check the name, or upgrade transformers",
            where=where,
        )
    kwargs = {k: v for k, v in doc.items() if k not in _NOT_PASSED}
    try:
        return tf.AutoConfig.for_model(model_type, **kwargs)
    except Exception as e:  # transformers validates fields with several exception types
        raise ModelError(
            f"invalid {model_type} config: {type(e).__name__}: {_one_line(e)}", where=where
        ) from None


def _model_class(tf: Any, config: Any) -> tuple[Any, str]:
    """The class to build and the note on how it was chosen."""
    for arch in getattr(config, "architectures", None) or ():
        if not isinstance(arch, str) or not arch.isidentifier():
            continue
        try:
            cls = getattr(tf, arch, None)
        except (ImportError, AttributeError, RuntimeError):
            cls = None
        if isinstance(cls, type) and issubclass(cls, tf.PreTrainedModel):
            return cls, ""
        return tf.AutoModel, f"Architecture {arch!r} is not in transformers; built the base model."
    return tf.AutoModel, "No architectures in the config; built the base model (AutoModel)."


def _build_model(tf: Any, cls: Any, config: Any, where: str, **how: str) -> Any:
    """The model on the meta device.

    Mixture-of-experts layers use transformers' ``batched_mm`` kernel (see
    :mod:`paramscope.trace.moe`, shared with the live reader): the default ``grouped_mm`` has a
    meta implementation for bfloat16 only, and both do the same products (each token times its
    top-k experts), so shapes and FLOPs are those of the default.
    """
    import torch

    from paramscope.trace.moe import PASS_EXPERTS

    try:
        with torch.device("meta"):
            if cls is tf.AutoModel:
                return cls.from_config(config, experts_implementation=PASS_EXPERTS, **how)
            return cls._from_config(config, experts_implementation=PASS_EXPERTS, **how)
    except Exception as e:  # transformers raises many types for inconsistent configs
        raise ModelError(
            f"transformers could not build {getattr(cls, '__name__', cls)} from this config: "
            f"{type(e).__name__}: {_one_line(e)}",
            where=where,
        ) from None


def _attn(config: Any) -> str:
    return str(getattr(config, "_attn_implementation", "") or "")


def _positions(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_target_positions"):
        n = getattr(config, name, None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def default_inputs(model: Any, config: Any) -> tuple[list[str], str]:
    """Input specs for a forward pass at batch 1, and a sentence saying what they are.

    Returns ``([], reason)`` when no default is safe to guess.
    """
    import torch

    names: dict[Any, str] = {torch.bfloat16: "bfloat16", torch.float16: "float16"}
    float_name = names.get(getattr(model, "dtype", None), "float32")
    text_cfg = getattr(config, "text_config", None) or config
    vision_cfg = getattr(config, "vision_config", None) or config
    main = getattr(model, "main_input_name", "input_ids")
    specs: list[str] = []
    if main == "input_ids" or (main == "pixel_values" and hasattr(config, "text_config")):
        seq = min(DEFAULT_SEQ_LEN, _positions(text_cfg) or DEFAULT_SEQ_LEN)
        specs.append(f"input_ids=int64[1,{seq}]")
        if getattr(config, "is_encoder_decoder", False):
            specs.append(f"decoder_input_ids=int64[1,{seq}]")
    if main == "pixel_values" or getattr(config, "vision_config", None) is not None:
        size = getattr(vision_cfg, "image_size", None)
        if isinstance(size, (list, tuple)) and len(size) == 2:
            h, w = size
        else:
            h = w = size
        channels = getattr(vision_cfg, "num_channels", 3)
        if not isinstance(h, int) or not isinstance(w, int):
            return [], "No image_size in the config, so no default input."
        specs.append(f"pixel_values={float_name}[1,{channels},{h},{w}]")
    if main == "input_features":
        mels = getattr(config, "num_mel_bins", None)
        frames = getattr(config, "max_source_positions", None)
        if not isinstance(mels, int) or not isinstance(frames, int):
            return [], "No num_mel_bins or max_source_positions in the config, so no default input."
        specs.append(f"input_features={float_name}[1,{mels},{2 * frames}]")
        seq = min(DEFAULT_SEQ_LEN, getattr(config, "max_target_positions", DEFAULT_SEQ_LEN))
        specs.append(f"decoder_input_ids=int64[1,{seq}]")
    if not specs:
        return [], f"No default input for a model whose main input is {main!r}."
    return specs, f"Default inputs (batch 1): {', '.join(specs)}."


def _load(source: Any) -> tuple[dict[str, Any], str]:
    if isinstance(source, Mapping):
        return dict(source), "config dict"
    if _hf_config_object(source):
        doc = source.to_dict()
        return doc, f"{type(source).__name__} object"
    path = _config_path(source)
    if path is None:
        raise TargetError(f"not a Hugging Face config.json or a folder holding one: {os.fspath(source)}")
    if os.path.isdir(os.fspath(source)):
        path = str(folder_member(source, "config.json", what="config file", noun="the model's folder"))
    doc = _read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("model_type"), str):
        raise CorruptFileError(
            "not a Hugging Face config: it has no \"model_type\" string", where=path
        )
    return doc, path


def read(source: Any, **options: Any) -> Anatomy:
    """Build the model a config describes on the meta device and read it.

    Args:
        source: a ``config.json`` path, a folder with one (and no weights), a config dict or a
            ``transformers`` config object.
        **options: passed on to the live-module reader (``input_size``, ``inputs``). Without
            inputs, the defaults above are used; ``inputs=[]`` reads tensors only.

    Returns:
        The anatomy of the built model, with ``source`` set to the path and ``metadata``
        holding ``model_type``, ``architectures``, ``model_class``, ``dtype`` and
        ``attn_implementation`` (the attention code path the forward pass used).

    Raises:
        MissingDependencyError: transformers or torch is not installed.
        ModelError: transformers does not know the model type or rejects the config.

    Example:
        >>> config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 16,
        ...           "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10}
        >>> anatomy = read(config, inputs=["input_ids=int64[1,8]"])  # needs transformers and torch
        >>> anatomy.metadata["model_class"], anatomy.outputs
        ('LlamaForCausalLM', ((1, 8, 10),))
    """
    doc, where = _load(source)
    check_sizes(doc, where)
    tf = _transformers()
    with _quiet(tf):
        config = _build_config(tf, doc, where)
        cls, class_note = _model_class(tf, config)
        model = _build_model(tf, cls, config, where)

    # The model is a live torch module now: the torch reader reads it (imported here, not at
    # the top, because it imports torch, which reading a config's sizes must not).
    from paramscope.readers.torch import module as torch_module

    notes = ["Built from the config on the meta device: shapes only, no weights loaded."]
    if class_note:
        notes.append(class_note)
    quant = doc.get("quantization_config")
    if isinstance(quant, dict):
        method = str(quant.get("quant_method", "quantized"))
        notes.append(
            f"The config names {method} quantization: the model is built unquantized, so counts "
            f"and bytes are those of the dense model, not of the {method} checkpoint's packed tensors."
        )
    if "auto_map" in doc:
        notes.append(
            "The config names custom code (auto_map); paramscope used transformers' built-in "
            f"{doc['model_type']} classes and ran none of it."
        )
    passed = {k: v for k, v in options.items() if k in ("input_size", "inputs") and v is not None}
    if not passed:
        specs, said = default_inputs(model, config)
        if specs:
            passed = {"inputs": specs}
        notes.append(said)
    rest = {k: v for k, v in options.items() if k not in ("input_size", "inputs")}
    # whether a forward pass ran and stopped for want of data (the eager retry below can help);
    # without inputs there is no pass, and the model is built once
    retry = bool(passed) and passed.get("inputs") != []
    try:
        anatomy = torch_module.read(model, **passed, **rest)
    except ModelError as e:
        if options.get("inputs") is not None or options.get("input_size") is not None:
            raise
        # The guessed inputs did not fit this model: still show its tensors.
        anatomy = torch_module.read(model, **rest)
        notes.append(f"The default inputs did not fit ({_one_line(e)}); read without a forward pass.")
        retry = False
    if retry and not anatomy.outputs and _attn(config) != "eager":
        # Some attention masks inspect data (Tensor.item()), which the meta device cannot give;
        # the eager attention path builds the same products without that check.
        with _quiet(tf):
            eager = _build_model(tf, cls, config, where, attn_implementation="eager")
        retry = torch_module.read(eager, **passed, **rest)
        if retry.outputs:
            anatomy, model = retry, eager
            notes.append(
                "The forward pass used eager attention: the default (sdpa) attention mask needs "
                "data the meta device does not have; parameters, matmul and attention FLOPs are "
                "the same, elementwise FLOPs differ slightly."
            )

    archs = getattr(config, "architectures", None) or ()
    metadata = dict(anatomy.metadata)
    metadata.update(
        model_type=str(doc["model_type"]),
        architectures=", ".join(str(a) for a in archs),
        model_class=type(model).__name__,
        dtype=str(getattr(model, "dtype", "")).replace("torch.", ""),
        attn_implementation=_attn(model.config),
    )
    return anatomy.with_(
        name=type(model).__name__,
        source=where,
        metadata=MappingProxyType(metadata),
        notes=tuple(anatomy.notes) + tuple(notes),
    )
