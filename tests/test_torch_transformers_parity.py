"""Parity with transformers: a config.json read on the meta device against the model built on CPU.

For each architecture (small configs), the anatomy paramscope reads from ``config.json`` must
agree with the real model that transformers builds from the same config on CPU: total,
trainable and buffer elements, the count of every module, which parameters are tied, and the
output shapes of the model and of every module in a real forward pass on the default inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from paramscope.analysis.totals import layer_totals, shared_tensors, totals  # noqa: E402
from paramscope.core.anatomy import Anatomy  # noqa: E402
from paramscope.readers import read  # noqa: E402
from paramscope.readers.hf.config import default_inputs  # noqa: E402

T = transformers
V = dict(vocab_size=96)
ENC_DEC = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
               decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64)
DECODER = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=64, max_position_embeddings=64, **V)

CONFIGS: dict[str, Callable[[], Any]] = {
    "gpt2": lambda: T.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=32, **V,
                                 architectures=["GPT2LMHeadModel"]),
    "bert-mlm": lambda: T.BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32, **V,
                                     architectures=["BertForMaskedLM"]),
    "distilbert": lambda: T.DistilBertConfig(n_layers=2, dim=32, n_heads=4, hidden_dim=64,
                                             max_position_embeddings=32, **V,
                                             architectures=["DistilBertForSequenceClassification"]),
    "roberta": lambda: T.RobertaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4,
                                       intermediate_size=64, max_position_embeddings=40, pad_token_id=1, **V),
    "t5": lambda: T.T5Config(num_layers=2, d_model=32, num_heads=4, d_kv=8, d_ff=64, **V,
                             architectures=["T5ForConditionalGeneration"]),
    "bart": lambda: T.BartConfig(**ENC_DEC, max_position_embeddings=32, **V,
                                 architectures=["BartForConditionalGeneration"]),
    "whisper": lambda: T.WhisperConfig(**ENC_DEC, num_mel_bins=8, max_source_positions=16,
                                       max_target_positions=16, pad_token_id=0, bos_token_id=1,
                                       eos_token_id=2, decoder_start_token_id=1, **V,
                                       architectures=["WhisperForConditionalGeneration"]),
    "llama": lambda: T.LlamaConfig(**DECODER, architectures=["LlamaForCausalLM"]),
    "llama-tied": lambda: T.LlamaConfig(**DECODER, tie_word_embeddings=True, architectures=["LlamaForCausalLM"]),
    "mistral": lambda: T.MistralConfig(**DECODER, architectures=["MistralForCausalLM"]),
    "mixtral": lambda: T.MixtralConfig(**DECODER, num_local_experts=4, architectures=["MixtralForCausalLM"]),
    "qwen2": lambda: T.Qwen2Config(**DECODER, architectures=["Qwen2ForCausalLM"]),
    "vit": lambda: T.ViTConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                               intermediate_size=64, image_size=32, patch_size=8,
                               architectures=["ViTForImageClassification"]),
    "clip": lambda: T.CLIPConfig(
        text_config=dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=16, **V),
        vision_config=dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=4,
                           intermediate_size=64, image_size=16, patch_size=8),
        projection_dim=16, architectures=["CLIPModel"],
    ),
}


def _cpu_model(config: Any, attn: str) -> Any:
    arch = (config.architectures or [None])[0]
    cls = getattr(T, arch) if arch else T.AutoModel
    torch.manual_seed(0)
    build = cls._from_config if arch else cls.from_config
    return build(config, attn_implementation=attn).eval()


def _tensor(spec: str) -> tuple[str, Any]:
    name, rest = spec.split("=")
    dtype, dims = rest.rstrip("]").split("[")
    shape = [int(d) for d in dims.split(",")]
    if dtype == "int64":
        return name, torch.randint(0, 8, shape, dtype=torch.int64)
    return name, torch.randn(shape, dtype=getattr(torch, dtype))


def _shapes(value: Any) -> list[tuple[int, ...]]:
    """Every tensor's shape in an output, in order (tuples, lists, dicts, ModelOutput)."""
    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _shapes(v)]
    return []


class Read:
    def __init__(self, name: str, tmp: Path) -> None:
        config = CONFIGS[name]()
        config.to_json_file(str(tmp / "config.json"))
        self.anatomy: Anatomy = read(str(tmp / "config.json"))
        # The same attention code path as the meta pass (eager where sdpa's mask needs data).
        self.model = _cpu_model(config, self.anatomy.metadata["attn_implementation"])
        specs, _ = default_inputs(self.model, config)
        self.kwargs = dict(_tensor(s) for s in specs)
        self.module_outputs: dict[str, list[tuple[int, ...]]] = {}
        hooks = []
        for path, module in self.model.named_modules():
            def hook(mod: Any, args: Any, out: Any, path: str = path) -> None:
                self.module_outputs.setdefault(path, _shapes(out))
            hooks.append(module.register_forward_hook(hook))
        with torch.no_grad():
            self.output = self.model(**self.kwargs)
        for h in hooks:
            h.remove()


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Read:
    return Read(request.param, tmp_path_factory.mktemp(request.param))


def test_totals_equal_the_cpu_model(case: Read) -> None:
    m, t = case.model, totals(case.anatomy)
    assert t.complete
    assert t.params == sum(p.numel() for p in m.parameters())
    assert t.trainable == sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert t.non_trainable == sum(p.numel() for p in m.parameters() if not p.requires_grad)
    assert t.buffers == sum(b.numel() for b in m.buffers())
    assert t.param_bytes == sum(p.numel() * p.element_size() for p in m.parameters())


def test_every_module_count_equals_the_cpu_module(case: Read) -> None:
    for path, module in case.model.named_modules():
        if not path:
            continue
        layer = case.anatomy.find(path)
        assert layer is not None, path
        assert layer.type == type(module).__name__, path
        t = layer_totals(layer)
        assert t.params == sum(p.numel() for p in module.parameters()), path
        assert t.buffers == sum(b.numel() for b in module.buffers()), path


def test_every_tensor_is_explained(case: Read) -> None:
    unexplained = [
        f"{layer.path}.{t.name}" for layer in case.anatomy.walk() for t in layer.tensors if t.formula is None
    ]
    assert not unexplained


def test_tied_weights_are_shown_as_shared(case: Read) -> None:
    by_id: dict[int, set[str]] = {}
    for name, p in case.model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), set()).add(name)
    expected = {frozenset(names) for names in by_id.values() if len(names) > 1}
    found = {
        frozenset(owner.replace("/", ".") for owner in owners)
        for owners in shared_tensors(case.anatomy).values()
    }
    assert found == expected


def test_output_shapes_equal_a_real_forward(case: Read) -> None:
    assert [tuple(s) for s in case.anatomy.outputs] == _shapes(case.output)
    checked = 0
    for path, shapes in case.module_outputs.items():
        layer = case.anatomy.find(path) if path else None
        if layer is None or layer.output_shapes is None:
            continue
        assert [tuple(s) for s in layer.output_shapes] == shapes, path
        checked += 1
    assert checked >= 5


def test_t5_has_four_names_for_one_matrix(tmp_path: Path) -> None:
    config = CONFIGS["t5"]()
    config.to_json_file(str(tmp_path / "config.json"))
    anatomy = read(str(tmp_path / "config.json"))
    groups = [set(v) for v in shared_tensors(anatomy).values()]
    assert {"shared/weight", "encoder.embed_tokens/weight", "decoder.embed_tokens/weight",
            "lm_head/weight"} in groups


def test_bert_decoder_bias_is_one_tensor(tmp_path: Path) -> None:
    config = CONFIGS["bert-mlm"]()
    config.to_json_file(str(tmp_path / "config.json"))
    anatomy = read(str(tmp_path / "config.json"))
    groups = [set(v) for v in shared_tensors(anatomy).values()]
    assert {"cls.predictions/bias", "cls.predictions.decoder/bias"} in groups
