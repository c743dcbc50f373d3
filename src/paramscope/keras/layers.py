"""The layer classes of the builder, named and called like ``keras.layers``.

Each class records its constructor arguments as its config, the way ``get_config()`` would
list them; positional arguments follow the Keras 3 signatures in :data:`POSITIONAL`.
"""

from __future__ import annotations

from typing import Any

from paramscope.keras._graph import KerasTensor, Layer

__all__ = ["Layer", "InputLayer", "POSITIONAL"]

_CONV = ("filters", "kernel_size", "strides", "padding")
_POOL = ("pool_size", "strides", "padding", "data_format")
_GPOOL = ("data_format", "keepdims")
_RNN = ("units",)

#: Positional constructor arguments of each Keras 3 layer class the builder offers.
POSITIONAL: dict[str, tuple[str, ...]] = {
    "Dense": ("units", "activation", "use_bias"),
    "EinsumDense": ("equation", "output_shape", "activation", "bias_axes"),
    "Embedding": ("input_dim", "output_dim"),
    "Conv1D": _CONV, "Conv2D": _CONV, "Conv3D": _CONV,
    "Conv1DTranspose": _CONV, "Conv2DTranspose": _CONV, "Conv3DTranspose": _CONV,
    "DepthwiseConv1D": ("kernel_size", "strides", "padding", "depth_multiplier"),
    "DepthwiseConv2D": ("kernel_size", "strides", "padding", "depth_multiplier"),
    "SeparableConv1D": _CONV, "SeparableConv2D": _CONV,
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "LayerNormalization": ("axis", "epsilon", "center", "scale"),
    "GroupNormalization": ("groups", "axis", "epsilon", "center", "scale"),
    "UnitNormalization": ("axis",),
    "Normalization": ("axis", "mean", "variance", "invert"),
    "SimpleRNN": _RNN, "LSTM": _RNN, "GRU": _RNN,
    "SimpleRNNCell": _RNN, "LSTMCell": _RNN, "GRUCell": _RNN,
    "RNN": ("cell", "return_sequences", "return_state"),
    "ConvLSTM1D": _CONV, "ConvLSTM2D": _CONV, "ConvLSTM3D": _CONV,
    "Bidirectional": ("layer", "merge_mode"),
    "TimeDistributed": ("layer",),
    "MultiHeadAttention": ("num_heads", "key_dim", "value_dim", "dropout", "use_bias", "output_shape"),
    "GroupedQueryAttention": ("head_dim", "num_query_heads", "num_key_value_heads"),
    "Attention": ("use_scale", "score_mode", "dropout"),
    "AdditiveAttention": ("use_scale", "dropout"),
    "Dropout": ("rate", "noise_shape", "seed"),
    "SpatialDropout1D": ("rate",), "SpatialDropout2D": ("rate", "data_format"),
    "SpatialDropout3D": ("rate", "data_format"),
    "GaussianNoise": ("stddev",), "GaussianDropout": ("rate",), "AlphaDropout": ("rate",),
    "ActivityRegularization": ("l1", "l2"),
    "Activation": ("activation",),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "LeakyReLU": ("negative_slope",),
    "PReLU": ("alpha_initializer", "alpha_regularizer", "alpha_constraint", "shared_axes"),
    "ELU": ("alpha",), "Softmax": ("axis",),
    "Flatten": ("data_format",), "Reshape": ("target_shape",), "Permute": ("dims",),
    "RepeatVector": ("n",),
    "MaxPooling1D": _POOL, "MaxPooling2D": _POOL, "MaxPooling3D": _POOL,
    "AveragePooling1D": _POOL, "AveragePooling2D": _POOL, "AveragePooling3D": _POOL,
    "GlobalMaxPooling1D": _GPOOL, "GlobalMaxPooling2D": _GPOOL, "GlobalMaxPooling3D": _GPOOL,
    "GlobalAveragePooling1D": _GPOOL, "GlobalAveragePooling2D": _GPOOL,
    "GlobalAveragePooling3D": _GPOOL,
    "ZeroPadding1D": ("padding",), "ZeroPadding2D": ("padding", "data_format"),
    "ZeroPadding3D": ("padding", "data_format"),
    "Cropping1D": ("cropping",), "Cropping2D": ("cropping", "data_format"),
    "Cropping3D": ("cropping", "data_format"),
    "UpSampling1D": ("size",), "UpSampling2D": ("size", "data_format", "interpolation"),
    "UpSampling3D": ("size", "data_format"),
    "Add": (), "Subtract": (), "Multiply": (), "Average": (), "Maximum": (), "Minimum": (),
    "Concatenate": ("axis",), "Dot": ("axes", "normalize"),
    "Rescaling": ("scale", "offset"), "Resizing": ("height", "width", "interpolation"),
    "CenterCrop": ("height", "width"),
    "Masking": ("mask_value",), "Identity": (),
    "Lambda": ("function", "output_shape"),
}

# Keras 1/2 keywords that Keras 3 renamed; the builder accepts both.
_LEGACY = {"output_dim": "units", "nb_filter": "filters", "p": "rate", "border_mode": "padding"}


def _plain(value: Any) -> Any:
    if isinstance(value, Layer):
        return value.serialize()
    if isinstance(value, tuple):
        return list(value)
    if callable(value):  # a function passed as an activation or a Lambda body: keep its name only
        return getattr(value, "__name__", repr(value))
    return value


def _make(class_name: str, positional: tuple[str, ...]) -> type[Layer]:
    def __init__(self: Layer, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(positional):
            raise TypeError(
                f"{class_name}() takes at most {len(positional)} positional arguments "
                f"({', '.join(positional) or 'none'}), got {len(args)}"
            )
        config = dict(zip(positional, args))
        for key, value in kwargs.items():
            key = _LEGACY.get(key, key) if class_name != "Embedding" else key
            if key in config:
                raise TypeError(f"{class_name}() got multiple values for argument {key!r}")
            config[key] = value
        Layer.__init__(self, class_name, {k: _plain(v) for k, v in config.items()})

    doc = f"Builder stand-in for ``keras.layers.{class_name}({', '.join(positional)}, ...)``."
    return type(class_name, (Layer,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


for _name, _pos in POSITIONAL.items():
    globals()[_name] = _make(_name, _pos)
    __all__.append(_name)


class InputLayer(Layer):
    """The layer behind ``keras.Input``: it has no weights and one output, the input itself."""

    def __init__(
        self,
        shape: Any = None,
        batch_size: int | None = None,
        dtype: str | None = None,
        batch_shape: Any = None,
        name: str | None = None,
        sparse: bool = False,
        **legacy: Any,
    ) -> None:
        if batch_shape is None:
            batch_shape = legacy.pop("batch_input_shape", None)
        if shape is None and batch_shape is None:
            shape = legacy.pop("input_shape", None)
        if legacy:
            raise TypeError(f"InputLayer() got unexpected arguments: {', '.join(legacy)}")
        if batch_shape is None:
            if shape is None:
                raise TypeError("Input() needs shape=(...) or batch_shape=(None, ...)")
            if isinstance(shape, int):
                shape = (shape,)
            batch_shape = (batch_size, *shape)
        config: dict[str, Any] = {
            "batch_shape": list(batch_shape),
            "dtype": dtype or "float32",
            "sparse": sparse,
            "name": name,
        }
        super().__init__("InputLayer", config)
        shape_t = tuple(batch_shape)
        self.input_shapes = (shape_t,)
        self.output = KerasTensor(self, 0, 0, shape_t, config["dtype"])
        from paramscope.keras._graph import Node

        self.nodes.append(Node((), {}, (self.output,)))

    def serialize(self) -> dict[str, Any]:
        """InputLayers have no ``build_config``."""
        d = super().serialize()
        d.pop("build_config", None)
        return d
