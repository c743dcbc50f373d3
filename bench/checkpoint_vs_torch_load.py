"""Side by side: ``paramscope summary`` against ``torch.load`` on a GPT-2-small-sized checkpoint.

Run from the repository root:

    python bench/checkpoint_vs_torch_load.py [--repeat 3]

It writes, in a temporary folder, a ``pytorch_model.bin`` with GPT-2 small's state-dict layout
(12 layers, hidden 768, vocabulary 50257, context 1024, float32, the head tied to the token
embedding; about 124 M parameters, 500 MB) with ``torch.save``. Each tool then runs in a fresh
subprocess, several times, and lists every tensor's name and shape:

- ``paramscope summary pytorch_model.bin`` (the CLI, reading the pickle by opcode analysis);
- ``torch.load(..., mmap=True, weights_only=True)`` printing names and shapes;
- ``torch.load(..., weights_only=True)`` (no mmap: what most scripts do) printing the same.

The table shows the median wall time and peak RSS (``ru_maxrss`` of each child) and the
ratios against paramscope. Needs torch.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import arg_parser, measure, paramscope_totals, table  # noqa: E402

LAYERS, HIDDEN, VOCAB, CONTEXT = 12, 768, 50257, 1024

_TORCH_LIST = (
    "import sys, torch\n"
    "sd = torch.load(sys.argv[1], mmap={mmap}, weights_only=True)\n"
    "for k, v in sd.items(): print(k, tuple(v.shape), v.dtype)\n"
)


def write_gpt2(path: Path) -> int:
    """Write GPT-2 small's state dict (zeros, tied head) with torch.save; return its parameter count."""
    import torch

    sd: dict[str, torch.Tensor] = {
        "transformer.wte.weight": torch.zeros(VOCAB, HIDDEN),
        "transformer.wpe.weight": torch.zeros(CONTEXT, HIDDEN),
    }
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        for name, shape in [
            ("ln_1.weight", (HIDDEN,)), ("ln_1.bias", (HIDDEN,)),
            ("attn.c_attn.weight", (HIDDEN, 3 * HIDDEN)), ("attn.c_attn.bias", (3 * HIDDEN,)),
            ("attn.c_proj.weight", (HIDDEN, HIDDEN)), ("attn.c_proj.bias", (HIDDEN,)),
            ("ln_2.weight", (HIDDEN,)), ("ln_2.bias", (HIDDEN,)),
            ("mlp.c_fc.weight", (HIDDEN, 4 * HIDDEN)), ("mlp.c_fc.bias", (4 * HIDDEN,)),
            ("mlp.c_proj.weight", (4 * HIDDEN, HIDDEN)), ("mlp.c_proj.bias", (HIDDEN,)),
        ]:  # fmt: skip
            sd[p + name] = torch.zeros(*shape)
    sd["transformer.ln_f.weight"] = torch.zeros(HIDDEN)
    sd["transformer.ln_f.bias"] = torch.zeros(HIDDEN)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied, as GPT2LMHeadModel's state dict
    torch.save(sd, path)
    return sum(t.numel() for k, t in sd.items() if k != "lm_head.weight")


def main() -> None:
    parser = arg_parser(__doc__)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pytorch_model.bin"
        n = write_gpt2(path)
        size = path.stat().st_size
        params = paramscope_totals(path)["params"]
        assert params == n, (params, n)
        print(f"checkpoint: {path.name}, {size / 2**20:.0f} MiB, {n:,} parameters (paramscope agrees: {params:,})")
        rows = [
            ("paramscope summary", [sys.executable, "-m", "paramscope", "summary", str(path)]),
            ("torch.load(mmap=True)", [sys.executable, "-c", _TORCH_LIST.format(mmap=True), str(path)]),
            ("torch.load()", [sys.executable, "-c", _TORCH_LIST.format(mmap=False), str(path)]),
        ]
        results = [measure(label, cmd, repeat=args.repeat) for label, cmd in rows]
    table(f"{path.name}: list every tensor's name and shape", results)


if __name__ == "__main__":
    main()
