"""The flat-name explainer against the frameworks' own view of the same tensors."""

from __future__ import annotations

from math import prod

import pytest

from paramscope.analysis import shared_tensors, totals
from paramscope.core import Role
from paramscope.core.tree import FlatTensor
from paramscope.rules.names import anatomy_from_flat, explain_name, name_tokens, natural_key

# What the explainer should call the layer, by the PyTorch module class that owns the tensor.
TORCH_TYPES = {
    "Linear": "Linear",
    "Embedding": "Embedding",
    "LayerNorm": "LayerNorm",
    "LlamaRMSNorm": "RMSNorm",
    "T5LayerNorm": "RMSNorm",  # T5's "LayerNorm" has no bias and no mean: an RMS norm
    "MixtralExperts": "Experts",
    "BatchNorm1d": "BatchNorm",
    "BatchNorm2d": "BatchNorm",
    "Conv2d": "Conv",
    "Conv1d": "Conv",
    "Conv1D": "Conv1D",
}


def _torch_models() -> list[tuple[str, object]]:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    nn = torch.nn
    small = dict(vocab_size=100)
    cnn = nn.Sequential()
    cnn.add_module("conv1", nn.Conv2d(3, 8, 3))
    cnn.add_module("bn1", nn.BatchNorm2d(8))
    cnn.add_module("downsample", nn.Sequential(nn.Conv1d(8, 4, 1), nn.BatchNorm1d(4)))
    cnn.add_module("fc", nn.Linear(4, 2))
    tables = nn.Module()  # embedding tables under the short names research code gives them
    for name in ("embed", "embedder", "tok_emb", "emb", "wte", "wpe"):
        tables.add_module(name, nn.Embedding(10, 4))
    return [
        ("cnn", cnn),
        ("tables", tables),
        ("gpt2", transformers.GPT2LMHeadModel(
            transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=16, **small))),
        ("bert", transformers.BertModel(transformers.BertConfig(
            num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=16, **small))),
        ("llama", transformers.LlamaForCausalLM(transformers.LlamaConfig(
            num_hidden_layers=1, hidden_size=32, num_attention_heads=2, num_key_value_heads=1,
            intermediate_size=64, tie_word_embeddings=True, **small))),
        ("t5", transformers.T5ForConditionalGeneration(transformers.T5Config(
            d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2, **small))),
        ("vit", transformers.ViTModel(transformers.ViTConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            image_size=8, patch_size=4))),
        ("mixtral", transformers.MixtralForCausalLM(transformers.MixtralConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
            intermediate_size=32, num_local_experts=2, **small))),
        ("mamba", transformers.MambaForCausalLM(transformers.MambaConfig(
            hidden_size=16, num_hidden_layers=1, state_size=4, **small))),
    ]


@pytest.fixture(scope="module")
def torch_models() -> list[tuple[str, object]]:
    return _torch_models()


def _split(name: str, sep: str = ".") -> tuple[str, str]:
    path, _, local = name.rpartition(sep)
    return path, local


def test_torch_names_parameter_or_buffer_matches_torch(torch_models: list[tuple[str, object]]) -> None:
    for label, model in torch_models:
        sd = model.state_dict()  # type: ignore[attr-defined]
        params = {n for n, _ in model.named_parameters(remove_duplicate=False)}  # type: ignore[attr-defined]
        modules = dict(model.named_modules())  # type: ignore[attr-defined]
        by_module: dict[str, set[str]] = {}
        for name in sd:
            path, local = _split(name)
            by_module.setdefault(path, set()).add(local)
        for name, value in sd.items():
            path, local = _split(name)
            shape = tuple(value.shape)
            ex = explain_name(path, local, shape, frozenset(by_module[path]))
            assert ex.is_param == (name in params), (label, name)
            assert ex.role is not Role.UNKNOWN, (label, name)
            if name in params:
                assert ex.role is Role.TRAINABLE, (label, name)
            owner = type(modules[path]).__name__
            if owner in TORCH_TYPES and ex.layer_type:
                assert ex.layer_type == TORCH_TYPES[owner], (label, name, owner, ex.layer_type)
            if ex.formula is not None:
                numbers = [int(x) for x in ex.formula.numeric.split(" x ")]
                assert prod(numbers) == value.numel(), (label, name)


def test_batchnorm_statistics_are_buffers_like_torch() -> None:
    ex = explain_name("bn1", "running_mean", (8,), frozenset({"weight", "bias", "running_mean"}))
    assert (ex.role, ex.is_param) == (Role.STATISTIC, False)
    ex = explain_name("bn1", "num_batches_tracked", (), frozenset({"weight"}))
    assert (ex.role, ex.is_param) == (Role.BUFFER, False)


def test_totals_of_flat_state_dict_match_torch(torch_models: list[tuple[str, object]]) -> None:
    for label, model in torch_models:
        flat = [
            FlatTensor(n, tuple(v.shape), str(v.dtype).removeprefix("torch."), key=str(v.untyped_storage().data_ptr()))
            for n, v in model.state_dict().items()  # type: ignore[attr-defined]
        ]
        a = anatomy_from_flat(flat, name=label, framework="torch")
        t = totals(a)
        n_params = sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
        # Only persistent buffers are saved in a state dict; those are the ones a file holds.
        saved = model.state_dict()  # type: ignore[attr-defined]
        n_buffers = sum(b.numel() for n, b in model.named_buffers() if n in saved)  # type: ignore[attr-defined]
        assert t.params == n_params, label
        assert t.buffers == n_buffers, label
        assert t.complete
        modules = dict(model.named_modules())  # type: ignore[attr-defined]
        for layer in a.walk():
            owner = type(modules[layer.path]).__name__ if layer.tensors else ""
            if owner in TORCH_TYPES:
                assert layer.type == TORCH_TYPES[owner], (label, layer.path, owner, layer.type)


def test_tied_llama_head_detected_from_shared_storage(torch_models: list[tuple[str, object]]) -> None:
    model = dict(torch_models)["llama"]
    sd = model.state_dict()  # type: ignore[attr-defined]
    flat = [FlatTensor(n, tuple(v.shape), "float32", key=str(v.untyped_storage().data_ptr())) for n, v in sd.items()]
    a = anatomy_from_flat(flat, name="llama", framework="torch")
    shared = shared_tensors(a)
    assert sorted(next(iter(shared.values()))) == ["lm_head/weight", "model.embed_tokens/weight"]
    assert any("lm_head.weight and model.embed_tokens.weight" in n or
               "model.embed_tokens.weight and lm_head.weight" in n for n in a.notes)
    assert totals(a).params == sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]


def test_declared_tie_absent_and_present() -> None:
    flat = [FlatTensor("model.embed_tokens.weight", (10, 4), "float32"), FlatTensor("model.norm.weight", (4,), "float32")]
    tie = {"lm_head.weight": "model.embed_tokens.weight"}
    a = anatomy_from_flat(flat, name="m", framework="safetensors", tied=tie)
    assert any("lm_head.weight is not stored" in n for n in a.notes)
    b = anatomy_from_flat(flat + [FlatTensor("lm_head.weight", (10, 4), "float32")], name="m",
                          framework="safetensors", tied=tie)
    assert totals(b).params == 44
    assert shared_tensors(b)
    head = b.find("lm_head")
    assert head is not None and "shares one storage" in head.tensors[0].why


def test_keras_names_match_keras_trainability() -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(5),
        keras.layers.BatchNormalization(),
        keras.layers.Reshape((5, 1)),
        keras.layers.Conv1D(3, 2),
        keras.layers.LSTM(4),
    ])
    variables = list(model.weights)
    by_layer: dict[str, set[str]] = {}
    for v in variables:
        path, local = _split(v.path, "/")
        by_layer.setdefault(path, set()).add(local)
    for v in variables:
        path, local = _split(v.path, "/")
        ex = explain_name(path, local, tuple(v.shape), frozenset(by_layer[path]), sep="/")
        assert ex.is_param, v.path  # Keras counts every weight, moving statistics included
        assert (ex.role is Role.TRAINABLE) == v.trainable, v.path
        if ex.formula is not None:
            assert prod(int(x) for x in ex.formula.numeric.split(" x ")) == prod(v.shape), v.path


@pytest.mark.parametrize(
    ("path", "tensor", "shape", "role", "layer_type"),
    [
        ("blk.0.attn_q", "weight", (4096, 4096), Role.TRAINABLE, "Linear"),
        ("token_embd", "weight", (32000, 4096), Role.TRAINABLE, "Embedding"),
        ("blk.0.attn_norm", "weight", (4096,), Role.TRAINABLE, "RMSNorm"),
        ("blk.0.ffn_up_exps", "weight", (8, 14336, 4096), Role.TRAINABLE, "Experts"),
        ("transformer.h.0.attn", "bias", (1, 1, 16, 16), Role.BUFFER, ""),
        ("model.rotary_emb", "inv_freq", (32,), Role.BUFFER, ""),
        ("rope_freqs", "weight", (64,), Role.BUFFER, ""),
        ("base_model.model.q_proj.lora_A", "weight", (8, 4096), Role.TRAINABLE, "Linear"),
        ("x", "freqs_custom", (16,), Role.UNKNOWN, ""),
        ("model.layers.0.self_attn.q_proj", "qweight", (512, 4096), Role.FROZEN, "QuantLinear"),
        ("model.layers.0.mlp.down_proj", "weight_scale_inv", (32, 88), Role.FROZEN, ""),
        ("model.layers.0.mlp.up_proj.weight", "absmax", (1024,), Role.FROZEN, ""),
    ],
)
def test_name_table(path: str, tensor: str, shape: tuple[int, ...], role: Role, layer_type: str) -> None:
    ex = explain_name(path, tensor, shape, frozenset({tensor}))
    assert (ex.role, ex.layer_type) == (role, layer_type)


def test_quantised_buffers_are_not_parameters() -> None:
    # GPTQ/AWQ QuantLinear registers qweight, qzeros, scales and g_idx as buffers.
    for name in ("qweight", "qzeros", "scales", "g_idx"):
        ex = explain_name("q_proj", name, (8, 8), frozenset({"qweight", "qzeros", "scales", "g_idx"}))
        assert not ex.is_param, name
    # "scales" alone (no packed weight beside it) is not taken for a GPTQ scale.
    assert explain_name("x", "scales", (8,), frozenset({"scales"})).role is Role.UNKNOWN


def test_gguf_purpose_in_why() -> None:
    assert explain_name("blk.3.attn_k", "weight", (1024, 4096), frozenset({"weight"})).why.startswith("key projection")


def test_tokens_are_exact_not_substrings() -> None:
    # "denormalize" contains "norm" as a substring but is not a normalisation layer.
    assert "norm" not in name_tokens("denormalize")
    ex = explain_name("denormalize", "weight", (4,), frozenset({"weight", "bias"}))
    assert ex.layer_type != "LayerNorm"


def test_natural_order() -> None:
    names = ["layers.10.w", "layers.9.w", "layers.1.w", "embed.w"]
    assert sorted(names, key=natural_key) == ["embed.w", "layers.1.w", "layers.9.w", "layers.10.w"]


def test_control_characters_in_names_kept_as_data() -> None:
    evil = "layer\x1b[31m.w\x00eight"
    a = anatomy_from_flat([FlatTensor(evil, (2,), "float32")], name="m", framework="safetensors")
    layer = a.layers[0]
    assert layer.name == "layer\x1b[31m"
    assert layer.tensors[0].name == "w\x00eight"
    assert totals(a).params == 2


def test_sorted_order_follows_the_data_flow(torch_models: list[tuple[str, object]]) -> None:
    # A safetensors header is sorted by dtype; sort=True restores the order a reader expects.
    expected = {
        "gpt2": {"": ["transformer", "lm_head"], "transformer": ["wte", "wpe", "h", "ln_f"],
                 "transformer.h.0": ["ln_1", "attn", "ln_2", "mlp"], "transformer.h.0.mlp": ["c_fc", "c_proj"]},
        "bert": {"": ["embeddings", "encoder", "pooler"],
                 "embeddings": ["word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"],
                 "encoder.layer.0.attention.self": ["query", "key", "value"]},
        "llama": {"model.layers.0": ["input_layernorm", "self_attn", "post_attention_layernorm", "mlp"],
                  "model.layers.0.self_attn": ["q_proj", "k_proj", "v_proj", "o_proj"],
                  "model.layers.0.mlp": ["gate_proj", "up_proj", "down_proj"], "model": ["embed_tokens", "layers", "norm"]},
    }
    models = dict(torch_models)
    for label, parents in expected.items():
        sd = models[label].state_dict()  # type: ignore[attr-defined]
        flat = [FlatTensor(n, tuple(v.shape), "float32") for n, v in sorted(sd.items(), key=lambda kv: kv[0][::-1])]
        a = anatomy_from_flat(flat, name=label, framework="safetensors", sort=True)
        for parent, children in parents.items():
            layers = a.layers if parent == "" else a.find(parent).children  # type: ignore[union-attr]
            assert [la.name for la in layers] == children, (label, parent)
        fc = a.find("transformer.h.0.mlp.c_fc") if label == "gpt2" else None
        if fc is not None:
            assert [t.name for t in fc.tensors] == ["weight", "bias"]
