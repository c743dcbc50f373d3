"""Test-wide settings: Keras runs on the torch backend, and CI turns every skip into a failure.

A skip hides a missing install. Outside CI, optional-dependency tests may skip on a user's
machine; with ``CI=true`` every skip fails, however it was written: a skip inside a test or its
setup (``pytest.importorskip`` in the body, ``skipif`` marks), and a skip while collecting a
module (module-level ``pytest.importorskip`` or ``pytest.skip(allow_module_level=True)``),
which skips every test in the file at once. ``tests/test_ci_guard.py`` proves both.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _reason(longrepr: object) -> str:
    return str(longrepr[-1]) if isinstance(longrepr, tuple) else str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    # A module that skips while it is imported skips all its tests without running one of them.
    if report.skipped and _in_ci():
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} skipped while collecting, in CI, which must run every test: {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    # Optional-dependency tests may skip on a user's machine; in CI a skip hides a missing install.
    if report.skipped and _in_ci() and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {_reason(report.longrepr)}"


def _validate_paramscope_json() -> None:
    """Every paramscope JSON document a test parses is checked against the shipped JSON Schema.

    Tests read the CLI's and the API's JSON with ``json.loads``; wrapping it here checks each
    document that names a paramscope schema, wherever in the suite it is produced.
    """
    import json

    try:
        import jsonschema
    except ModuleNotFoundError:  # a user's machine without the test extra: nothing to check with
        return
    from paramscope.schemas import SCHEMA_FILES, schema_for

    loads = json.loads
    validators: dict[str, object] = {}

    def checked_loads(*args: object, **kwargs: object) -> object:
        doc = loads(*args, **kwargs)  # type: ignore[arg-type]
        if isinstance(doc, dict) and doc.get("schema") in SCHEMA_FILES:
            name = doc["schema"]
            if name not in validators:
                validators[name] = jsonschema.Draft202012Validator(schema_for(name))
            validators[name].validate(doc)  # type: ignore[attr-defined]
        return doc

    json.loads = checked_loads  # type: ignore[assignment]


_validate_paramscope_json()


@pytest.fixture(scope="session")
def dcp_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, object]]:
    """The checkpoints of one real 2-rank gloo job (see ``_dcp_jobs``) and the unsharded model's oracle."""
    torch = pytest.importorskip("torch")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is needed to write real checkpoints")
    import _dcp_jobs

    out = tmp_path_factory.mktemp("dcp")
    return out, _dcp_jobs.write_checkpoints(out)


@pytest.fixture(scope="session")
def engine_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ZeRO folders one real 2-rank gloo DeepSpeed job saves (see ``_deepspeed_jobs``):
    ``zero1``, ``zero2``, ``zero3`` and ``tied_frozen_zero1..3``, each with its ``latest``.

    Tests that change a folder copy it first: every DeepSpeed test module shares these.
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("deepspeed")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is needed to run a DeepSpeed engine")
    import _deepspeed_jobs

    out = tmp_path_factory.mktemp("zero")
    _deepspeed_jobs.save_zero_checkpoints(out, stages=(1, 2, 3))
    return out
