"""Real Megatron-core GPT models, sharded on CPU over a 4-process gloo group, saved as Megatron-LM saves them.

Megatron-core builds its tensor-, pipeline- and expert-parallel GPT model on CPU
(``use_cpu_initialization``, the local layer spec: no Transformer Engine, no GPU). Each saving
rank writes its state dict where Megatron-LM's ``save_checkpoint`` puts it
(``get_checkpoint_name``: ``iter_<7 digits>/mp_rank_<tp:02d>[_<pp:03d>][_<ep:03d>]/model_optim_rng.pt``,
written by the ranks whose expert-data-parallel rank is 0), with ``args``, ``iteration``,
``checkpoint_version`` and ``optimizer`` (an Adam state, as Megatron's ``FP32Optimizer`` saves it)
beside ``model``; two layouts are also saved in Megatron's default
``torch_dist`` format (``dist_checkpointing.save``: a DCP folder). The one change to
Megatron-core: three CUDA calls are no-ops in the job's processes (see ``_job``). The same
model built unsharded (tp = pp = ep = 1) is
the oracle: its state dict's names and shapes and its parameter count.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from _dcp_jobs import _free_port

LAYERS, HIDDEN, HEADS, FFN, VOCAB, SEQ = 4, 16, 4, 64, 128, 32

#: (folder name, tensor parallel, pipeline parallel, expert parallel, experts, tied embeddings, expert tensor parallel)
LAYOUTS = [
    ("tp2", 2, 1, 1, 0, False, None),
    ("tp2_pp2", 2, 2, 1, 0, False, None),
    ("pp4_tied", 1, 4, 1, 0, True, None),
    ("ep2_moe", 1, 1, 2, 4, False, None),
    ("tp2_ep2_moe", 2, 1, 2, 4, False, None),
    ("pp2_ep2_moe", 1, 2, 2, 4, False, None),
    ("tp2_ep2_etp1_moe", 2, 1, 2, 4, False, 1),
]

#: Layouts also saved with ``dist_checkpointing.save`` (``--ckpt-format torch_dist``), as ``<name>_torch_dist/``.
TORCH_DIST = ("tp2_pp2", "tp2_ep2_moe")


def _model(tp: int, pp: int, ep: int, experts: int, tied: bool, etp: int | None = None) -> object:
    import torch
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.transformer_config import TransformerConfig

    torch.manual_seed(0)
    moe: dict[str, object] = dict(num_moe_experts=experts, moe_router_topk=2, moe_ffn_hidden_size=FFN, add_bias_linear=False) if experts else {}
    if etp is not None:
        moe["expert_tensor_parallel_size"] = etp
    config = TransformerConfig(num_layers=LAYERS, hidden_size=HIDDEN, num_attention_heads=HEADS, ffn_hidden_size=FFN,
                               tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                               expert_model_parallel_size=ep, pipeline_dtype=torch.float32, use_cpu_initialization=True,
                               **moe)  # fmt: skip
    spec = get_gpt_layer_local_spec(num_experts=experts or None, moe_grouped_gemm=False)
    return GPTModel(config=config, transformer_layer_spec=spec, vocab_size=VOCAB, max_sequence_length=SEQ,
                    pre_process=ps.is_pipeline_first_stage(), post_process=ps.is_pipeline_last_stage(),
                    share_embeddings_and_output_weights=tied)  # fmt: skip


def _adam_state(model: object) -> dict[str, object]:
    """What Megatron's ``FP32Optimizer.state_dict()`` saves: the torch optimizer's state after a step
    (zero gradients: the moments exist, their values do not matter here)."""
    import torch

    params = list(model.parameters())  # type: ignore[attr-defined]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = torch.optim.Adam(params, lr=1e-4)
    opt.step()
    return opt.state_dict()


def _job(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import warnings

    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    warnings.filterwarnings("ignore")
    # Megatron-core assumes a GPU in three places: tied embeddings over pipeline stages move the last
    # stage's copy to it for an all-reduce (setup_embeddings_and_output_layer), and
    # dist_checkpointing.save synchronises the device and builds a flag tensor on it. On CPU with
    # gloo the tensors stay where they are.
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.cuda.synchronize = lambda *args, **kwargs: None
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment,return-value]
    from megatron.core import dist_checkpointing
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for name, tp, pp, ep, experts, tied, etp in LAYOUTS:
            ps.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, expert_model_parallel_size=ep,
                                         expert_tensor_parallel_size=etp)  # fmt: skip
            model = _model(tp, pp, ep, experts, tied, etp)
            if ps.get_expert_data_parallel_rank() == 0:
                t, p, e = ps.get_tensor_model_parallel_rank(), ps.get_pipeline_model_parallel_rank(), ps.get_expert_model_parallel_rank()
                sub = f"mp_rank_{t:02d}" + (f"_{p:03d}" if pp > 1 else "") + (f"_{e:03d}" if ep > 1 else "")
                folder = Path(out) / name / "iter_0000001" / sub
                folder.mkdir(parents=True, exist_ok=True)
                args = argparse.Namespace(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                                          expert_model_parallel_size=ep, num_layers=LAYERS, hidden_size=HIDDEN,
                                          ffn_hidden_size=FFN, num_attention_heads=HEADS, padded_vocab_size=VOCAB,
                                          num_experts=experts or None, untie_embeddings_and_output_weights=not tied,
                                          expert_tensor_parallel_size=etp if etp is not None else tp,
                                          params_dtype=torch.float32)  # fmt: skip
                torch.save({"args": args, "checkpoint_version": 3.0, "iteration": 1, "model": model.state_dict(),  # type: ignore[attr-defined]
                            "optimizer": _adam_state(model)}, folder / "model_optim_rng.pt")  # fmt: skip
                (Path(out) / name / "latest_checkpointed_iteration.txt").write_text("1")
            dist.barrier()
            if name in TORCH_DIST:  # the same model in Megatron's default format: a DCP folder, every rank writing
                (Path(out) / f"{name}_torch_dist").mkdir(exist_ok=True)
                dist.barrier()
                dist_checkpointing.save(model.sharded_state_dict(), str(Path(out) / f"{name}_torch_dist"))  # type: ignore[attr-defined]
                dist.barrier()
            ps.destroy_model_parallel()
        ps.initialize_model_parallel()  # the oracles: each layout's model unsharded (every rank joins the groups)
        oracle = {}
        for name, _, _, _, experts, tied, _ in LAYOUTS:
            model = _model(1, 1, 1, experts, tied)
            oracle[name] = {
                "state_dict": {k: list(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)},  # type: ignore[attr-defined]
                "params": sum(p.numel() for p in model.parameters()),  # type: ignore[attr-defined]
            }
        if rank == 0:
            (Path(out) / "oracle.json").write_text(json.dumps(oracle))
        ps.destroy_model_parallel()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def save_megatron_checkpoints(out: Path, world: int = 4) -> dict[str, dict[str, object]]:
    """Write ``out/<layout>/`` for every layout in :data:`LAYOUTS`; return the unsharded oracles."""
    import torch.multiprocessing as mp

    mp.spawn(_job, args=(world, _free_port(), str(out)), nprocs=world, join=True)
    return json.loads((out / "oracle.json").read_text())  # type: ignore[no-any-return]
