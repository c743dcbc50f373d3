"""Make the HDF5 child process misbehave on purpose: hang, or crash."""

from __future__ import annotations

from typing import Any

import pytest

from paramscope.parsers import hdf5 as _hdf5

HANG = "import time; time.sleep(30)"
CRASH = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"


def replace_child(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """Run ``code`` instead of the HDF5 child whenever a reader starts one."""
    real_run = _hdf5.subprocess.run

    def run(argv: list[str], **kw: Any) -> Any:
        return real_run([argv[0], "-c", code], **kw)

    monkeypatch.setattr(_hdf5.subprocess, "run", run)
