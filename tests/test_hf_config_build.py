"""How the config reader builds its model: once, whatever the inputs."""

from __future__ import annotations

from typing import Any

import pytest

from paramscope.readers.hf import config as hf_config

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WAV2VEC2 = dict(
    model_type="wav2vec2", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64, conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3],
    num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2, vocab_size=12,
)  # fmt: skip


def count_builds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    built: list[Any] = []
    real = hf_config._build_model

    def spy(*args: Any, **kwargs: Any) -> Any:
        model = real(*args, **kwargs)
        built.append(model)
        return model

    monkeypatch.setattr(hf_config, "_build_model", spy)
    return built


def test_no_default_input_builds_the_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built = count_builds(monkeypatch)
    a = hf_config.read(WAV2VEC2)
    assert len(built) == 1
    assert any("No default input" in n for n in a.notes)
    assert sum(t.count or 0 for layer in a.layers for t in layer.all_tensors()) == sum(
        p.numel() for p in built[0].parameters()
    ) + sum(b.numel() for b in built[0].buffers())


def test_tensors_only_builds_the_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built = count_builds(monkeypatch)
    hf_config.read({"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 32}, inputs=[])
    assert len(built) == 1


def test_speech_config_with_an_input_gets_shapes_and_flops() -> None:
    a = hf_config.read(WAV2VEC2, inputs=["input_values=float32[1,400]"])
    config = transformers.Wav2Vec2Config(**{k: v for k, v in WAV2VEC2.items() if k != "model_type"})
    import torch

    model = transformers.Wav2Vec2Model(config).eval()
    with torch.no_grad():
        out = model(input_values=torch.randn(1, 400))
    assert a.outputs[0] == tuple(out.last_hidden_state.shape)
    assert a.compute is not None and a.compute.flops is not None
