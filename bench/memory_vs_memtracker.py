"""paramscope memory against PyTorch's MemTracker on fake tensors, and the Llama-2-70B plan.

Run from the repository root:

    python bench/memory_vs_memtracker.py               # all cases
    python bench/memory_vs_memtracker.py --cases llama2 --repeat 1

Each tool runs as a fresh subprocess (imports included) through ``_measure.py``: wall time and
peak resident memory of that process alone.

- paramscope: ``python -m paramscope memory config.json --train --batch B --seq S
  --optimizer adamw --attention math --format json`` (the model built on the meta device,
  forward and backward measured on fake tensors; models deeper than six alike blocks through
  a two- and a three-block copy).
- MemTracker: ``torch.distributed._tools.mem_tracker.MemTracker`` around two training steps
  (forward, loss, backward, ``AdamW(foreach=False).step()``, ``zero_grad``) of the same model
  built under ``FakeTensorMode``; its peak is the second step's (optimizer states exist).

Also one process running both after the imports (the planning call against the tracked
training steps, each building its model from the config), which is the cost a user who has
torch and transformers loaded pays.

MemTracker runs CPU kernels: ``scaled_dot_product_attention`` takes the CPU flash kernel for
GPT-2 (causal, no mask: out and log-sum-exp kept, as paramscope's default ``--attention flash``)
and the math path for Llama (an explicit mask: L x S kept, as ``--attention math``), so each
case plans with the matching option. The models have no dropout (the CPU dropout keeps a
float mask, CUDA's a 1-byte one, which paramscope models). The peaks are compared.

Then the Llama-2-70B full fine-tune plan, ZeRO-3 over 64 GPUs, seq 4096, bf16 mixed
precision, with and without full activation checkpointing: the whole CLI.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import arg_parser, measure, table  # noqa: E402

ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}

CASES = {
    "gpt2": {
        "label": "GPT-2 small, batch 8 x seq 1024",
        "config": {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "resid_pdrop": 0.0,
                   "embd_pdrop": 0.0, "attn_pdrop": 0.0},
        "batch": 8, "seq": 1024, "attention": "flash",
    },
    "llama2": {
        "label": "Llama-2-7B shape, 2 layers, batch 1 x seq 1024",
        "config": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
                   "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 32,
                   "intermediate_size": 11008, "vocab_size": 32000, "max_position_embeddings": 4096},
        "batch": 1, "seq": 1024, "attention": "math",
    },
}

LLAMA70B = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8192,
    "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
    "intermediate_size": 28672, "vocab_size": 32000, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05, "torch_dtype": "float16",
}

MEMTRACKER = """
import json, sys, time, torch, transformers
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker
doc = json.load(open(sys.argv[1])); batch, seq = int(sys.argv[2]), int(sys.argv[3])
config = transformers.AutoConfig.for_model(doc.pop("model_type"), **doc)
cls = getattr(transformers, config.architectures[0])


def tracked(seq):
    with FakeTensorMode():
        model = cls(config); model.train()
        opt = torch.optim.AdamW(model.parameters(), foreach=False)
        ids = torch.zeros(batch, seq, dtype=torch.int64)
        mt = MemTracker(); mt.track_external(model, opt)
        with mt:
            for _ in range(2):
                mt.reset_mod_stats()
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss
                loss.backward(); del loss
                opt.step(); opt.zero_grad(set_to_none=True)
        return next(iter(mt.get_tracker_snapshot("peak").values()))


if len(sys.argv) > 4:  # side by side in one process, each warmed up once on 8 tokens
    import paramscope
    paramscope.memory(sys.argv[1], train=True, batch=batch, seq=8, attention=sys.argv[4])
    tracked(8)
    t = time.perf_counter()
    plan = paramscope.memory(sys.argv[1], train=True, batch=batch, seq=seq, attention=sys.argv[4])
    ours = time.perf_counter() - t
t = time.perf_counter()
peak = tracked(seq)
result = {"peak": peak["Total"], "seconds": time.perf_counter() - t}
if len(sys.argv) > 4:
    result.update(ours_peak=plan.peak, ours_seconds=ours)
print(json.dumps(result))
"""


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--cases", nargs="*", default=[*CASES, "llama70b"], help="gpt2, llama2, llama70b")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    for name in args.cases:
        if name == "llama70b":
            _llama70b(tmp, args.repeat)
            continue
        case = CASES[name]
        path = tmp / name / "config.json"
        path.parent.mkdir()
        path.write_text(json.dumps(case["config"]))
        b, s = str(case["batch"]), str(case["seq"])
        ours = measure("paramscope memory", [sys.executable, "-m", "paramscope", "memory", str(path), "--train",
                                             "--batch", b, "--seq", s, "--optimizer", "adamw", "--attention", case["attention"],
                                             "--format", "json"], repeat=args.repeat, env=ENV, capture=True)  # fmt: skip
        script = tmp / name / "memtracker.py"
        script.write_text(MEMTRACKER)
        theirs = measure("MemTracker (fake tensors)", [sys.executable, str(script), str(path), b, s],
                         repeat=args.repeat, env=ENV, capture=True)  # fmt: skip
        table(case["label"], [ours, theirs])
        p_ours = json.loads(ours.stdout)["per_device"]["peak"]
        p_theirs = json.loads(theirs.stdout)["peak"]
        print(f"peak: paramscope {p_ours:,} B, MemTracker {p_theirs:,} B, ratio {p_ours / p_theirs:.4f}; "
              f"whole processes: paramscope is {theirs.wall_s / ours.wall_s:.1f}x faster")
        both = measure("side by side", [sys.executable, str(script), str(path), b, s, case["attention"]], repeat=1, env=ENV, capture=True)
        d = json.loads(both.stdout)
        print(f"one process, imports done: paramscope {d['ours_seconds']:.2f} s (peak {d['ours_peak']:,} B), "
              f"MemTracker {d['seconds']:.2f} s (peak {d['peak']:,} B): {d['seconds'] / d['ours_seconds']:.1f}x faster")


def _llama70b(tmp: Path, repeat: int) -> None:
    path = tmp / "llama70b" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(LLAMA70B))
    rows = []
    for ck in ("none", "full"):
        argv = [sys.executable, "-m", "paramscope", "memory", str(path), "--train", "--seq", "4096",
                "--precision", "bf16-mixed", "--shard", "zero3", "--dp", "64", "--checkpointing", ck,
                "--device", "h100-80gb", "--format", "json"]  # fmt: skip
        r = measure(f"checkpointing {ck}", argv, repeat=repeat, env=ENV, capture=True)
        rows.append(r)
        print(f"checkpointing {ck}: peak {json.loads(r.stdout)['per_device']['peak']:,} B")
    table("Llama-2-70B full fine-tune plan, ZeRO-3 over 64 GPUs, seq 4096, bf16-mixed (whole CLI)", rows)


if __name__ == "__main__":
    os.environ.update(ENV)
    main()
