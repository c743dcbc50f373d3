"""What a memory plan is made from: the anatomy, the module to measure, the config, the inputs.

Each kind of source gives what it can:

- a live PyTorch module: its tensors, and activations measured from the inputs given;
- a Hugging Face config: the model built on the meta device (as the config reader does), its
  tensors, activations measured at ``batch x seq`` tokens, and the KV cache from the config;
- a Keras model or config: its tensors, and activations estimated from layer output shapes;
- a checkpoint file or folder: its stored tensors (their real dtypes and block bytes); with a
  ``config.json`` beside it, activations and the KV cache as for that config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import TargetError
from paramscope.planner.setup import MemorySetup
from paramscope.trace.inputs import InputSpec, input_specs

__all__ = ["Prepared", "prepare"]


@dataclass
class Prepared:
    """A source made ready for planning.

    Attributes:
        anatomy: the model's tensors (weights counted from here).
        kind: ``"torch"``, ``"hf"``, ``"keras"`` or ``"file"``.
        module: the torch module whose step is measured (``None``: no measurement).
        config: the Hugging Face config (KV cache, heads), if any.
        specs: the inputs of the measured step, at the plan's batch and sequence.
        batch: sequences per device.
        seq: tokens per sequence, for token models.
        notes: what was assumed.
    """

    anatomy: Anatomy
    kind: str
    module: Any = None
    config: Any = None
    specs: list[InputSpec] = field(default_factory=list)
    batch: int = 1
    seq: int | None = None
    notes: list[str] = field(default_factory=list)


def _is(reader: str, source: Any) -> bool:
    import importlib

    try:
        mod = importlib.import_module(f"paramscope.readers.{reader}")
    except ModuleNotFoundError:
        return False
    return bool(mod.can_read(source))


def _companion_config(source: Any) -> str | None:
    """The ``config.json`` beside a checkpoint file, or inside a checkpoint folder."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = os.fspath(source)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    candidate = os.path.join(folder, "config.json")
    return candidate if os.path.isfile(candidate) else None


def prepare(source: Any, setup: MemorySetup, *, input_size: Any = None, inputs: Any = None) -> Prepared:
    """The anatomy, module, config and inputs a plan needs from ``source``.

    Raises:
        TargetError: ``seq`` on a model without token inputs; a source paramscope cannot read.
    """
    from paramscope.readers import read

    if _is("keras.live", source) or _is("keras.config", source) or _is("keras.archive", source):
        if setup.seq is not None:
            raise TargetError("--seq sets the tokens of a token model; this Keras model has no token inputs (use --batch)")
        return Prepared(read(source), "keras", batch=setup.batch or 1)
    if _is("hf.config", source):
        return _hf(source, setup, read)
    if _is("torch.module", source):
        anatomy = read(source)
        specs = input_specs(input_size, inputs)
        return _torch(anatomy, source, specs, setup)
    anatomy = read(source)
    if anatomy.framework == "keras":  # paramscope's own Keras builder, Keras .h5 files
        if setup.seq is not None:
            raise TargetError("--seq sets the tokens of a token model; this Keras model has no token inputs (use --batch)")
        return Prepared(anatomy, "keras", batch=setup.batch or 1)
    config_path = _companion_config(source)
    gguf_config = _gguf_config(anatomy) if config_path is None else None
    if gguf_config is not None:
        return Prepared(anatomy, "file", None, gguf_config, [], setup.batch or 1, setup.seq, [
            "Architecture from the GGUF metadata: KV cache counted in f16 (llama.cpp's default cache type); "
            "activations unknown (no forward pass without a config.json beside the file)."])
    if config_path is None:
        if setup.seq is not None:
            raise TargetError(
                "--seq needs the architecture for the KV cache and activations: put the model's config.json "
                "beside the checkpoint, or plan from the config.json itself"
            )
        return Prepared(anatomy, "file", batch=setup.batch or 1,
                        notes=["No config.json beside the checkpoint: weights only, activations unknown."])
    built = _hf(config_path, setup, read)
    built.anatomy = anatomy
    built.kind = "file"
    built.notes.append(f"Weights from the checkpoint; activations and KV cache from {os.path.basename(config_path)} beside it.")
    return built


def _gguf_config(anatomy: Anatomy) -> dict[str, Any] | None:
    """A config for the KV cache from a GGUF file's ``{arch}.*`` metadata, if it has one."""
    if anatomy.framework != "gguf":
        return None
    meta = anatomy.metadata
    arch = meta.get("general.architecture", "")

    def number(key: str) -> int | None:
        text = meta.get(f"{arch}.{key}", "")
        return int(text) if text.isdigit() else None

    doc = {
        "model_type": arch,
        "num_hidden_layers": number("block_count"),
        "num_attention_heads": number("attention.head_count"),
        "num_key_value_heads": number("attention.head_count_kv"),
        "hidden_size": number("embedding_length"),
        "head_dim": number("attention.key_length"),
        "sliding_window": number("attention.sliding_window"),
        "kv_cache_dtype_bytes": 2,
    }
    if doc["num_hidden_layers"] is None or doc["num_attention_heads"] is None:
        return None
    return {k: v for k, v in doc.items() if v is not None}


def _hf(source: Any, setup: MemorySetup, read: Any) -> Prepared:
    from paramscope.readers.hf import config as hf

    doc, _where = hf._load(source)
    tf = hf._transformers()
    with hf._quiet(tf):
        config = hf._build_config(tf, doc, str(_where))
        cls, class_note = hf._model_class(tf, config)
        model = hf._build_model(tf, cls, config, str(_where))
    anatomy = read(model).with_(name=type(model).__name__, source=str(_where))
    batch = setup.batch or 1
    notes = [class_note] if class_note else []
    main = getattr(model, "main_input_name", "input_ids")
    if main == "input_ids":
        text_cfg = getattr(config, "text_config", None) or config
        seq = setup.seq or min(hf.DEFAULT_SEQ_LEN, hf._positions(text_cfg) or hf.DEFAULT_SEQ_LEN)
        specs = [InputSpec("input_ids", "int64", (batch, seq))]
        if getattr(config, "is_encoder_decoder", False):
            specs.append(InputSpec("decoder_input_ids", "int64", (batch, seq)))
        if setup.seq is None:
            notes.append(f"No --seq given: {seq} tokens per sequence.")
        return Prepared(anatomy, "hf", model, config, specs, batch, seq, notes)
    if setup.seq is not None:
        raise TargetError(f"--seq sets token inputs, but this model's input is {main!r}; use --batch (and --input for its shape)")
    defaults, said = hf.default_inputs(model, config)
    specs = [_with_batch(_parse(s), batch) for s in defaults]
    notes.append(said.replace("(batch 1)", f"(batch {batch})"))
    return Prepared(anatomy, "hf", model, config, specs, batch, None, notes)


def _parse(spec: str) -> InputSpec:
    from paramscope.trace.inputs import parse_input_spec

    return parse_input_spec(spec)


def _with_batch(spec: InputSpec, batch: int) -> InputSpec:
    if not spec.shape:
        return spec
    return InputSpec(spec.name, spec.dtype, (batch, *spec.shape[1:]))


def _torch(anatomy: Anatomy, module: Any, specs: list[InputSpec], setup: MemorySetup) -> Prepared:
    notes: list[str] = []
    if not specs:
        if setup.seq is not None:
            raise TargetError("--seq needs a token input: give --input input_ids=int64[B,S] (or input_size)")
        notes.append("No input given (input_size or inputs): activations unknown. Pass e.g. input_size=(8, 4096).")
        return Prepared(anatomy, "torch", None, None, [], setup.batch or 1, None, notes)
    batch = setup.batch or (specs[0].shape[0] if specs[0].shape else 1)
    specs = [_with_batch(s, batch) for s in specs]
    seq = None
    tokens = [i for i, s in enumerate(specs) if s.dtype.startswith(("int", "uint")) and len(s.shape) >= 2]
    if setup.seq is not None:
        if not tokens:
            raise TargetError(
                "--seq sets the length of token inputs, and this model's inputs have none (integer ids of shape "
                "[batch, seq]); set the shape with --input-size / --input instead"
            )
        for i in tokens:
            s = specs[i]
            specs[i] = InputSpec(s.name, s.dtype, (s.shape[0], setup.seq, *s.shape[2:]))
        seq = setup.seq
    elif tokens:
        seq = specs[tokens[0]].shape[1]
    return Prepared(anatomy, "torch", module, None, specs, batch, seq, notes)
