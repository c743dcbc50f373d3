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

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
LAYERS, HIDDEN, VOCAB, CONTEXT = 12, 768, 50257, 1024

_MEASURE = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "wall = time.perf_counter() - t\n"
    "if r.returncode: sys.exit(r.stderr.decode()[-2000:])\n"
    "print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)

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


def measure(cmd: list[str], repeat: int) -> tuple[float, float]:
    """Median wall seconds and median peak RSS (MiB) of ``cmd`` over ``repeat`` fresh runs."""
    walls, rss = [], []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], env=ENV, capture_output=True, text=True, check=True)
        wall, kib = out.stdout.split()
        walls.append(float(wall))
        rss.append(int(kib) / 1024)
    return statistics.median(walls), statistics.median(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pytorch_model.bin"
        n = write_gpt2(path)
        size = path.stat().st_size
        check = subprocess.run([sys.executable, "-m", "paramscope", "summary", str(path), "--format", "json"],
                               env=ENV, capture_output=True, text=True, check=True)  # fmt: skip
        import json

        params = json.loads(check.stdout)["totals"]["params"]
        assert params == n, (params, n)
        print(f"checkpoint: {path.name}, {size / 2**20:.0f} MiB, {n:,} parameters (paramscope agrees: {params:,})")
        rows = [
            ("paramscope summary", [sys.executable, "-m", "paramscope", "summary", str(path)]),
            ("torch.load(mmap=True)", [sys.executable, "-c", _TORCH_LIST.format(mmap=True), str(path)]),
            ("torch.load()", [sys.executable, "-c", _TORCH_LIST.format(mmap=False), str(path)]),
        ]
        results = [(label, *measure(cmd, args.repeat)) for label, cmd in rows]
    base_wall, base_rss = results[0][1], results[0][2]
    print(f"median of {args.repeat} fresh runs each")
    print(f"{'tool':<24}{'wall s':>9}{'peak RSS MiB':>15}{'wall / paramscope':>20}{'RSS / paramscope':>19}")
    for label, wall, rss in results:
        print(f"{label:<24}{wall:>9.2f}{rss:>15.0f}{wall / base_wall:>20.2f}{rss / base_rss:>19.2f}")


if __name__ == "__main__":
    main()
