"""Side by side: ``paramscope summary`` of a Llama-2-70B Distributed Checkpoint against torch's metadata reader.

Run from the repository root:

    python bench/dcp_vs_torch.py [--repeat 3] [--no-optimizer]

It writes, in a temporary folder, the ``.metadata`` of a ``torch.distributed.checkpoint`` folder
with Llama-2-70B's layout as FSDP2 saves it on 8 ranks: 80 layers, hidden 8192, 64 query and
8 key/value heads of 128, MLP 28672, vocabulary 32000, bfloat16, every tensor split on dim 0
into 8 chunks, one ``__<rank>_0.distcp`` file per rank; with Adam's two float32 moments per
parameter by default, keyed as ``get_state_dict`` keys them (``model.*``, ``optim.state.*``).
The metadata is pickled with torch's own classes; the ``.distcp`` files are sparse (truncated
to their size, no data written), so the folder takes no disk space.

Each tool then runs in a fresh subprocess, several times, and lists every tensor's name and
global shape:

- ``paramscope summary FOLDER`` (the CLI: the pickle interpreted without unpickling, every
  chunk checked against its file and the tiling);
- ``FileSystemReader(FOLDER).read_metadata()`` printing the same (``pickle.load``: it trusts
  the file).

``dcp_to_torch_save`` is not run: it gathers every tensor into one process, 138 GB of weights
for this model. The table shows the median wall time and peak RSS (``ru_maxrss`` of each
child) and the ratios against paramscope. Needs torch.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import arg_parser, measure, paramscope_totals, table  # noqa: E402

LAYERS, HIDDEN, HEADS, KV_HEADS, MLP, VOCAB, RANKS = 80, 8192, 64, 8, 28672, 32000, 8
HEAD_DIM = HIDDEN // HEADS
#: torch.save framing around each chunk's bytes in a .distcp file (a few hundred bytes in practice).
FRAMING = 1024

_TORCH_LIST = (
    "import sys\n"
    "from torch.distributed.checkpoint import FileSystemReader\n"
    "from torch.distributed.checkpoint.metadata import TensorStorageMetadata\n"
    "md = FileSystemReader(sys.argv[1]).read_metadata()\n"
    "for k, v in md.state_dict_metadata.items():\n"
    "    if isinstance(v, TensorStorageMetadata): print(k, tuple(v.size), v.properties.dtype)\n"
)


def llama2_70b() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of LlamaForCausalLM at Llama-2-70B's size."""
    kv = KV_HEADS * HEAD_DIM
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)), (p + "self_attn.k_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.v_proj.weight", (kv, HIDDEN)), (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
            (p + "mlp.gate_proj.weight", (MLP, HIDDEN)), (p + "mlp.up_proj.weight", (MLP, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, MLP)),
            (p + "input_layernorm.weight", (HIDDEN,)), (p + "post_attention_layernorm.weight", (HIDDEN,)),
        ]  # fmt: skip
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return out


def write_dcp(folder: Path, optimizer: bool) -> int:
    """Write the folder; return the model's parameter count."""
    import torch
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (
        ChunkStorageMetadata, Metadata, MetadataIndex, TensorProperties, TensorStorageMetadata,
    )  # fmt: skip

    entries: dict[str, TensorStorageMetadata] = {}
    storage: dict[MetadataIndex, _StorageInfo] = {}
    used = [0] * RANKS
    n_params = 0

    def add(key: str, shape: tuple[int, ...], dtype: torch.dtype, itemsize: int) -> None:
        rows = -(-shape[0] // RANKS)
        chunks = []
        for r in range(RANKS):
            start, stop = r * rows, min(shape[0], (r + 1) * rows)
            sizes = (max(0, stop - start), *shape[1:])
            offsets = (min(start, shape[0]), *(0 for _ in shape[1:]))
            chunks.append(ChunkStorageMetadata(torch.Size(offsets), torch.Size(sizes)))
            length = itemsize * sizes[0] * (1 if len(shape) == 1 else shape[1]) + FRAMING
            storage[MetadataIndex(key, torch.Size(offsets))] = _StorageInfo(f"__{r}_0.distcp", used[r], length)
            used[r] += length
        entries[key] = TensorStorageMetadata(TensorProperties(dtype=dtype), torch.Size(shape), chunks)

    for name, shape in llama2_70b():
        add(f"model.{name}", shape, torch.bfloat16, 2)
        n_params += shape[0] * (shape[1] if len(shape) > 1 else 1)
        if optimizer:
            add(f"optim.state.{name}.exp_avg", shape, torch.float32, 4)
            add(f"optim.state.{name}.exp_avg_sq", shape, torch.float32, 4)
    folder.mkdir()
    (folder / ".metadata").write_bytes(pickle.dumps(Metadata(entries, storage_data=storage, version="1.0.0")))
    for r in range(RANKS):
        with open(folder / f"__{r}_0.distcp", "wb") as f:
            f.truncate(used[r])  # sparse: the size is real, no block is written
    return n_params


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--no-optimizer", action="store_true", help="model weights only, no Adam state")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "llama2-70b-dcp"
        n = write_dcp(folder, optimizer=not args.no_optimizer)
        params = paramscope_totals(folder)["params"]
        assert params == n, (params, n)
        meta = (folder / ".metadata").stat().st_size
        apparent = sum(p.stat().st_size for p in folder.glob("*.distcp"))
        print(f"folder: {RANKS} ranks, .metadata {meta / 2**20:.1f} MiB, .distcp {apparent / 2**30:.0f} GiB apparent "
              f"(sparse), {n:,} parameters (paramscope agrees: {params:,})")  # fmt: skip
        rows = [
            ("paramscope summary", [sys.executable, "-m", "paramscope", "summary", str(folder)]),
            ("FileSystemReader.read_metadata()", [sys.executable, "-c", _TORCH_LIST, str(folder)]),
        ]
        results = [measure(label, cmd, repeat=args.repeat) for label, cmd in rows]
    what = "model + Adam state" if not args.no_optimizer else "model only"
    table(f"Llama-2-70B DCP folder ({what}): list every tensor's name and global shape", results)


if __name__ == "__main__":
    main()
