"""Device memory: a table of accelerator names and their usable bytes, or a size in units.

The figures are what the driver reports as total memory (``nvidia-smi``'s ``memory.total``, in
MiB = 1,048,576 bytes), which is a little below the marketed size because part of the HBM
holds ECC and driver reservations. Source per entry: ``nvidia-smi`` outputs published for each
board (vendor forums, cloud provider documentation); they vary by a few MiB with the driver and
the ECC setting. A user's own number always wins: ``--device 79GiB``.
"""

from __future__ import annotations

import re

from paramscope.core.errors import TargetError

__all__ = ["DEVICES", "device_bytes"]

_MIB = 1 << 20

#: name -> (MiB as nvidia-smi reports it, source).
DEVICES: dict[str, tuple[int, str]] = {
    "h200-141gb": (143_771, "nvidia-smi, H200 SXM 141 GB"),
    "h100-80gb": (81_559, "nvidia-smi, H100 80GB HBM3 (SXM)"),
    "h100-94gb": (95_830, "nvidia-smi, H100 NVL 94 GB"),
    "a100-80gb": (81_920, "nvidia-smi, A100-SXM4-80GB"),
    "a100-40gb": (40_960, "nvidia-smi, A100-SXM4-40GB"),
    "l40s-48gb": (46_068, "nvidia-smi, L40S"),
    "a10g-24gb": (23_028, "nvidia-smi, A10G (AWS g5)"),
    "l4-24gb": (23_034, "nvidia-smi, L4"),
    "rtx4090-24gb": (24_564, "nvidia-smi, GeForce RTX 4090"),
    "rtx3090-24gb": (24_576, "nvidia-smi, GeForce RTX 3090"),
    "v100-32gb": (32_768, "nvidia-smi, V100-SXM2-32GB"),
    "v100-16gb": (16_160, "nvidia-smi, V100-SXM2-16GB"),
    "t4-16gb": (15_360, "nvidia-smi, Tesla T4"),
    "mi300x-192gb": (196_592, "rocm-smi, AMD Instinct MI300X"),
}

_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)


def device_bytes(device: str | int) -> tuple[int, str]:
    """Bytes of one device, from a name in :data:`DEVICES` or a size (``24GiB``, ``80GB``, ``1e9``).

    Returns:
        ``(bytes, name)``: the name as shown in reports.

    Raises:
        TargetError: neither a known name nor a size.

    Example:
        >>> device_bytes("24GiB")
        (25769803776, '24GiB')
        >>> device_bytes("a100-80gb")[0] == 81920 * 1048576
        True
    """
    if isinstance(device, int) and not isinstance(device, bool):
        if device <= 0:
            raise TargetError(f"--device {device} is not a positive number of bytes")
        return device, f"{device:,} B"
    text = str(device).strip()
    key = text.lower()
    if key in DEVICES:
        return DEVICES[key][0] * _MIB, key
    m = _SIZE.match(text)
    if m is not None:
        n = float(m[1]) * _UNITS[(m[2] or "b").lower()]
        if n >= 1:
            return int(n), text
    raise TargetError(
        f"--device {text!r} is neither a known device ({', '.join(sorted(DEVICES))}) nor a size such as 24GiB or 80GB"
    )
