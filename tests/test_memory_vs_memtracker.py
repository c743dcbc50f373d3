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
