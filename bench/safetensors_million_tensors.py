"""A safetensors header of N tensors: paramscope's cost grows linearly, measured against safe_open.

Run from the repository root:

    python bench/safetensors_million_tensors.py [--repeat 1] [--sizes 100000,1000000]

A 1,000,000-tensor header is legal (the format allows 100 MB of header) and was the second
security round's slowest safetensors file. For each N the benchmark writes one file of N
one-byte tensors named like a model (``h.<block>.p<k>.w``, eight per block) and times, each
in a fresh process: ``safe_open`` listing every key's shape and dtype (the reference
implementation's header parse, in Rust), ``paramscope`` reading it to an anatomy, and
``paramscope summary --format json`` (reader, anatomy and render). The ratios against
``safe_open`` and between sizes show that the cost is linear in N (x10 tensors: about x10
time and memory) and what each tensor costs. The budget, checked by hand on each run:
paramscope's time per tensor within 2x between the two sizes (linear), and peak memory at most
1.5 KB per tensor above the interpreter's baseline.

Needs: safetensors (for the safe_open row).
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Result, arg_parser, measure, table  # noqa: E402

_SAFE_OPEN = (
    "import sys\n"
    "from safetensors import safe_open\n"
    "with safe_open(sys.argv[1], 'np') as f:\n"
    "    n = sum(len(f.get_slice(k).get_shape()) + len(f.get_slice(k).get_dtype()) for k in f.keys())\n"
)
_READ = "import sys\nfrom paramscope.readers import read\nread(sys.argv[1])\n"


def write_header(path: Path, n: int) -> None:
    """One file of ``n`` one-byte tensors, eight per block."""
    header = {f"h.{i // 8}.p{i % 8}.w": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(n)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * n)


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="tensor counts, comma-separated")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    groups: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"h{n}.safetensors"
            write_header(path, n)
            header_mb = path.stat().st_size / 1e6
            groups[f"{n:,} tensors ({header_mb:.0f} MB header)"] = [
                measure("safe_open, every key's shape and dtype", [sys.executable, "-c", _SAFE_OPEN, str(path)],
                        repeat=args.repeat),
                measure("paramscope read (anatomy)", [sys.executable, "-c", _READ, str(path)], repeat=args.repeat),
                measure("paramscope summary --format json",
                        [sys.executable, "-m", "paramscope", "summary", str(path), "--format", "json"],
                        repeat=args.repeat),
            ]  # fmt: skip
            path.unlink()
    table("safetensors header of N tensors: safe_open against paramscope", groups)
    rows = list(groups.values())
    print("\nper tensor (paramscope read):")
    for n, group in zip(sizes, rows):
        ours = group[1]
        print(f"  {n:>9,} tensors: {ours.wall_s / n * 1e6:.1f} us and {ours.peak_bytes / n:,.0f} bytes of peak RSS per tensor")


if __name__ == "__main__":
    main()
