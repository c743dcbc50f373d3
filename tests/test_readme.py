"""README.md's commands are the ones that work: .ci/run runs its test command verbatim, and
every ``paramscope`` line it shows parses with the real command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from paramscope.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_quick_start_has_two_commands_and_ci_runs_the_second() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [b.strip() for b in re.findall(r"```bash\n(.*?)```", quick, flags=re.S)][:2]
    assert commands[0].endswith(".venv/bin/python examples/seed.py")
    assert "-c constraints/test.txt" in commands[1] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci


def test_constraints_pin_every_test_dependency() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {
        line.split("==")[0].lower()
        for line in (ROOT / "constraints" / "test.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    names = {re.split(r"[<>=!~\[ ]", d)[0].lower() for d in wanted}
    assert names <= pins, names - pins
    # The library states ranges: no exact pin in what users install.
    for spec in wanted + [d for extra in project["optional-dependencies"].values() for d in extra]:
        assert "==" not in spec, spec


@pytest.mark.parametrize(
    "line", [line.split("#")[0].strip() for b in bash_blocks() for line in b.splitlines() if line.startswith("paramscope ")]
)
def test_readme_command_lines_parse(line: str) -> None:
    build_parser().parse_args(shlex.split(line)[1:])  # exits 2 on an unknown option


def test_write_files_example_writes_what_the_readme_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    import runpy

    from paramscope import read
    from paramscope.analysis import totals
    from paramscope.keras import clear_session

    clear_session()
    runpy.run_path(str(ROOT / "examples" / "write_files.py"), run_name="write_files")["main"](tmp_path)
    assert "not written" not in capsys.readouterr().out
    real = keras.saving.load_model(tmp_path / "seed.keras")  # the oracles: Keras and torch themselves
    for name in ("seed.json", "seed.keras", "seed.weights.h5"):
        assert totals(read(tmp_path / name)).params == real.count_params() == 2_140_752, name
    state = torch.load(tmp_path / "torch_seed.pt")
    learned = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    for name in ("torch_seed.pt", "torch_seed.safetensors"):
        assert totals(read(tmp_path / name)).params == learned, name
    # README's commands name these files under model-files/.
    for name in ("seed.json", "seed.keras", "torch_seed.safetensors", "torch_seed.pt", "gpt2/config.json"):
        assert f"model-files/{name}" in README
