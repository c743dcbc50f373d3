"""Side by side: paramscope against the formats' own libraries on big checkpoint files.

Run from the repository root:

    python bench/files_vs_libraries.py [--repeat 3]

It builds, in a temporary folder, (1) a sharded safetensors checkpoint with Llama-2-70B's
tensor layout (80 layers, hidden 8192, 64 heads, 8 KV heads, intermediate 28672, vocab 32000,
bf16, about 138 GB) as SPARSE files: each shard is its real header followed by
``truncate(total)``, so the data takes no disk; (2) a GGUF file with a few hundred tensors and a
32,000-word vocabulary, written by the gguf package. Each tool then runs in a fresh
subprocess, several times; the table shows the median wall time and peak RSS of each, and
paramscope's ratio against each library.

Needs: safetensors, numpy and torch (for the safetensors rows), gguf (to write and read GGUF).
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Result, arg_parser, measure, table  # noqa: E402

# Llama-2-70B (config.json of meta-llama/Llama-2-70b-hf).
LAYERS, HIDDEN, HEADS, KV_HEADS, INTER, VOCAB = 80, 8192, 64, 8, 28672, 32000
N_SHARDS = 15


def llama70b_tensors() -> list[tuple[str, tuple[int, ...]]]:
    kv = HIDDEN // HEADS * KV_HEADS
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
            (p + "self_attn.k_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.v_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
            (p + "mlp.gate_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.up_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, INTER)),
            (p + "input_layernorm.weight", (HIDDEN,)),
            (p + "post_attention_layernorm.weight", (HIDDEN,)),
        ]
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return out


def write_sparse_checkpoint(folder: Path) -> int:
    """Write the 15 sparse shards, the index and config.json; return the total data bytes."""
    tensors = llama70b_tensors()
    sizes = [2 * _prod(s) for _, s in tensors]
    total = sum(sizes)
    target = total / N_SHARDS
    shards: list[list[int]] = [[]]
    acc = 0
    for i, size in enumerate(sizes):
        if acc >= target * len(shards) and len(shards) < N_SHARDS:
            shards.append([])
        shards[-1].append(i)
        acc += size
    weight_map = {}
    for s, members in enumerate(shards):
        name = f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        pos = 0
        for i in members:
            tname, shape = tensors[i]
            header[tname] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [pos, pos + sizes[i]]}
            pos += sizes[i]
            weight_map[tname] = name
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / name, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            f.truncate(8 + len(raw) + pos)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
              "num_hidden_layers": LAYERS, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    (folder / "config.json").write_text(json.dumps(config))
    return total


def write_gguf(path: Path, n_layers: int = 32, dim: int = 256, vocab: int = 32000) -> int:
    import numpy as np
    import gguf

    q = gguf.GGMLQuantizationType
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(n_layers)
    w.add_context_length(4096)
    w.add_embedding_length(dim)
    w.add_head_count(8)
    w.add_token_list([f"tok{i}" for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([1] * vocab)

    def raw(rows: int, cols: int, t: gguf.GGMLQuantizationType) -> np.ndarray:
        be, bb = gguf.GGML_QUANT_SIZES[t]
        return np.zeros((rows, cols // be * bb), np.uint8)

    w.add_tensor("token_embd.weight", raw(vocab, dim, q.Q8_0), raw_dtype=q.Q8_0)
    n = 1
    for i in range(n_layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(dim, np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(dim, np.float32))
        for name, rows, cols in (("attn_q", dim, dim), ("attn_k", dim, dim), ("attn_v", dim, dim),
                                 ("attn_output", dim, dim), ("ffn_gate", 2 * dim, dim),
                                 ("ffn_up", 2 * dim, dim), ("ffn_down", dim, 2 * dim)):
            w.add_tensor(p + name + ".weight", raw(rows, cols, q.Q4_K), raw_dtype=q.Q4_K)
        n += 9
    w.add_tensor("output_norm.weight", np.ones(dim, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n + 1


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


ST_LIBRARY = """
import sys, glob
from safetensors import safe_open
n = 0
for f in sorted(glob.glob(sys.argv[1] + "/*.safetensors")):
    with safe_open(f, framework=sys.argv[2]) as h:
        for k in h.keys():
            shape = h.get_slice(k).get_shape()
            c = 1
            for d in shape:
                c *= d
            n += c
print(n)
"""

GGUF_LIBRARY = """
import sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
print(sum(int(t.n_elements) for t in r.tensors), len(r.tensors))
"""

PARAMSCOPE_API = """
import sys
from paramscope.readers import read
from paramscope.analysis import totals
t = totals(read(sys.argv[1]))
print(t.params + t.buffers)
"""


def main() -> None:
    ap = arg_parser(__doc__)
    args = ap.parse_args()
    py = sys.executable
    rows: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-") as tmp:
        folder = Path(tmp) / "Llama-2-70b-sparse"
        folder.mkdir()
        total = write_sparse_checkpoint(folder)
        print(f"sparse checkpoint: {len(list(folder.glob('*.safetensors')))} shards, {total / 1e9:.1f} GB apparent")
        gpath = Path(tmp) / "bench.gguf"
        n_gguf = write_gguf(gpath)
        print(f"gguf: {n_gguf} tensors, {gpath.stat().st_size / 1e6:.1f} MB")
        jobs = [
            ("safetensors 70B", "paramscope summary (CLI)", [py, "-m", "paramscope", "summary", str(folder)]),
            ("safetensors 70B", "paramscope read+totals (API)", [py, "-c", PARAMSCOPE_API, str(folder)]),
            ("safetensors 70B", "safetensors safe_open numpy", [py, "-c", ST_LIBRARY, str(folder), "numpy"]),
            ("safetensors 70B", "safetensors safe_open pt", [py, "-c", ST_LIBRARY, str(folder), "pt"]),
            ("gguf", "paramscope summary (CLI)", [py, "-m", "paramscope", "summary", str(gpath)]),
            ("gguf", "paramscope read+totals (API)", [py, "-c", PARAMSCOPE_API, str(gpath)]),
            ("gguf", "gguf GGUFReader", [py, "-c", GGUF_LIBRARY, str(gpath)]),
        ]
        for case, tool, argv in jobs:
            r = measure(tool, argv, repeat=args.repeat, capture=True)
            rows.setdefault(case, []).append(r)
            last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
            print(f"  {case:16} {tool:30} {r.wall_s * 1000:8.0f} ms {r.peak_bytes / 2**20:8.1f} MiB   {last[:60]}",
                  flush=True)  # fmt: skip
    table("list every tensor and count the parameters", rows)


if __name__ == "__main__":
    main()
