"""paramscope against torchinfo on transformers models built from a config.json.

Run from the repository root:

    python bench/torch_vs_torchinfo.py            # GPT-2 small, Llama 1.1B, Llama-2-70B shape
    python bench/torch_vs_torchinfo.py --repeat 5 --models gpt2

Each measured run is a fresh subprocess (imports included, as a user would run it). Wall
time is taken around the child; peak resident memory is the child's own ``ru_maxrss`` (see
``_measure.py``). The table shows the median of ``--repeat`` runs and the ratio of each tool
to paramscope.

- paramscope: ``python -m paramscope summary config.json`` (the model built on the meta
  device, shapes and FLOPs from one meta forward at batch 1, 128 tokens; 4096 for 70B).
- torchinfo: a script that builds the same model on CPU with transformers and calls
  ``torchinfo.summary(model, input_data={"input_ids": ...})`` with output sizes, parameter
  counts and mult-adds, torchinfo's default depth.
- floor (70B only): a bare script that builds the model on meta and runs one forward under
  ``torch.utils.flop_counter.FlopCounterMode``: the least any tool built on this approach can
  cost. torchinfo cannot run the 70B model (it needs the weights in memory: 276 GB in float32),
  so it is not run there.

Also measured, in one process on GPT-2 small: the summary call alone (model already built),
paramscope on the CPU model and on the meta model against torchinfo on the CPU model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import ROOT, Row, arg_parser, child_env, measure_all, table  # noqa: E402

ENV = {"TRANSFORMERS_VERBOSITY": os.environ.get("TRANSFORMERS_VERBOSITY", "error"), "HF_HUB_OFFLINE": "1"}

MODELS = {
    "gpt2": {
        "label": "GPT-2 small (124M)",
        "config": {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]},
        "seq": 128,
        "torchinfo": True,
    },
    "llama1b": {
        "label": "Llama 1.1B (TinyLlama shape)",
        "config": {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 2048,
            "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
            "intermediate_size": 5632, "vocab_size": 32000, "max_position_embeddings": 2048,
        },
        "seq": 128,
        "torchinfo": True,
    },
    "llama70b": {
        "label": "Llama-2-70B shape, seq 4096",
        "config": {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8192,
            "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
            "intermediate_size": 28672, "vocab_size": 32000, "max_position_embeddings": 4096,
            "dtype": "float16",
        },
        "seq": 4096,
        "torchinfo": False,
    },
}

_LOAD = """
import json, sys, torch, transformers
doc = json.load(open(sys.argv[1]))
config = transformers.AutoConfig.for_model(doc.pop("model_type"), **doc)
cls = getattr(transformers, config.architectures[0])
seq = int(sys.argv[2])
"""

TORCHINFO = _LOAD + """
import torchinfo
model = cls._from_config(config)
ids = torch.zeros((1, seq), dtype=torch.int64)
print(torchinfo.summary(model, input_data={"input_ids": ids},
                        col_names=("output_size", "num_params", "mult_adds"), verbose=0))
"""

FLOOR = _LOAD + """
from torch.utils.flop_counter import FlopCounterMode
with torch.device("meta"):
    model = cls._from_config(config)
ids = torch.zeros((1, seq), dtype=torch.int64, device="meta")
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    model(input_ids=ids)
print(sum(p.numel() for p in model.parameters()), counter.get_total_flops())
"""

IN_PROCESS = _LOAD + """
import statistics, time, torchinfo
import paramscope
model = cls._from_config(config).eval()
with torch.device("meta"):
    meta = cls._from_config(config)
ids = torch.zeros((1, seq), dtype=torch.int64)
spec = [f"input_ids=int64[1,{seq}]"]
def timed(fn, n):
    fn()  # warm-up: first-call costs (lazy imports, caches) are not the call's own
    out = []
    for _ in range(n):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return statistics.median(out)
n = int(sys.argv[3])
result = {
    "paramscope (CPU model)": timed(lambda: str(paramscope.summary(model, inputs=spec)), n),
    "paramscope (meta model)": timed(lambda: str(paramscope.summary(meta, inputs=spec)), n),
    "torchinfo (CPU model)": timed(lambda: str(torchinfo.summary(model, input_data={"input_ids": ids},
        col_names=("output_size", "num_params", "mult_adds"), verbose=0)), n),
}
print(json.dumps(result))
"""


def _commands(name: str, folder: Path) -> dict[str, list[str]]:
    spec = MODELS[name]
    config = folder / "config.json"
    seq = str(spec["seq"])
    py = sys.executable
    cmds = {"paramscope": [py, "-m", "paramscope", "summary", str(config), "--input", f"input_ids=int64[1,{seq}]"]}
    if spec["torchinfo"]:
        cmds["torchinfo"] = [py, "-c", TORCHINFO, str(config), seq]
    else:
        cmds["floor (meta + FlopCounterMode)"] = [py, "-c", FLOOR, str(config), seq]
    return cmds


def run(models: list[str], repeat: int, in_process: int) -> None:
    groups: dict[str, list[Row]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            folder = Path(tmp) / name
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps(MODELS[name]["config"]))
            # interleaved runs, so load changes hit every tool alike
            rows: list[Row] = list(measure_all(list(_commands(name, folder).items()), repeat=repeat, env=ENV))
            if not MODELS[name]["torchinfo"]:
                rows.append(("torchinfo", "cannot run: needs the weights in memory"))
            groups[str(MODELS[name]["label"])] = rows
        table("Whole runs, fresh process each", groups)
        if in_process and "gpt2" in models:
            folder = Path(tmp) / "gpt2"
            cmd = [sys.executable, "-c", IN_PROCESS, str(folder / "config.json"), "128", str(in_process)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=child_env(ENV), cwd=ROOT, check=True)
            times = json.loads(done.stdout.strip().splitlines()[-1])
            base = times["torchinfo (CPU model)"]
            print(f"\nThe summary call alone, GPT-2 small, in one process, median of {in_process} after a warm-up\n")
            print("| call | seconds | torchinfo / this |")
            print("|---|---:|---:|")
            for label, sec in times.items():
                print(f"| {label} | {sec:.3f} | {base / sec:.2f}x |")


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--models", default="gpt2,llama1b,llama70b", help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--in-process", type=int, default=5, help="in-process calls timed on GPT-2 (0: skip)")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    run(models, max(1, args.repeat), max(0, args.in_process))


if __name__ == "__main__":
    main()
