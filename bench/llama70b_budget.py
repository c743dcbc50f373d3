"""The budget for the largest model paramscope promises to summarise: Llama-2-70B's shape.

Run from the repository root:

    python bench/llama70b_budget.py            # exits 1 when over budget

It builds ``LlamaForCausalLM`` with Llama-2-70B's config on the meta device (no weights; they
would be 276 GB in float32) in a fresh process and times ``paramscope.readers.read`` with
``input_ids=int64[1,4096]``: every tensor, shape and FLOP of one forward pass. The budget is
what the README promises for a model too big for RAM: under 30 s and 1,500 MB peak resident
memory on a laptop-class CPU. The tests check the counts and the memory (no weights allocated);
only this script checks the time, since a loaded test machine would make a time check flaky.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import ROOT, arg_parser, child_env  # noqa: E402

BUDGET_SECONDS = 30.0
BUDGET_MB = 1500.0

CHILD = """
import json, resource, time, torch, transformers
from paramscope.readers import read

def peak_mb():
    # VmHWM is this process's own peak; ru_maxrss may carry the parent's across exec.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

cfg = transformers.LlamaConfig(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
    num_key_value_heads=8, intermediate_size=28672, vocab_size=32000)
with torch.device("meta"):
    model = transformers.LlamaForCausalLM(cfg)
t0 = time.perf_counter()
anatomy = read(model, inputs=["input_ids=int64[1,4096]"])
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "rss_mb": peak_mb(), "flops": anatomy.compute.flops}))
"""


def main() -> int:
    parser = arg_parser(__doc__)
    args = parser.parse_args()
    runs = []
    for _ in range(max(1, args.repeat)):
        done = subprocess.run(
            [sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=ROOT, check=True,
            env=child_env({"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}),
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    seconds = sorted(r["seconds"] for r in runs)[len(runs) // 2]
    rss = max(r["rss_mb"] for r in runs)
    print("| Llama-2-70B shape on meta, seq 4096 | measured | budget |")
    print("|---|---:|---:|")
    print(f"| read (median of {len(runs)}) | {seconds:.1f} s | {BUDGET_SECONDS:.0f} s |")
    print(f"| peak resident memory | {rss:.0f} MB | {BUDGET_MB:.0f} MB |")
    over = seconds > BUDGET_SECONDS or rss > BUDGET_MB
    print("over budget" if over else "within budget")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
