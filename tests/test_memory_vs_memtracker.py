"""The memory planner against PyTorch's own MemTracker, run in the test on fake tensors.

MemTracker (torch.distributed._tools.mem_tracker) follows every storage of a real training
loop (forward, backward, optimizer step) under FakeTensorMode and reports the peak and what
was alive at it, by category. The same model and setup are planned by paramscope and must
agree within 10% in the peak and in each category. The loops use ``foreach=False`` optimizers
and dropout-free models (MemTracker runs CPU kernels, whose dropout keeps a float mask where
CUDA keeps a 1-byte one; paramscope models the CUDA kernel).
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed._tools.mem_tracker")

import paramscope  # noqa: E402


def _memtracker(build: Any, make_inputs: Any, optimizer: Any, loss_of: Any) -> dict[str, Any]:
    """Two steps of a training loop under MemTracker; the peak and categories of the second."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType, _ModState

    with FakeTensorMode():
        model = build()
        model.train()
        opt = optimizer(model.parameters())
        inputs = make_inputs()
        tracker = MemTracker()
        tracker.track_external(model, opt)
        with tracker:
            for _ in range(2):  # the second step is the steady state: optimizer states exist
                tracker.reset_mod_stats()
                loss = loss_of(model, inputs)
                loss.backward()
                del loss
                opt.step()
                opt.zero_grad(set_to_none=True)
        peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
        current = next(iter(tracker.get_tracker_snapshot("current").values()))
        fw = tracker.memory_tracking[model].snapshots[_ModState.PEAK_FW][-1]
        fw_peak = next(iter(fw.values()))
    return {
        "peak": peak["Total"],
        "params": peak[_MemRefType.PARAM] + peak[_MemRefType.BUFFER],
        "optimizer": current[_MemRefType.OPT],
        "activations": fw_peak[_MemRefType.ACT] + fw_peak[_MemRefType.TEMP],
        "opt_step_peak": peak[_MemRefType.OPT] + peak[_MemRefType.GRAD] + peak[_MemRefType.PARAM] + peak[_MemRefType.BUFFER],
    }


def _close(ours: int | None, theirs: int, what: str) -> None:
    assert ours is not None, what
    assert abs(ours - theirs) <= 0.10 * theirs, f"{what}: paramscope {ours:,} vs MemTracker {theirs:,}"


def _seed() -> Any:
    from torch import nn

    return nn.Sequential(nn.Linear(4096, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Linear(512, 80), nn.Sigmoid())


def test_seed_adam_fp32_matches_memtracker() -> None:
    oracle = _memtracker(
        _seed, lambda: torch.randn(64, 4096), lambda p: torch.optim.Adam(p, foreach=False),
        lambda m, x: m(x).sum(),
    )
    plan = paramscope.memory(_seed(), train=True, optimizer="adam", input_size=(64, 4096))
    _close(plan.peak, oracle["peak"], "peak")
    _close(plan.figure("params").n_bytes, oracle["params"], "parameters and buffers")
    _close(plan.figure("optimizer").n_bytes, oracle["optimizer"], "optimizer states")
    forward = next(p for p in plan.phases if p.name == "forward")
    _close(dict(forward.parts)["activations"], oracle["activations"], "activations at the forward peak")


def _gpt2(n_layer: int = 2) -> Any:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(
        n_layer=n_layer, n_embd=256, n_head=4, vocab_size=1000, n_positions=256,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )
    cfg._attn_implementation = "eager"
    return transformers.GPT2LMHeadModel(cfg)


@pytest.mark.parametrize("checkpointing", ["none", "full"])
def test_gpt2_adamw_matches_memtracker(checkpointing: str) -> None:
    def build() -> Any:
        m = _gpt2()
        if checkpointing == "full":
            enable = getattr(m, "activation_checkpointing_enable", None) or m.gradient_checkpointing_enable
            enable({"use_reentrant": False})
        return m

    def loss_of(m: Any, ids: Any) -> Any:
        return m(input_ids=ids, labels=ids, use_cache=False).loss

    oracle = _memtracker(
        build, lambda: torch.zeros(4, 128, dtype=torch.int64), lambda p: torch.optim.AdamW(p, foreach=False), loss_of
    )
    with torch.device("meta"):
        model = _gpt2()
    plan = paramscope.memory(
        model, train=True, inputs=["input_ids=int64[4,128]"], attention="math", checkpointing=checkpointing,
    )
    _close(plan.peak, oracle["peak"], "peak")
    _close(plan.figure("params").n_bytes, oracle["params"], "parameters")
    _close(plan.figure("optimizer").n_bytes, oracle["optimizer"], "optimizer states")
    forward = next(p for p in plan.phases if p.name == "forward")
    _close(dict(forward.parts)["activations"], oracle["activations"], "activations at the forward peak")


_FSDP_SCRIPT = """
import json, torch, torch.distributed as dist, transformers
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.testing._internal.distributed.fake_pg import FakeStore
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker, _FSDPRefType as R
dist.init_process_group("fake", rank=0, world_size=4, store=FakeStore())
cfg = transformers.AutoConfig.for_model(**json.loads(%r))
cfg._attn_implementation = "eager"
mesh = init_device_mesh("cpu", (4,))
with FakeTensorMode():
    model = transformers.LlamaForCausalLM(cfg)
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.AdamW(model.parameters(), foreach=False)
    ids = torch.zeros(2, 128, dtype=torch.int64)
    tracker = FSDPMemTracker(model, opt)
    with tracker:
        for i in range(2):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward(); del loss
            opt.step(); opt.zero_grad(set_to_none=True)
            if i == 0:
                tracker.reset_mod_stats()
    peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
dist.destroy_process_group()
print(json.dumps({"peak": peak["Total"], "params": peak[R.SHARDED_PARAM], "optimizer": peak[R.OPT],
                  "activations": peak[R.ACT] + peak[R.TEMP]}))
"""


def test_llama_fsdp_matches_fsdp_memtracker() -> None:
    """FSDP2 over 4 ranks of a fake process group, run in a child process (it sets global state)."""
    import json
    import subprocess
    import sys

    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch.distributed._tools.fsdp2_mem_tracker")
    doc = {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8,
           "num_key_value_heads": 2, "intermediate_size": 688, "vocab_size": 1000, "max_position_embeddings": 512}
    done = subprocess.run([sys.executable, "-c", _FSDP_SCRIPT % json.dumps(doc)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    oracle = json.loads(done.stdout.strip().splitlines()[-1])

    config = transformers.AutoConfig.for_model(**doc)
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    plan = paramscope.memory(model, train=True, inputs=["input_ids=int64[2,128]"], attention="math", shard="fsdp", dp=4)
    _close(plan.peak, oracle["peak"], "peak")
    _close(plan.figure("params").n_bytes, oracle["params"], "sharded parameters")
    _close(plan.figure("optimizer").n_bytes, oracle["optimizer"], "sharded optimizer states")
    backward = next(p for p in plan.phases if p.name == "backward")
    _close(dict(backward.parts)["activations + grads"], oracle["activations"], "activations at the peak")
