"""Bad options and bad targets: one line on stderr, exit status 2, and a hint where one is close."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from paramscope.cli import MIN_WIDTH, main

ROOT = Path(__file__).resolve().parents[1]
SEED = str(ROOT / "examples" / "seed.py")


@pytest.fixture(autouse=True)
def _fresh_names() -> None:
    from paramscope.keras import clear_session

    clear_session()


def error_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI, assert exit 2, nothing on stdout and exactly one line on stderr; return it."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse exits from inside parse_args
        code = e.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("paramscope: error: "), err
    return err


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["sumary", "x"], "did you mean summary?"),
        (["summary", "x", "--formt", "json"], "did you mean --format?"),
        (["summary", "x", "--format", "jsn"], "did you mean json?"),
        (["summary", "x", "--style", "keras"], "did you mean keras3?"),
        (["explain", "x", "--depth", "1"], "--depth is an option of summary"),
        (["summary", "x", "--layer", "bn"], "--layer is an option of explain"),
        (["summary"], "required: target"),
        ([], "required"),
    ],
)
def test_argparse_errors_are_one_line_with_a_hint(capsys: pytest.CaptureFixture[str], argv: list[str], hint: str) -> None:
    err = error_line(capsys, *argv)
    assert hint in err
    assert "usage:" not in err and "--help" in err


def test_no_hint_when_nothing_is_close(capsys: pytest.CaptureFixture[str]) -> None:
    assert "did you mean" not in error_line(capsys, "summary", "x", "--zzzzzz")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--depth", "-1"], "-1 is negative"),
        (["--depth", "two"], "not a whole number"),
        (["--width", "10"], f"the minimum is {MIN_WIDTH}"),
        (["--input-size", "1,-3"], "negative dimension"),
        (["--input", "int99[1,2]"], "did you mean int8?"),
        (["--input", "input_ids=int64(1,2)"], "cannot read input spec"),
    ],
)
def test_bad_option_values(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    assert fragment in error_line(capsys, "summary", f"{SEED}:mlp_model", *argv)


def test_smallest_width_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", f"{SEED}:mlp_model", "--width", str(MIN_WIDTH)]) == 0
    out = capsys.readouterr().out
    assert "2,140,752" in out


@pytest.mark.parametrize("option", [["--input-size", "1,4096"], ["--input", "float32[1,4096]"]])
def test_inputs_for_a_builder_model_are_refused(capsys: pytest.CaptureFixture[str], option: list[str]) -> None:
    err = error_line(capsys, "summary", f"{SEED}:mlp_model", *option)
    assert f"{option[0]} does nothing for a paramscope.keras model" in err


def test_inputs_for_a_keras_config_file_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from paramscope import keras

    x = keras.Input(shape=(4,))
    path = tmp_path / "model.json"
    path.write_text(keras.Model(x, keras.layers.Dense(2)(x)).to_json())
    err = error_line(capsys, "summary", str(path), "--input-size", "1,4", "--input", "float32[1,4]")
    assert "--input-size and --input do nothing for a Keras model or file" in err


def test_inputs_for_a_checkpoint_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A safetensors file: an 8-byte header length, a JSON header, the data (one float32).
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    err = error_line(capsys, "summary", str(path), "--input-size", "1,4")
    assert "does nothing for a safetensors checkpoint" in err


def test_the_api_refuses_inputs_its_reader_would_ignore(tmp_path: Path) -> None:
    # The same rule as the CLI's, through the Python API: a Keras model (builder or live) or a
    # checkpoint with input_size/inputs is an error naming the option, not a silent no-op.
    import paramscope
    from paramscope import keras
    from paramscope.core.errors import ParamscopeError

    x = keras.Input(shape=(4,))
    builder = keras.Model(x, keras.layers.Dense(2)(x))
    with pytest.raises(ParamscopeError, match="input_size does nothing for a paramscope.keras model"):
        paramscope.summary(builder, input_size=(1, 4))
    path = tmp_path / "model.json"
    path.write_text(builder.to_json())
    with pytest.raises(ParamscopeError, match="inputs does nothing for a Keras model or file"):
        paramscope.read(str(path), inputs=["float32[1,4]"])
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    with pytest.raises(ParamscopeError, match="does nothing for a safetensors checkpoint"):
        paramscope.diff(str(ckpt), str(ckpt), input_size=(1, 4))
    assert paramscope.read(str(ckpt)).layers  # without inputs it reads


def test_the_api_passes_inputs_to_a_torch_module() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    import paramscope

    model = torch.nn.Linear(4, 2)
    with FlopCounterMode(display=False) as counter:  # the oracle: torch's own count for a (3, 4) batch
        model(torch.zeros(3, 4))
    doc = json.loads(str(paramscope.summary(model, input_size=(3, 4), format="json")))
    assert doc["totals"]["flops"] == counter.get_total_flops()


def test_script_without_name_lists_its_models_without_running_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "models.py"
    script.write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "import keras\n"
        "x = keras.Input(shape=(4,))\n"
        "net = keras.Model(x, keras.layers.Dense(2)(x))\n"
        "rate = 0.5\n"
        "def build_model():\n    return net\n"
        "def needs(arg):\n    return arg\n"
    )
    err = error_line(capsys, "summary", str(script))
    assert not marker.exists()  # the script was read, not run
    assert f"name the model in it as {script}:NAME, e.g. {script}:net" in err
    assert "it defines net, build_model, x;" in err and "which was not run" in err
    assert "rate" not in err and "needs" not in err


def test_seed_without_name_suggests_mlp_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert f"e.g. {SEED}:mlp_model" in error_line(capsys, "summary", SEED)


def test_name_bound_to_a_string(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("name = 'hi'\n")
    err = error_line(capsys, "summary", f"{script}:name")
    assert f"{script}:name is a str ('hi'), not a model" in err and "no such file" not in err


def test_empty_file_and_folders(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty.bin").write_bytes(b"")
    assert "the file is empty (0 bytes)" in error_line(capsys, "summary", str(tmp_path / "empty.bin"))
    (tmp_path / "none").mkdir()
    assert "the folder is empty" in error_line(capsys, "summary", str(tmp_path / "none"))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "README.md").write_text("# hello\n")
    err = error_line(capsys, "summary", str(tmp_path / "text"))
    assert "no file here is a format paramscope reads" in err and "1 entry: README.md" in err
    (tmp_path / "outer" / "llama").mkdir(parents=True)
    (tmp_path / "outer" / "llama" / "config.json").write_text("{}")
    err = error_line(capsys, "summary", str(tmp_path / "outer"))
    assert f"try {tmp_path / 'outer' / 'llama'}" in err


@pytest.mark.parametrize("hub_id", ["gpt2", "meta-llama/Llama-2-7b-hf"])
def test_hub_id_gets_a_hint(capsys: pytest.CaptureFixture[str], hub_id: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    err = error_line(capsys, "summary", hub_id)
    assert "reads local files and downloads nothing" in err and f"hf download {hub_id} config.json" in err


def test_typo_in_a_path_suggests_the_sibling(capsys: pytest.CaptureFixture[str]) -> None:
    typo = str(ROOT / "examples" / "sed.py")
    assert f"did you mean {SEED}?" in error_line(capsys, "summary", typo)
    assert f"no such script: {typo} (did you mean {SEED}?)" in error_line(capsys, "summary", typo + ":m")


def test_script_needing_a_missing_framework_names_the_extra(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "t.py"
    script.write_text("import torch\nmodel = torch.nn.Linear(2, 2)\n")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if not installed
    err = error_line(capsys, "summary", f"{script}:model")
    assert "needs torch, which is not installed; install it with: pip install 'paramscope[torch]'" in err


def test_sequence_longer_than_the_config_allows_is_noted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16)
    # The oracle: the real GPT-2 cannot run past n_positions (its position table has 1,024 rows).
    model = transformers.GPT2Model(config)
    with pytest.raises(IndexError):
        model(torch.zeros(1, config.n_positions + 1, dtype=torch.long))
    config.save_pretrained(tmp_path)
    argv = ["summary", str(tmp_path / "config.json"), "--format", "json"]
    assert main([*argv, "--input", "input_ids=int64[1,4096]"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any("4,096 positions but this config allows at most 1,024 (n_positions)" in n for n in notes)
    assert main([*argv, "--input", "input_ids=int64[1,1024]"]) == 0
    assert not any("positions but" in n for n in json.loads(capsys.readouterr().out)["notes"])


@pytest.mark.parametrize(
    ("config_class", "key"), [("GPT2Config", "n_positions"), ("LlamaConfig", "max_position_embeddings"), ("BertConfig", "max_position_embeddings")]
)
def test_position_limit_reads_transformers_configs(config_class: str, key: str) -> None:
    transformers = pytest.importorskip("transformers")
    from paramscope.core.positions import position_limit, positions_note
    from paramscope.trace.inputs import parse_input_spec

    config = getattr(transformers, config_class)()
    limit = getattr(config, key)  # the oracle: the config object's own attribute
    # transformers maps GPT-2's n_positions to max_position_embeddings too: either name is right.
    found = position_limit(config)
    assert found is not None and found[1] == limit
    assert positions_note(config, [parse_input_spec(f"input_ids=int64[1,{limit}]")]) is None
    note = positions_note(config, [parse_input_spec(f"input_ids=int64[1,{limit + 1}]")])
    assert note is not None and f"at most {limit:,} ({found[0]})" in note
    # Float inputs of a vision model are not sequences.
    assert positions_note(config, [parse_input_spec(f"pixel_values=float32[1,3,{limit + 1},{limit + 1}]")]) is None


@pytest.mark.parametrize("argv", [["--help"], ["summary", "--help"], ["explain", "--help"]])
def test_help_has_examples(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "paramscope " + (argv[0] if argv[0] != "--help" else "summary") in out
    # Every example line in the help parses with the real command line.
    from paramscope.cli import build_parser

    for line in out.split("examples:", 1)[1].splitlines():
        if line.strip().startswith("paramscope "):
            build_parser().parse_args(line.split("#")[0].split()[1:])
