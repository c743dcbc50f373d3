"""Hub ids resolve from the local Hugging Face cache, the way huggingface_hub lays it out; never online."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paramscope.readers.hf.hub_cache import hub_cache_dir, snapshot_folder

huggingface_hub = pytest.importorskip("huggingface_hub")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _cache_file(repo_cache: Path, commit: str, name: str, data: bytes) -> None:
    """Store a file as huggingface_hub does: a blob, and a relative symlink in the snapshot."""
    import hashlib

    blob = repo_cache / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = repo_cache / "snapshots" / commit / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path("../..") / "blobs" / blob.name)


@pytest.fixture()
def cache(tmp_path: Path) -> tuple[Path, object]:
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1)
    cfg.architectures = ["LlamaForCausalLM"]  # as every config on the hub says
    model = transformers.LlamaForCausalLM(cfg)
    root = tmp_path / "hub"
    repo = root / "models--acme--tiny-llama"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    _cache_file(repo, commit, "config.json", json.dumps(cfg.to_dict()).encode())
    staging = tmp_path / "staging.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(staging))
    _cache_file(repo, commit, "model.safetensors", staging.read_bytes())
    return root, model


def test_the_snapshot_is_the_one_huggingface_hub_finds(cache: tuple[Path, object]) -> None:
    root, _ = cache
    # The oracle: huggingface_hub's own cache lookup.
    theirs = huggingface_hub.try_to_load_from_cache("acme/tiny-llama", "config.json", cache_dir=str(root))
    ours = snapshot_folder("acme/tiny-llama", root)
    assert ours is not None and str(ours / "config.json") == theirs
    commit = ours.name
    assert snapshot_folder(f"acme/tiny-llama@{commit}", root) == ours
    assert snapshot_folder("acme/tiny-llama@v2", root) is None
    assert snapshot_folder("acme/other", root) is None


def test_cache_folder_follows_huggingface_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    script = "from huggingface_hub import constants; print(constants.HF_HUB_CACHE)"
    for env in ({}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {"HF_HOME": str(tmp_path / "home")},
                {"HF_HUB_CACHE": str(tmp_path / "hub")}):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        theirs = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        assert str(hub_cache_dir()) == theirs.stdout.strip()


def test_cli_reads_a_cached_hub_id_offline(cache: tuple[Path, object], tmp_path: Path) -> None:
    root, model = cache
    env = {"HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "paramscope", "summary", "acme/tiny-llama", "--format", "json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    n = sum(v.numel() for v in model.state_dict().values())  # type: ignore[attr-defined]
    assert doc["totals"]["params"] + doc["totals"]["buffers"] == n


def test_cli_says_when_the_hub_id_is_not_cached(tmp_path: Path) -> None:
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "paramscope", "summary", "meta-llama/Llama-2-7b-hf"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "not in the Hugging Face cache" in proc.stderr and "downloads nothing" in proc.stderr


def test_a_snapshot_with_only_the_config_and_index_is_built_from_the_config(cache: tuple[Path, object]) -> None:
    root, model = cache
    folder = snapshot_folder("acme/tiny-llama", root)
    assert folder is not None
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}})
    )
    proc = subprocess.run([sys.executable, "-m", "paramscope", "summary", "acme/tiny-llama", "--format", "json"],
                          capture_output=True, text=True, env={"HF_HUB_CACHE": str(root), "PATH": "/usr/bin:/bin"},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    # The oracle: the model built from the same config by transformers.
    assert json.loads(proc.stdout)["totals"]["params"] == sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
