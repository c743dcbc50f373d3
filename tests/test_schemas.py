"""The shipped JSON Schemas: valid schemas, that accept real output and reject what breaks the contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import paramscope
from paramscope.schemas import SCHEMA_FILES, schema_for

jsonschema = pytest.importorskip("jsonschema")
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_each_schema_is_a_valid_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(schema_for(name))


def test_the_schemas_ship_with_the_package() -> None:
    import paramscope.schemas as pkg

    folder = Path(pkg.__file__).parent
    assert {p.name for p in folder.glob("*.schema.json")} == set(SCHEMA_FILES.values())
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"schemas/*.json"' in pyproject


def test_summary_json_validates_and_unknown_must_be_null() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.BatchNorm1d(2))
    doc = json.loads(paramscope.summary(model, format="json").text)  # validated by conftest's hook too
    validator = jsonschema.Draft202012Validator(schema_for("paramscope/1"))
    validator.validate(doc)
    broken = json.loads(json.dumps(doc))
    broken["totals"]["params"] = "?"  # a text stand-in for an unknown count breaks the contract
    assert not validator.is_valid(broken)
    broken = json.loads(json.dumps(doc))
    broken["layers"][0]["tensors"][0]["role"] = "learned"
    assert not validator.is_valid(broken)


def test_diff_and_check_json_validate(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    st.save_file({"a.weight": torch.zeros(2, 2)}, str(tmp_path / "a.safetensors"))
    st.save_file({"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(2)}, str(tmp_path / "b.safetensors"))
    for args, name in (
        (["diff", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--format", "json"],
         "paramscope-diff/1"),
        (["check", str(tmp_path / "a.safetensors"), "--max-params", "3", "--format", "json"], "paramscope-check/1"),
    ):
        proc = subprocess.run([sys.executable, "-m", "paramscope", *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["schema"] == name
        jsonschema.Draft202012Validator(schema_for(name)).validate(doc)


def test_memory_json_validates_and_an_unknown_part_must_be_null() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    plan = paramscope.memory(model, train=True, input_size=(2, 8), device="24GiB")
    doc = json.loads(paramscope.render_memory(plan, format="json"))
    validator = jsonschema.Draft202012Validator(schema_for("paramscope-memory/1"))
    validator.validate(doc)
    # The oracle: torch's own sizes of the parameters (fp32 training keeps them as they are).
    assert doc["per_device"]["params"] == sum(p.numel() * p.element_size() for p in model.parameters())
    broken = json.loads(json.dumps(doc))
    broken["per_device"]["peak"] = "unknown"
    assert not validator.is_valid(broken)
