"""Child processes are isolated from the working directory and the environment.

Someone inspecting a downloaded model usually runs paramscope inside the model's folder. A
``json.py`` or ``h5py.py`` placed beside ``model.keras`` must never run: every child paramscope
starts (the HDF5 reader) runs in Python's isolated mode and loads paramscope by its own path.
Each case here runs a real entry point in a fresh process whose working directory is a poisoned
folder (modules that write a marker file when imported) and checks that no marker appears and
the answer is the one Keras itself gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

from paramscope.parsers.hdf5 import child_argv  # noqa: E402

#: Modules the child (or the parent) imports: each, if it ran, would write its marker.
POISONED = ("json", "h5py", "numpy", "os", "struct", "zipfile", "importlib", "runpy", "io", "site",
            "sitecustomize", "usercustomize", "encodings", "paramscope", "codecs", "typing", "abc")  # fmt: skip


def _poison(folder: Path) -> Path:
    marks = folder / "marks"
    marks.mkdir()
    for name in POISONED:
        code = f"open({str(marks / name)!r}, 'w').write('ran')\n"
        if name == "paramscope":
            (folder / name).mkdir()
            (folder / name / "__init__.py").write_text(code)
        else:
            (folder / f"{name}.py").write_text(code)
    return marks


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("download")
    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((7,)), keras.layers.Dense(5), keras.layers.Dense(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(folder / "model.keras")
        model.save(folder / "model.h5")
        model.save_weights(folder / "model.weights.h5")
    return {"folder": folder, "marks": _poison(folder), "params": model.count_params()}


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # paramscope is found through the environment's site-packages
    env["KERAS_BACKEND"] = "torch"
    return env


def _check(models: dict[str, Any], done: subprocess.CompletedProcess[str]) -> None:
    assert sorted(p.name for p in models["marks"].iterdir()) == [], done.stderr
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["params"] == models["params"]


BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", ["model.keras", "model.h5", "model.weights.h5"])
def test_console_script_in_poisoned_folder(models: dict[str, Any], name: str) -> None:
    script = BIN / "paramscope"
    if not script.exists():
        pytest.skip("the paramscope console script is not installed beside this Python")
    done = subprocess.run([str(script), "summary", name, "--format", "json"], cwd=models["folder"],
                          capture_output=True, text=True, env=_clean_env(), timeout=120)  # fmt: skip
    _check(models, done)


@pytest.mark.parametrize("name", ["model.keras", "model.h5", "model.weights.h5"])
def test_api_in_poisoned_folder(models: dict[str, Any], name: str, tmp_path: Path) -> None:
    # A user's script elsewhere calls the API with the model folder as working directory.
    user = tmp_path / "user_script.py"
    user.write_text(
        "import json, paramscope\n"
        f"anatomy = paramscope.read({name!r})\n"
        "print(json.dumps({'totals': {'params': paramscope.totals(anatomy).params}}))\n"
    )
    done = subprocess.run([sys.executable, str(user)], cwd=models["folder"], capture_output=True, text=True,
                          env=_clean_env(), timeout=120)  # fmt: skip
    _check(models, done)


def test_python_dash_m_children_are_isolated(models: dict[str, Any]) -> None:
    # ``python -m`` puts the working directory first on the parent's own sys.path (Python's rule,
    # out of paramscope's reach), so this runs the parent isolated with the package given by
    # path, exactly as a child is run, and checks the HDF5 child it starts stays clean.
    argv = child_argv("paramscope.__main__")
    done = subprocess.run([*argv, "summary", "model.keras", "--format", "json"], cwd=models["folder"],
                          capture_output=True, text=True, env=_clean_env(), timeout=120)  # fmt: skip
    _check(models, done)


def test_child_ignores_pythonpath_and_startup_variables(models: dict[str, Any], tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    marks = models["marks"]
    for name in ("json", "h5py", "sitecustomize"):
        (evil / f"{name}.py").write_text(f"open({str(marks / ('env_' + name))!r}, 'w').write('ran')\n")
    (evil / "startup.py").write_text(f"open({str(marks / 'env_startup')!r}, 'w').write('ran')\n")
    env = _clean_env()
    env["PYTHONPATH"] = str(evil)
    env["PYTHONSTARTUP"] = str(evil / "startup.py")
    argv = child_argv("paramscope.__main__")
    done = subprocess.run([*argv, "summary", "model.weights.h5", "--format", "json"], cwd=models["folder"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    _check(models, done)


def test_child_argv_is_isolated_mode() -> None:
    argv = child_argv("paramscope.readers.keras.h5_child")
    assert argv[0] == sys.executable and argv[1] == "-I"
    done = subprocess.run([*argv[:5], "paramscope.parsers.hdf5"], capture_output=True, text=True, timeout=60)
    # The module has no main(): the child says so, proving it imported this paramscope by path.
    assert "has no attribute 'main'" in done.stderr
    probe = subprocess.run([sys.executable, "-I", "-c", "import sys; print(sys.flags.isolated, int(sys.flags.safe_path))"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert probe.stdout.split() == ["1", "1"]


def test_child_loads_the_parents_paramscope_wherever_it_lives(models: dict[str, Any], tmp_path: Path) -> None:
    # A copy of the package in another folder (as a normal install in site-packages would be) is
    # the one the parent imports; the child must load that copy too, not the one the environment
    # would find, and still nothing from the working directory.
    import shutil

    import paramscope

    site = tmp_path / "site"
    shutil.copytree(Path(paramscope.__file__).parent, site / "paramscope", ignore=shutil.ignore_patterns("__pycache__"))
    child = site / "paramscope" / "readers" / "keras" / "h5_child.py"
    used = tmp_path / "copy_used"
    child.write_text(child.read_text() + f"\nopen({str(used)!r}, 'w').write('yes')\n")
    user = tmp_path / "user_script.py"
    user.write_text(
        f"import sys; sys.path.insert(0, {str(site)!r})\n"
        "import json, paramscope\n"
        f"assert paramscope.__file__.startswith({str(site)!r})\n"
        "anatomy = paramscope.read('model.weights.h5')\n"
        "print(json.dumps({'totals': {'params': paramscope.totals(anatomy).params}}))\n"
    )
    done = subprocess.run([sys.executable, str(user)], cwd=models["folder"], capture_output=True, text=True,
                          env=_clean_env(), timeout=120)  # fmt: skip
    _check(models, done)
    assert used.read_text() == "yes"
