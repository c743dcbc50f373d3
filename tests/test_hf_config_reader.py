"""The Hugging Face config reader: what it claims, what it refuses, the inputs it guesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paramscope.core.errors import CorruptFileError, ModelError
from paramscope.readers.hf import config as hf_config

SRC = str(Path(__file__).resolve().parents[1] / "src")


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def llama_config(tmp_path: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        num_hidden_layers=1, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=96, architectures=["LlamaForCausalLM"],
    )
    cfg.to_json_file(str(tmp_path / "config.json"))
    return tmp_path / "config.json"


def test_claims_a_config_file_and_a_folder_without_weights(tmp_path: Path) -> None:
    path = llama_config(tmp_path)
    assert hf_config.can_read(str(path))
    assert hf_config.can_read(str(tmp_path))
    assert hf_config.can_read(path)  # PathLike too


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin", "model.gguf",
                                     "model.safetensors.index.json"])
def test_leaves_a_folder_with_weights_to_the_checkpoint_readers(tmp_path: Path, weights: str) -> None:
    llama_config(tmp_path)
    (tmp_path / weights).write_bytes(b"")
    assert not hf_config.can_read(str(tmp_path))
    assert hf_config.can_read(str(tmp_path / "config.json"))


def test_does_not_claim_other_json(tmp_path: Path) -> None:
    keras_like = write(tmp_path / "config.json", {"class_name": "Sequential", "config": {}, "model_type": "x"})
    assert not hf_config.can_read(str(keras_like))
    assert not hf_config.can_read(str(write(tmp_path / "other.json", {"a": 1})))
    assert not hf_config.can_read(str(write(tmp_path / "list.json", [1, 2])))
    (tmp_path / "bad.json").write_text("{not json")
    assert not hf_config.can_read(str(tmp_path / "bad.json"))
    assert not hf_config.can_read(str(tmp_path / "missing.json"))
    assert not hf_config.can_read(42)


def test_a_broken_config_json_is_claimed_and_reported(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "model_type": "bert"}')
    assert hf_config.can_read(str(tmp_path / "config.json"))
    with pytest.raises(CorruptFileError, match="duplicate JSON key"):
        hf_config.read(str(tmp_path / "config.json"))


def test_an_oversized_config_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "gpt2", "pad": "' + "x" * (hf_config.MAX_CONFIG_BYTES + 10) + '"}')
    with pytest.raises(CorruptFileError, match="too large"):
        hf_config.read(str(path))


def test_unknown_model_type_is_a_one_line_model_error(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    path = write(tmp_path / "config.json", {"model_type": "no-such-model", "hidden_size": 8})
    with pytest.raises(ModelError) as info:
        hf_config.read(str(path))
    assert "no-such-model" in str(info.value) and "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_custom_code_is_refused_not_run(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    marker = tmp_path / "ran"
    (tmp_path / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    path = write(
        tmp_path / "config.json",
        {"model_type": "evil", "auto_map": {"AutoModel": "modeling_evil.EvilModel",
                                             "AutoConfig": "modeling_evil.EvilConfig"}},
    )
    with pytest.raises(ModelError, match="never runs"):
        hf_config.read(str(path))
    assert not marker.exists()


def test_inconsistent_config_is_a_model_error(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    path = write(tmp_path / "config.json", {"model_type": "bert", "hidden_size": "wide"})
    with pytest.raises(ModelError) as info:
        hf_config.read(str(path))
    assert "\n" not in str(info.value)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_missing_transformers_is_a_missing_dependency_error(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {"model_type": "gpt2", "n_layer": 1})
    done = _run(
        "import sys\n"
        "sys.modules['transformers'] = None\n"
        "from paramscope.core.errors import MissingDependencyError\n"
        "from paramscope.readers import read\n"
        "try:\n"
        f"    read({str(path)!r})\n"
        "except MissingDependencyError as e:\n"
        "    print('MISSING', e)\n"
    )
    assert "MISSING" in done.stdout, done.stderr
    assert "paramscope[transformers]" in done.stdout


def test_recognising_a_config_imports_no_framework(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {"model_type": "gpt2", "n_layer": 1})
    done = _run(
        "import sys\n"
        "from paramscope.readers import reader_for\n"
        f"assert reader_for({str(path)!r}).__name__.endswith('readers.hf.config')\n"
        "heavy = [m for m in ('torch', 'transformers', 'keras', 'tensorflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    assert done.returncode == 0, done.stderr


def test_cli_reports_a_bad_config_on_one_line_with_status_2(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    path = write(tmp_path / "config.json", {"model_type": "no-such-model"})
    env = dict(os.environ, PYTHONPATH=SRC)
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", "summary", str(path)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "no-such-model" in done.stderr


# Default inputs: each must drive a real forward pass of the same model built on CPU.

def _configs() -> dict[str, Any]:
    T = pytest.importorskip("transformers")
    return {
        "gpt2": T.GPT2Config(n_layer=1, n_embd=32, n_head=4, n_positions=64, vocab_size=96,
                             architectures=["GPT2LMHeadModel"]),
        "t5": T.T5Config(num_layers=1, d_model=32, num_heads=4, d_kv=8, d_ff=64, vocab_size=96,
                         architectures=["T5ForConditionalGeneration"]),
        "vit": T.ViTConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                           image_size=16, patch_size=8),
        "clip": T.CLIPConfig(
            text_config=dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                             max_position_embeddings=16, vocab_size=96),
            vision_config=dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=4,
                               intermediate_size=64, image_size=16, patch_size=8),
            projection_dim=16, architectures=["CLIPModel"],
        ),
        "whisper": T.WhisperConfig(
            encoder_layers=1, decoder_layers=1, d_model=32, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=96,
            num_mel_bins=8, max_source_positions=16, max_target_positions=16, pad_token_id=0,
            bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        ),
    }


def _tensor(spec: str) -> tuple[str, Any]:
    import torch

    name, rest = spec.split("=")
    dtype, dims = rest.rstrip("]").split("[")
    shape = [int(d) for d in dims.split(",")]
    if dtype == "int64":
        return name, torch.ones(shape, dtype=torch.int64)
    return name, torch.zeros(shape, dtype=getattr(torch, dtype))


@pytest.mark.parametrize("name", ["gpt2", "t5", "vit", "clip", "whisper"])
def test_default_inputs_fit_the_model(name: str) -> None:
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    config = _configs()[name]
    cls, _ = hf_config._model_class(T, config)
    model = cls._from_config(config) if cls is not T.AutoModel else cls.from_config(config)
    specs, said = hf_config.default_inputs(model, config)
    assert specs, said
    if name == "gpt2":
        assert specs == ["input_ids=int64[1,64]"]  # 128 tokens capped at n_positions
    with torch.no_grad():
        model.eval()(**dict(_tensor(s) for s in specs))


# The command line on a config, in process (same code path as the installed command).

def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from paramscope.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_matches_the_model_transformers_builds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    config = _configs()["gpt2"]
    config.to_json_file(str(tmp_path / "config.json"))
    code, out, err = _cli(capsys, "summary", str(tmp_path), "--format", "json",
                          "--input", "input_ids=int64[1,16]")
    assert code == 0, err
    doc = json.loads(out)
    model = T.GPT2LMHeadModel._from_config(config).eval()
    assert doc["totals"]["params"] == sum(p.numel() for p in model.parameters())
    assert doc["totals"]["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert ["transformer.wte/weight", "lm_head/weight"] in doc["shared"].values()
    with torch.no_grad():
        logits = model(input_ids=torch.zeros(1, 16, dtype=torch.int64)).logits
    assert doc["outputs"][0] == list(logits.shape)
    assert doc["metadata"]["model_type"] == "gpt2"
    assert doc["metadata"]["model_class"] == "GPT2LMHeadModel"
    assert doc["source"] == str(tmp_path / "config.json")


def test_cli_explain_shows_the_rules(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _configs()["gpt2"].to_json_file(str(tmp_path / "config.json"))
    code, out, err = _cli(capsys, "explain", str(tmp_path / "config.json"),
                          "--layer", "transformer.h.0.attn.c_attn", "--width", "200")
    assert code == 0, err
    assert "transpose of nn.Linear" in " ".join(out.split())


def test_cli_bad_input_spec_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _configs()["gpt2"].to_json_file(str(tmp_path / "config.json"))
    code, out, err = _cli(capsys, "summary", str(tmp_path / "config.json"), "--input", "input_ids=int64[1,x]")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("paramscope: error: "), err


def test_config_objects_and_dicts_read_like_files() -> None:
    T = pytest.importorskip("transformers")
    from paramscope.analysis.totals import totals
    from paramscope.readers import read

    config = _configs()["gpt2"]
    expected = sum(p.numel() for p in T.GPT2LMHeadModel._from_config(config).parameters())
    from_object = read(config, inputs=[])
    from_dict = read(config.to_dict(), inputs=[])
    assert totals(from_object).params == totals(from_dict).params == expected
    assert from_object.outputs == ()  # inputs=[]: tensors only, no forward pass
    assert from_dict.source == "config dict"


def test_kernel_choices_and_quantization_in_a_config(tmp_path: Path) -> None:
    T = pytest.importorskip("transformers")
    from paramscope.analysis.totals import totals

    config = T.LlamaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                           intermediate_size=64, vocab_size=96, architectures=["LlamaForCausalLM"])
    doc = config.to_dict()
    doc.update(attn_implementation="flash_attention_2",
               quantization_config={"quant_method": "gptq", "bits": 4, "group_size": 128})
    path = write(tmp_path / "config.json", doc)
    anatomy = hf_config.read(str(path))
    assert anatomy.outputs  # the forward ran: flash attention was not asked for on meta
    assert totals(anatomy).params == sum(p.numel() for p in T.LlamaForCausalLM._from_config(config).parameters())
    assert any("gptq quantization" in n and "dense model" in n for n in anatomy.notes)


def test_the_config_dtype_sets_the_bytes(tmp_path: Path) -> None:
    T = pytest.importorskip("transformers")
    from paramscope.analysis.totals import totals

    config = T.LlamaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                           intermediate_size=64, vocab_size=96, architectures=["LlamaForCausalLM"])
    doc = config.to_dict()
    doc.pop("dtype", None)
    doc["torch_dtype"] = "bfloat16"  # the key older checkpoints use
    anatomy = hf_config.read(str(write(tmp_path / "config.json", doc)))
    t = totals(anatomy)
    built = T.LlamaForCausalLM._from_config(T.LlamaConfig(**{**config.to_dict(), "dtype": "bfloat16"}))
    assert anatomy.metadata["dtype"] == "bfloat16"
    assert t.param_bytes == sum(p.numel() * p.element_size() for p in built.parameters())
    assert anatomy.outputs  # the meta forward runs in bfloat16 too
