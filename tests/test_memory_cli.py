"""`paramscope memory` on the command line: reports, the JSON document, and impossible setups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import paramscope
from paramscope.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEED = f"{ROOT / 'examples' / 'torch_seed.py'}:model"
LLAMA = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256,
    "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 2,
    "intermediate_size": 688, "vocab_size": 1000, "max_position_embeddings": 512, "torch_dtype": "float16",
}


@pytest.fixture()
def llama(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA))
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_training_json_document(llama: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    rc, out, _ = _run(["memory", str(llama), "--train", "--seq", "128", "--batch", "2", "--precision", "bf16-mixed",
                       "--shard", "zero3", "--dp", "8", "--device", "24GiB", "--format", "json"], capsys)
    assert rc == 0
    doc = json.loads(out)
    assert doc["schema"] == "paramscope-memory/1" and doc["mode"] == "training"
    parts = doc["per_device"]
    assert set(parts) == {"params", "grads", "optimizer", "activations", "kv_cache", "temporary", "peak"}
    assert [p["name"] for p in doc["phases"]] == ["forward", "backward", "optimizer step"]
    assert parts["peak"] == max(p["bytes"] for p in doc["phases"])
    # Gradients are not alive at the end of the forward pass: the peak is not the sum of parts.
    assert parts["peak"] < sum(v for k, v in parts.items() if k != "peak")
    assert doc["fits"]["fits"] is True and doc["fits"]["fewest_gpus"] >= 1
    n = sum(paramscope.totals(llama, inputs=[]).__getattribute__(k) for k in ("trainable",))
    assert parts["optimizer"] == -(-12 * n // 8)  # fp32 master + two Adam moments, sharded over 8


def test_inference_text_with_kv_cache(llama: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    rc, out, _ = _run(["memory", str(llama), "--seq", "512", "--batch", "4", "--width", "120"], capsys)
    assert rc == 0
    assert "prefill" in out and "decode" in out and "kv_cache" in out
    kv = 2 * 2 * 32 * 8 * 512 * 4 * 2  # k and v, 2 kv heads x 32 dims, 8 layers, 512 tokens, 4 seqs, fp16
    assert f"{kv:,}" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tp", "3"], "--tp 3 does not divide the model's 8 attention heads"),
        (["--dp", "0"], "--dp 0 is not a whole number >= 1"),
        (["--train", "--shard", "zero3"], "give their number with --dp N"),
        (["--device", "1KiB"], "less than one repeated block's weights"),
        (["--pp", "16"], "--pp 16 needs at least 16 repeated blocks"),
    ],
)
def test_impossible_setups_get_one_line(llama: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    rc, out, err = _run(["memory", str(llama), *args], capsys)
    assert rc == 2 and out == ""
    assert message in err and err.count("\n") == 1


def test_seq_on_a_model_without_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    rc, _, err = _run(["memory", SEED, "--input-size", "8,4096", "--seq", "128"], capsys)
    assert rc == 2 and "no" in err and "token" in err and err.count("\n") == 1


def test_forward_failure_keeps_model_states() -> None:
    torch = pytest.importorskip("torch")

    class DataDependent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum().item() > 0:  # needs data the meta device does not have
                return self.lin(x)
            return x

    plan = paramscope.memory(DataDependent(), train=True, input_size=(4, 16))
    assert plan.figure("params").n_bytes == 4 * (16 * 16 + 16)
    assert plan.figure("optimizer").n_bytes == 8 * (16 * 16 + 16)
    assert plan.figure("activations").n_bytes is None and plan.peak is None
    assert any("Activations unknown" in n and "stopped in the model (DataDependent)" in n for n in plan.notes)
    doc = json.loads(paramscope.render_memory(plan, format="json"))
    assert doc["per_device"]["activations"] is None and doc["per_device"]["peak"] is None


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_renders_every_format(fmt: str) -> None:
    pytest.importorskip("torch")
    from examples.torch_seed import model

    plan = paramscope.memory(model, train=True, optimizer="adam", input_size=(8, 4096), device="a100-40gb")
    text = paramscope.render_memory(plan, format=fmt)
    assert "17,117,824" in text and "Not counted" in text


def test_checkpoint_with_config_beside(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    doc = {**LLAMA, "num_hidden_layers": 2}
    config = transformers.AutoConfig.for_model(**{k: v for k, v in doc.items() if k != "architectures"})
    model = transformers.LlamaForCausalLM(config).to(torch.float16)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors_torch.save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(doc))
    stored = sum(t.numel() * t.element_size() for t in state.values())

    plan = paramscope.memory(tmp_path / "model.safetensors", seq=64, batch=2)
    assert plan.figure("params").n_bytes == stored
    assert plan.figure("kv_cache").n_bytes == 2 * 2 * 32 * 2 * 64 * 2 * 2
    assert plan.peak is not None and [p.name for p in plan.phases] == ["prefill", "decode"]
    alone = tmp_path / "alone"
    alone.mkdir()
    (tmp_path / "model.safetensors").rename(alone / "model.safetensors")
    weights_only = paramscope.memory(alone / "model.safetensors")
    assert weights_only.figure("activations").n_bytes is None and weights_only.peak is None


def test_gguf_kv_cache_from_its_metadata(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_uint32("llama.embedding_length", 256)
    w.add_uint32("llama.attention.head_count", 8)
    w.add_uint32("llama.attention.head_count_kv", 2)
    w.add_tensor("blk.0.attn_q.weight", np.zeros((256, 256), np.float16))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(256, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    plan = paramscope.memory(tmp_path / "m.gguf", seq=1000, batch=3)
    assert plan.figure("params").n_bytes == 256 * 256 * 2 + 256 * 4  # each tensor as stored
    assert plan.figure("kv_cache").n_bytes == 2 * 2 * 32 * 2 * 1000 * 3 * 2  # f16 cache
    assert plan.figure("activations").n_bytes is None and plan.peak is None


def test_tensor_and_pipeline_parallel_split_the_weights() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(**{k: v for k, v in LLAMA.items() if k != "architectures"})
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    matrices = sum(p.numel() for p in model.parameters() if p.dim() >= 2)
    vectors = sum(p.numel() for p in model.parameters() if p.dim() < 2)
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    outside = sum(p.numel() for p in model.parameters()) - 8 * layer
    buffers = sum(b.numel() * 4 for b in model.buffers())  # the rotary inv_freq, fp32
    tp = paramscope.memory(LLAMA, precision="fp32", tp=2, seq=16)
    assert tp.figure("params").n_bytes == 4 * (matrices // 2 + vectors) + buffers
    pp = paramscope.memory(LLAMA, precision="fp32", pp=2, seq=16)
    embed, head_and_norm = 1000 * 256, 1000 * 256 + 256
    assert outside == embed + head_and_norm
    assert pp.figure("params").n_bytes == 4 * (4 * layer + max(embed, head_and_norm)) + buffers


def test_selective_recompute_drops_attention_matrices() -> None:
    pytest.importorskip("transformers")

    def activations(checkpointing: str, attention: str) -> int | None:
        plan = paramscope.memory(LLAMA, train=True, seq=128, checkpointing=checkpointing, attention=attention)
        return plan.figure("activations").n_bytes

    assert activations("selective", "flash") == activations("none", "flash")  # flash stores no L x S
    none, selective, full = (activations(c, "math") for c in ("none", "selective", "full"))
    assert none is not None and selective is not None and full is not None
    assert full < selective < none
