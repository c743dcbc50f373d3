"""Storage sizes of tensor element types, one table for every framework and file format.

A dtype is named by a canonical lower-case string (``"float32"``, ``"bfloat16"``, ``"q4_k"``).
Plain types store a fixed number of bits per element. Block-quantised types (GGML's
``Q4_K``...) store ``block_elements`` elements in ``block_bytes`` bytes, so a tensor's bytes are
``count / block_elements * block_bytes``; the logical element count stays the parameter count.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DType", "register_dtype", "lookup_dtype", "n_bytes", "canonical_dtype"]


@dataclass(frozen=True, slots=True)
class DType:
    """How one element type is stored.

    Attributes:
        name: canonical name, e.g. ``"float32"``.
        bits: bits per element for plain types; for block types, the average (may be fractional).
        block_elements: elements per block (1 for plain types).
        block_bytes: bytes per block (0 for plain types, where ``bits`` rules).
        variable_size: elements differ in size (strings): bytes are unknown from the count.
    """

    name: str
    bits: float
    block_elements: int = 1
    block_bytes: int = 0
    variable_size: bool = False

    def n_bytes(self, count: int) -> int | None:
        """Bytes needed to store ``count`` elements (sub-byte types round up to whole bytes).

        ``None`` for a type with no fixed size per element (strings).
        """
        if self.variable_size:
            return None
        if self.block_bytes:
            full, rest = divmod(count, self.block_elements)
            return (full + (1 if rest else 0)) * self.block_bytes
        return (count * int(self.bits) + 7) // 8


_TABLE: dict[str, DType] = {}
_ALIASES: dict[str, str] = {}


def register_dtype(dtype: DType, *aliases: str) -> DType:
    """Add a dtype (and names it is known by elsewhere) to the table."""
    _TABLE[dtype.name] = dtype
    for alias in aliases:
        _ALIASES[alias.lower()] = dtype.name
    return dtype


def canonical_dtype(name: str) -> str:
    """The canonical name of a dtype given in any framework's spelling (``"torch.float16"``)."""
    key = name.lower().removeprefix("torch.")
    return _ALIASES.get(key, key)


def lookup_dtype(name: str) -> DType | None:
    """The :class:`DType` for ``name`` in any known spelling, or ``None`` if unknown."""
    return _TABLE.get(canonical_dtype(name))


def n_bytes(dtype: str, count: int | None) -> int | None:
    """Bytes for ``count`` elements of ``dtype``; ``None`` when either is unknown.

    Example:
        >>> n_bytes("bfloat16", 512)
        1024
        >>> n_bytes("q4_0", 64)
        36
        >>> n_bytes("string", 3) is None
        True
    """
    if count is None:
        return None
    dt = lookup_dtype(dtype)
    return None if dt is None else dt.n_bytes(count)


# Plain types. Aliases cover numpy, torch, safetensors, ONNX and Keras spellings.
for _name, _bits, _aliases in [
    ("float64", 64, ("f64", "double", "float64_t")),
    ("float32", 32, ("f32", "float", "fp32")),
    ("float16", 16, ("f16", "half", "fp16")),
    ("bfloat16", 16, ("bf16",)),
    ("float8_e4m3fn", 8, ("f8_e4m3", "float8_e4m3", "e4m3")),
    ("float8_e4m3fnuz", 8, ("f8_e4m3fnuz",)),
    ("float8_e5m2", 8, ("f8_e5m2", "e5m2")),
    ("float8_e5m2fnuz", 8, ("f8_e5m2fnuz",)),
    ("float8_e8m0fnu", 8, ("f8_e8m0", "e8m0")),
    ("float6_e2m3fn", 6, ("f6_e2m3",)),
    ("float6_e3m2fn", 6, ("f6_e3m2",)),
    ("float4_e2m1fn", 4, ("f4",)),
    # torch's float4_e2m1fn_x2 packs two fp4 values in one byte, and torch counts that byte as
    # one element (numel() counts bytes, element_size() is 1); safetensors' F4 counts the
    # 4-bit values instead. Either way the bytes agree: 8 bits per torch element.
    ("float4_e2m1fn_x2", 8, ()),
    ("complex128", 128, ("c128", "cdouble")),
    ("complex64", 64, ("c64", "cfloat")),
    ("complex32", 32, ("c32", "chalf")),
    ("int64", 64, ("i64", "long")),
    ("int32", 32, ("i32", "int")),
    ("int16", 16, ("i16", "short")),
    ("int8", 8, ("i8",)),
    ("int4", 4, ("i4",)),
    ("int2", 2, ("i2",)),
    ("uint64", 64, ("u64",)),
    ("uint32", 32, ("u32",)),
    ("uint16", 16, ("u16",)),
    ("uint8", 8, ("u8", "byte")),
    ("uint4", 4, ("u4",)),
    ("uint2", 2, ("u2",)),
    ("bool", 8, ("boolean",)),
    # Opaque HDF5 values (numpy "V1".."V8", named void8..void64): a type h5py could not name;
    # the size is known, the kind is not.
    ("void8", 8, ()),
    ("void16", 16, ()),
    ("void32", 32, ()),
    ("void64", 64, ()),
    # PyTorch's quantized dtypes (torch.ao): the stored integers, scale and zero point aside
    ("qint8", 8, ()),
    ("quint8", 8, ()),
    ("qint32", 32, ()),
    ("quint4x2", 4, ()),
    ("quint2x4", 2, ()),
]:
    register_dtype(DType(_name, _bits), *_aliases)

# Strings (ONNX, Keras StringLookup vocabularies) have no fixed size per element: a known
# dtype with unknown bytes, never 0.
register_dtype(DType("string", 0, variable_size=True))

# GGML block-quantised types (GGUF files): (name, elements per block, bytes per block).
# Sizes are the ``sizeof(block_*)`` of ggml's ggml-common.h, with QK_K = 256; the newest
# two (nvfp4, q1_0) follow gguf-py's GGML_QUANT_SIZES. Q8_1 is 36 bytes in ggml (two fp16
# and 32 int8), although gguf-py lists 40 from an older float layout; ggml reads the files.
# The *_4_4/_4_8/_8_8 variants are ggml's removed interleaved repacks of q4_0 and iq4_nl:
# same bytes per element, kept so that older files still read.
for _name, _block_elements, _block_bytes in [
    ("q4_0", 32, 18),
    ("q4_1", 32, 20),
    ("q5_0", 32, 22),
    ("q5_1", 32, 24),
    ("q8_0", 32, 34),
    ("q8_1", 32, 36),
    ("q2_k", 256, 84),
    ("q3_k", 256, 110),
    ("q4_k", 256, 144),
    ("q5_k", 256, 176),
    ("q6_k", 256, 210),
    ("q8_k", 256, 292),
    ("iq2_xxs", 256, 66),
    ("iq2_xs", 256, 74),
    ("iq3_xxs", 256, 98),
    ("iq1_s", 256, 50),
    ("iq4_nl", 32, 18),
    ("iq3_s", 256, 110),
    ("iq2_s", 256, 82),
    ("iq4_xs", 256, 136),
    ("iq1_m", 256, 56),
    ("tq1_0", 256, 54),
    ("tq2_0", 256, 66),
    ("mxfp4", 32, 17),
    ("nvfp4", 64, 36),
    ("q1_0", 128, 18),
    ("q4_0_4_4", 32, 18),
    ("q4_0_4_8", 32, 18),
    ("q4_0_8_8", 32, 18),
    ("iq4_nl_4_4", 32, 18),
    ("iq4_nl_4_8", 32, 18),
    ("iq4_nl_8_8", 32, 18),
]:
    register_dtype(DType(_name, _block_bytes * 8 / _block_elements, _block_elements, _block_bytes))
