"""The CI guard in conftest.py: with CI=true every skip fails, however the test skips.

Each case runs pytest in a child process on a tiny test file beside a copy of our conftest.py,
once with ``CI=true`` (it must fail) and once without (it must skip).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
MISSING = "paramscope_no_such_module_xyz"

CASES = {
    "module_importorskip": f"import pytest\n{MISSING} = pytest.importorskip({MISSING!r})\n\n"
    "def test_a():\n    pass\n\ndef test_b():\n    pass\n",
    "module_skip": "import pytest\npytest.skip('no GPU', allow_module_level=True)\n\ndef test_a():\n    pass\n",
    "importorskip_in_test": f"import pytest\n\ndef test_a():\n    pytest.importorskip({MISSING!r})\n",
    "skipif_mark": "import pytest\n\n@pytest.mark.skipif(True, reason='no GPU')\ndef test_a():\n    pass\n",
    "skip_in_fixture": "import pytest\n\n@pytest.fixture\ndef dep():\n    pytest.skip('no dep')\n\n"
    "def test_a(dep):\n    pass\n",
}


def run_pytest(folder: Path, ci: bool) -> tuple[int, list[str]]:
    """Run pytest on ``folder``; return its exit status and its ``-rA`` summary lines."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--continue-on-collection-errors", "--rootdir", str(folder), str(folder)],
        capture_output=True, text=True, env=env, cwd=folder,
    )
    summary = r.stdout.partition("short test summary info")[2]
    return r.returncode, [line for line in summary.splitlines() if line.startswith(("PASSED", "FAILED", "ERROR", "SKIPPED"))]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("guard")
    (folder / "conftest.py").write_text(CONFTEST.read_text())
    for case, code in CASES.items():
        (folder / f"test_{case}.py").write_text(code)
    return folder


def test_every_skip_fails_in_ci(cases: Path) -> None:
    code, lines = run_pytest(cases, ci=True)
    assert code == 1, lines
    assert not [line for line in lines if line.startswith("SKIPPED")], lines
    for case in CASES:
        assert any(line.startswith(("FAILED", "ERROR")) and f"test_{case}.py" in line for line in lines), (case, lines)


def test_skips_stay_skips_outside_ci(cases: Path) -> None:
    code, lines = run_pytest(cases, ci=False)
    assert code == 0, lines
    assert all(line.startswith("SKIPPED") for line in lines), lines
    for case in CASES:
        assert any(f"test_{case}.py" in line for line in lines), (case, lines)


def test_ci_passes_when_nothing_skips(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_ok.py").write_text("import os\n\ndef test_a():\n    assert os.sep\n")
    code, lines = run_pytest(tmp_path, ci=True)
    assert code == 0 and lines == ["PASSED test_ok.py::test_a"], lines
