"""How much of a PyTorch or Hugging Face call is paramscope, and how much is importing frameworks.

Run from the repository root:

    python bench/import_time.py               # 5 fresh runs per command, medians
    python bench/import_time.py --repeat 9

Every command is a fresh process, as a user runs it (see ``_measure.py``). Two groups, each
with its floors first:

- a tiny PyTorch model in a script (``Linear-ReLU-Linear``): ``python -c "import torch"``;
  ``import torch, torch._dynamo`` (torch imports ``torch._dynamo`` itself on the first operator
  that runs through a Python meta kernel or a fake tensor, so any forward pass without data
  pays it); then ``paramscope summary tiny.py:model`` without an input (no pass) and with
  ``--input-size 1,8`` (one pass).
- a two-layer Llama ``config.json``: ``import torch, transformers``; ``import torch,
  transformers.models.llama.modeling_llama`` (the modules that define the model, which import
  most of transformers' model-loading machinery); then paramscope reading the config's tensors
  alone (the API with ``inputs=[]``) and ``paramscope summary config.json`` (its default input,
  one pass).

Ratios are against the first row of each group (``import torch``, ``import torch,
transformers``); the difference between a paramscope row and the floor above it is
paramscope's own time, reading and the pass included.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Row, arg_parser, measure_all, table  # noqa: E402

ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", "KERAS_BACKEND": "torch"}

TINY = """import torch
from torch import nn

model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
"""

LLAMA = (
    '{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, '
    '"intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, '
    '"num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 256}'
)


def main() -> None:
    parser = arg_parser(__doc__)
    parser.set_defaults(repeat=5)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "tiny.py"
        script.write_text(TINY)
        config = Path(tmp) / "config.json"
        config.write_text(LLAMA)
        torch_jobs = [
            ("python -c 'import torch'", [py, "-c", "import torch"]),
            ("python -c 'import torch, torch._dynamo'", [py, "-c", "import torch, torch._dynamo"]),
            ("paramscope summary tiny.py:model (no pass)", [py, "-m", "paramscope", "summary", f"{script}:model"]),
            ("paramscope summary tiny.py:model --input-size 1,8",
             [py, "-m", "paramscope", "summary", f"{script}:model", "--input-size", "1,8"]),
        ]  # fmt: skip
        hf_jobs = [
            ("python -c 'import torch, transformers'", [py, "-c", "import torch, transformers"]),
            ("python -c 'import torch, transformers.models.llama.modeling_llama'",
             [py, "-c", "import torch, transformers.models.llama.modeling_llama"]),
            ("paramscope: Llama config.json, tensors only (inputs=[])",
             [py, "-c", f"import paramscope; paramscope.read({str(config)!r}, inputs=[])"]),
            ("paramscope summary config.json (default input, one pass)", [py, "-m", "paramscope", "summary", str(config)]),
        ]  # fmt: skip
        results = measure_all(torch_jobs + hf_jobs, repeat=args.repeat, env=ENV)
    groups: dict[str, list[Row]] = {
        "tiny torch model": list(results[: len(torch_jobs)]),
        "Llama config.json": list(results[len(torch_jobs) :]),
    }
    table("Import floors and paramscope on PyTorch and Hugging Face targets", groups)
    for name, rows in groups.items():
        floor, *_, full = rows
        assert not isinstance(floor, tuple) and not isinstance(full, tuple)
        print(f"{name}: paramscope with a pass takes {full.wall_s - floor.wall_s:.2f} s over the first floor")


if __name__ == "__main__":
    main()
