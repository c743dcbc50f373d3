"""Megatron-LM TP/PP/EP folders, merged back to the unsharded model.

Two sources. Real Megatron-core GPT models (dense and mixture-of-experts), built tensor-,
pipeline- and expert-parallel on CPU in a 4-process gloo job (``_megatron_jobs``), each rank's
state dict saved where Megatron-LM's ``save_checkpoint`` puts it; the oracle is the same model
built unsharded, and each rank file loaded with torch. And folders built here by the documented
rules (Megatron-LM's training loop needs GPUs): an unsharded state dict split as
``save_checkpoint`` stores it (``iter_0000010/mp_rank_<tp>_<pp>/model_optim_rng.pt`` with
``args``, ``iteration``, ``model``, ``optimizer`` and a numpy ``rng_state``), column-parallel
weights on dim 0, row-parallel on dim 1, norms and row-parallel biases replicated, layers
renumbered per stage; these also carry the legacy names and the hostile cases.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from paramscope.analysis.totals import totals  # noqa: E402
from paramscope.cli import main  # noqa: E402
from paramscope.core.errors import CorruptFileError, UnsafeFileError  # noqa: E402
from paramscope.readers import reader_for  # noqa: E402
from paramscope.readers.distributed import megatron  # noqa: E402
from paramscope.readers.distributed.layout import rank_layout  # noqa: E402

LAYERS, HIDDEN, FFN, VOCAB = 4, 16, 64, 128
#: Megatron-core GPT tensors of one layer: (name, shape, split dim or None), as the test states the rules.
LAYER = [
    ("self_attention.linear_qkv.layer_norm_weight", (HIDDEN,), None),
    ("self_attention.linear_qkv.weight", (3 * HIDDEN, HIDDEN), 0),
    ("self_attention.linear_qkv.bias", (3 * HIDDEN,), 0),
    ("self_attention.linear_proj.weight", (HIDDEN, HIDDEN), 1),
    ("self_attention.linear_proj.bias", (HIDDEN,), None),
    ("mlp.linear_fc1.layer_norm_weight", (HIDDEN,), None),
    ("mlp.linear_fc1.weight", (FFN, HIDDEN), 0),
    ("mlp.linear_fc1.bias", (FFN,), 0),
    ("mlp.linear_fc2.weight", (HIDDEN, FFN), 1),
    ("mlp.linear_fc2.bias", (HIDDEN,), None),
]


def full_model() -> dict[str, tuple[torch.Tensor, int | None]]:
    torch.manual_seed(0)
    out: dict[str, tuple[torch.Tensor, int | None]] = {"embedding.word_embeddings.weight": (torch.randn(VOCAB, HIDDEN), 0)}
    for i in range(LAYERS):
        for name, shape, dim in LAYER:
            out[f"decoder.layers.{i}.{name}"] = (torch.randn(*shape), dim)
    out["decoder.final_layernorm.weight"] = (torch.randn(HIDDEN), None)
    out["output_layer.weight"] = (torch.randn(VOCAB, HIDDEN), 0)
    return out


def write_megatron(root: Path, tp: int, pp: int, iteration: int = 10) -> Path:
    (root / "latest_checkpointed_iteration.txt").write_text(str(iteration))
    folder = root / f"iter_{iteration:07d}"
    per_stage = LAYERS // pp
    args = argparse.Namespace(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, num_layers=LAYERS,
                              hidden_size=HIDDEN, ffn_hidden_size=FFN, padded_vocab_size=VOCAB, params_dtype=torch.float32)  # fmt: skip
    for p in range(pp):
        for t in range(tp):
            model = {}
            for name, (value, dim) in full_model().items():
                if name.startswith("decoder.layers."):
                    layer = int(name.split(".")[2])
                    if layer // per_stage != p:
                        continue
                    name = name.replace(f"layers.{layer}.", f"layers.{layer - p * per_stage}.", 1)
                elif name.startswith("embedding.") and p != 0 or not name.startswith(("embedding.", "decoder.layers.")) and p != pp - 1:
                    continue
                model[name] = value if dim is None else value.chunk(tp, dim)[t].clone()
            sub = folder / (f"mp_rank_{t:02d}" if pp == 1 else f"mp_rank_{t:02d}_{p:03d}")
            sub.mkdir(parents=True)
            torch.save({"args": args, "checkpoint_version": 3.0, "iteration": iteration, "model": model,
                        "optimizer": {"param_groups": [{"lr": 1e-4}]},
                        "rng_state": [{"np_rng_state": np.random.get_state(), "torch_rng_state": torch.get_rng_state()}]},
                       sub / "model_optim_rng.pt")  # fmt: skip
    return folder


@pytest.mark.parametrize(("tp", "pp"), [(2, 1), (2, 2), (4, 2), (1, 4)])
def test_shards_merge_to_the_unsharded_model(tmp_path: Path, tp: int, pp: int) -> None:
    write_megatron(tmp_path, tp, pp)
    assert reader_for(tmp_path) is megatron
    anatomy = megatron.read(tmp_path)
    ours = {f"{la.path}.{t.name}": t.shape for la in anatomy.walk() for t in la.tensors}
    full = full_model()
    assert ours == {k: tuple(v.shape) for k, (v, _) in full.items()}
    assert totals(anatomy).params == sum(v.numel() for v, _ in full.values())
    assert (anatomy.metadata["tensor_parallel"], anatomy.metadata["pipeline_parallel"]) == (str(tp), str(pp))


def test_rank_layout_places_each_slice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_megatron(tmp_path, 2, 2)
    layout = rank_layout(tmp_path)
    assert layout.world_size == 4
    rank1 = {s.tensor: (s.offsets, s.sizes) for s in layout.ranks[1].slices}
    assert rank1["decoder.layers.0.mlp.linear_fc2.weight"] == ((0, FFN // 2), (HIDDEN, FFN // 2))
    rank3 = {s.tensor: (s.offsets, s.sizes) for s in layout.ranks[3].slices}
    assert rank3["decoder.layers.3.self_attention.linear_qkv.weight"] == ((3 * HIDDEN // 2, 0), (3 * HIDDEN // 2, HIDDEN))
    assert sum(r.n_bytes for r in layout.ranks) >= layout.total_bytes  # replicated norms counted per rank
    assert main(["layout", str(tmp_path), "--width", "120"]) == 0
    assert "tensor_parallel: 2" in capsys.readouterr().out


def test_a_missing_rank_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_megatron(tmp_path, 2, 2)
    for f in (folder / "mp_rank_01_001").iterdir():
        f.unlink()
    (folder / "mp_rank_01_001").rmdir()
    with pytest.raises(CorruptFileError, match="missing"):
        megatron.read(tmp_path)
    assert main(["summary", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.fixture(scope="module")
def mcore(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Every layout of ``_megatron_jobs.LAYOUTS`` saved by a real 4-rank job, and the unsharded oracles."""
    pytest.importorskip("megatron.core")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is needed to build sharded Megatron-core models")
    import _megatron_jobs

    out = tmp_path_factory.mktemp("megatron")
    return out, _megatron_jobs.save_megatron_checkpoints(out)


def _layouts() -> list[str]:
    import _megatron_jobs

    return [name for name, *_ in _megatron_jobs.LAYOUTS]


@pytest.mark.parametrize("layout", _layouts())
def test_megatron_core_models_merge_to_the_unsharded_model(mcore: tuple[Path, dict[str, Any]], layout: str) -> None:
    import _megatron_jobs

    root, oracles = mcore
    _, tp, pp, ep, experts, tied, _ = next(x for x in _megatron_jobs.LAYOUTS if x[0] == layout)
    assert reader_for(root / layout) is megatron
    anatomy = megatron.read(root / layout)
    ours = {f"{la.path}.{t.name}": list(t.shape) for la in anatomy.walk() for t in la.tensors}
    theirs = oracles[layout]["state_dict"]
    if tied and pp > 1:  # the last stage's copy of the word embeddings, which the unsharded model does not store
        assert ours.pop("output_layer.weight") == theirs["embedding.word_embeddings.weight"]
        assert any("untie_embeddings_and_output_weights" in n for n in anatomy.notes)
    assert ours == theirs
    assert totals(anatomy).params == oracles[layout]["params"]
    meta = anatomy.metadata
    assert (meta["tensor_parallel"], meta["pipeline_parallel"], meta.get("expert_parallel", "1")) == (str(tp), str(pp), str(ep))
    if experts:
        assert meta["num_experts"] == str(experts)


@pytest.mark.parametrize("layout", _layouts())
def test_megatron_core_rank_layout_holds_each_rank_file(mcore: tuple[Path, dict[str, Any]], layout: str) -> None:
    root, _ = mcore
    folder = root / layout / "iter_0000001"
    layout_view = rank_layout(root / layout)
    assert sorted(f for r in layout_view.ranks for f in r.files) == sorted(f"{d.name}/model_optim_rng.pt" for d in folder.iterdir())
    for r in layout_view.ranks:
        stored = torch.load(folder / r.files[0], weights_only=False)
        model = [v.numel() for v in stored["model"].values() if isinstance(v, torch.Tensor)]  # a tied copy too: it is on that disk
        adam = [v.numel() for state in stored["optimizer"]["state"].values() for v in state.values()]
        assert sum(s.count for s in r.slices if not s.optimizer) == sum(model), r.files
        assert sum(s.count for s in r.slices if s.optimizer) == sum(adam), r.files


def test_megatron_optimizer_state_is_counted_apart(mcore: tuple[Path, dict[str, Any]]) -> None:
    root, oracles = mcore
    anatomy = megatron.read(root / "tp2_pp2")
    assert totals(anatomy).params == oracles["tp2_pp2"]["params"]  # the optimizer is not the model
    (group,) = anatomy.extras
    files = sorted((root / "tp2_pp2" / "iter_0000001").glob("*/model_optim_rng.pt"))
    stored = [torch.load(f, weights_only=False)["optimizer"]["state"] for f in files]
    assert sum(t.count for t in group.tensors) == sum(v.numel() for st in stored for s in st.values() for v in s.values())
    assert {t.name.split(":")[0] for t in group.tensors} == {f"{f.parent.name}/{f.name}" for f in files}


def test_a_distributed_optimizer_file_beside_the_model(tmp_path: Path) -> None:
    """``distrib_optim.pt`` (the distributed optimizer's gathered state) is counted as that rank's optimizer state."""
    folder = write_megatron(tmp_path, 2, 1)
    expected = 0
    for t in range(2):
        state = {"buckets_coalesced": True, 0: {(torch.bfloat16, torch.float32): {
            k: torch.zeros(40 + t) for k in ("param", "exp_avg", "exp_avg_sq")}}}  # fmt: skip
        torch.save(state, folder / f"mp_rank_{t:02d}" / "distrib_optim.pt")
        expected += sum(v.numel() for v in state[0][(torch.bfloat16, torch.float32)].values())  # type: ignore[index]
    anatomy = megatron.read(tmp_path)
    (group,) = anatomy.extras
    assert sum(t.count for t in group.tensors) == expected
    layout = rank_layout(tmp_path)
    assert all(any(f.endswith("distrib_optim.pt") for f in r.files) for r in layout.ranks)


@pytest.mark.parametrize("layout", ["tp2_pp2", "tp2_ep2_moe"])
def test_megatron_core_torch_dist_folders_read_one_layer_at_a_time(mcore: tuple[Path, dict[str, Any]], layout: str) -> None:
    """Megatron's default format is a DCP folder with the layers stacked on a leading axis."""
    import _megatron_jobs
    from torch.distributed.checkpoint import FileSystemReader

    from paramscope.readers.distributed import dcp

    root, oracles = mcore
    folder = root / f"{layout}_torch_dist"
    _, _, _, _, experts, _, _ = next(x for x in _megatron_jobs.LAYOUTS if x[0] == layout)
    assert reader_for(folder) is dcp
    anatomy = dcp.read(folder)
    found = totals(anatomy)
    assert found.params == found.trainable == oracles[layout]["params"]  # every Megatron parameter is trained
    stored = FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    assert found.params == sum(v.size.numel() for k, v in stored.items() if hasattr(v, "size") and not k.startswith("optimizer"))
    names = [f"{la.path}.{t.name}" for la in anatomy.walk() for t in la.tensors]
    assert {int(n.split(".")[2]) for n in names if n.startswith("decoder.layers.")} == set(range(_megatron_jobs.LAYERS))
    expert_ids = {int(n.split(".")[6]) for n in names if ".experts.local_experts." in n}
    assert expert_ids == set(range(experts))
    assert anatomy.metadata["writer"] == "Megatron-core dist_checkpointing (torch_dist)"


def test_megatron_core_missing_expert_rank(mcore: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    import shutil

    root, _ = mcore
    shutil.copytree(root / "tp2_ep2_moe", tmp_path / "ckpt")
    shutil.rmtree(tmp_path / "ckpt" / "iter_0000001" / "mp_rank_01_001")  # tp 1 of expert rank 1: its experts' halves
    with pytest.raises(CorruptFileError, match="experts.*1 of 2 tensor-parallel shards"):
        megatron.read(tmp_path / "ckpt")
    shutil.rmtree(tmp_path / "ckpt" / "iter_0000001" / "mp_rank_00_001")  # expert rank 1 entirely
    with pytest.raises(CorruptFileError, match="expert_model_parallel_size=2 but the folder holds 1"):
        megatron.read(tmp_path / "ckpt")


def test_a_rank_folder_linked_out_of_the_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import shutil

    (tmp_path / "ckpt").mkdir()
    folder = write_megatron(tmp_path / "ckpt", 2, 1)
    shutil.move(str(folder / "mp_rank_01"), str(tmp_path / "elsewhere"))
    os.symlink(tmp_path / "elsewhere", folder / "mp_rank_01")  # the file itself is no link: its folder is
    with pytest.raises(UnsafeFileError, match="symlink out of the checkpoint folder"):
        megatron.read(tmp_path / "ckpt")
    assert main(["summary", str(tmp_path / "ckpt")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_partition_rules_for_legacy_names() -> None:
    assert megatron.partition_dim("language_model.encoder.layers.0.self_attention.query_key_value.weight") == 0
    assert megatron.partition_dim("language_model.encoder.layers.0.self_attention.dense.weight") == 1
    assert megatron.partition_dim("language_model.encoder.layers.0.self_attention.dense.bias") is None
    assert megatron.partition_dim("language_model.encoder.layers.0.mlp.dense_4h_to_h.weight") == 1
    assert megatron.partition_dim("language_model.embedding.word_embeddings.weight") == 0
    assert megatron.partition_dim("language_model.encoder.final_norm.weight") is None




#: Legacy Megatron-LM (and Megatron-DeepSpeed) names of one layer, under language_model.encoder.
LEGACY_LAYER = [
    ("input_norm.weight", (HIDDEN,), None),
    ("self_attention.query_key_value.weight", (3 * HIDDEN, HIDDEN), 0),
    ("self_attention.dense.weight", (HIDDEN, HIDDEN), 1),
    ("self_attention.dense.bias", (HIDDEN,), None),
    ("mlp.dense_h_to_4h.weight", (FFN, HIDDEN), 0),
    ("mlp.dense_4h_to_h.weight", (HIDDEN, FFN), 1),
]


def test_legacy_nested_state_dicts_merge(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tp, pp, per_stage = 2, 2, LAYERS // 2
    full = {f"layers.{i}.{n}": (torch.randn(*s), d) for i in range(LAYERS) for n, s, d in LEGACY_LAYER}
    embedding = torch.randn(VOCAB, HIDDEN)
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("release")
    args = argparse.Namespace(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, num_layers=LAYERS)
    for p in range(pp):
        for t in range(tp):
            encoder = {}
            for name, (value, dim) in full.items():
                layer = int(name.split(".")[1])
                if layer // per_stage == p:
                    local = name.replace(f"layers.{layer}.", f"layers.{layer - p * per_stage}.", 1)
                    encoder[local] = value if dim is None else value.chunk(tp, dim)[t].clone()
            lm: dict[str, object] = {"encoder": encoder}
            if p == 0:
                lm["embedding"] = {"word_embeddings": {"weight": embedding.chunk(tp, 0)[t].clone()}}
            sub = tmp_path / "release" / f"mp_rank_{t:02d}_{p:03d}"
            sub.mkdir(parents=True)
            torch.save({"args": args, "iteration": 0, "model": {"language_model": lm}}, sub / "model_optim_rng.pt")
    anatomy = megatron.read(tmp_path)
    ours = {f"{la.path}.{t.name}": t.shape for la in anatomy.walk() for t in la.tensors}
    expected = {f"language_model.encoder.{k}": tuple(v.shape) for k, (v, _) in full.items()}
    expected["language_model.embedding.word_embeddings.weight"] = (VOCAB, HIDDEN)
    assert ours == expected


def test_torch_dist_unstacking_leaves_a_disagreeing_group_as_stored() -> None:
    from paramscope.core.tree import FlatTensor
    from paramscope.readers.distributed.megatron_dist import unstack

    flat = [FlatTensor("decoder.layers.mlp.linear_fc1.weight", (2, 8, 4), "float32"),
            FlatTensor("decoder.layers.mlp.linear_fc2.weight", (3, 4, 8), "float32"),
            FlatTensor("decoder.final_layernorm.weight", (4,), "float32")]  # fmt: skip
    out, notes = unstack(flat)
    assert out == flat and "disagree" in notes[0]
