"""Fuzzing the Keras file readers: mutated real files either parse or raise a paramscope error.

Base files are written by Keras: a ``.keras`` archive, a legacy full-model ``.h5`` and a
``.weights.h5``. Hypothesis flips and sets bytes, splices one stretch of the file over another
and truncates. The archive's ``model.weights.h5`` is stored uncompressed and read in place, so
mutating the archive reaches the HDF5 reader; some examples mutate that member alone and zip it
again, so that the config stays readable. The HDF5 part of every read runs in a child process:
a file that sends libhdf5 into a loop is stopped there, which the last tests check.
"""

from __future__ import annotations

import io
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _hdf5_child import CRASH, HANG, replace_child

hypothesis = pytest.importorskip("hypothesis")
keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

from paramscope import ParamscopeError  # noqa: E402
from paramscope.analysis import totals  # noqa: E402
from paramscope.core.errors import UnsafeFileError  # noqa: E402
from paramscope.readers import read  # noqa: E402
from paramscope.readers.keras import archive as keras_archive
from paramscope.readers.keras import weights as keras_weights

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

# Each read starts a child process (a fraction of a second): few examples keep the file quick.
FUZZ = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)

#: (kind, position as a fraction of the length, a second position, byte value)
_EDIT = hs.tuples(
    # Truncation is rarer: a cut HDF5 file fails at its end-of-file check, before any walking.
    hs.sampled_from(["flip", "set", "splice"] * 3 + ["truncate"]), hs.floats(0, 1), hs.floats(0, 1), hs.integers(0, 255)
)


#: Size of the version-0 superblock h5py writes (signature, versions, addresses, root entry).
_SUPERBLOCK = 96


def _mutate(data: bytes, edits: list[tuple[str, float, float, int]], keep: int = 0) -> bytes:
    """``data`` edited after its first ``keep`` bytes.

    HDF5 files keep their signature (``keep=8``): without it no reader claims the file, and
    the example would test nothing but that. The standalone ones keep their whole superblock
    (``keep=_SUPERBLOCK``): a damaged one fails every open, in ``can_read`` already, so
    examples are better spent on the groups that the readers walk.
    """
    buf = bytearray(data)
    for kind, where, other, value in edits:
        if len(buf) <= keep:
            break
        i = keep + min(int(where * (len(buf) - keep)), len(buf) - keep - 1)
        if kind == "flip":
            buf[i] ^= 1 << (value % 8)
        elif kind == "set":
            buf[i] = value
        elif kind == "splice":
            # Another stretch of the same file over this one: plausible headers in the wrong place.
            j = keep + min(int(other * (len(buf) - keep)), len(buf) - keep - 1)
            buf[i : i + value + 1] = buf[j : j + value + 1]
        else:
            del buf[i:]
    return bytes(buf)


def _model() -> Any:
    inp = keras.Input((4,))
    x = keras.layers.Dense(8)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Reshape((2, 4))(x)
    x = keras.layers.LSTM(3)(x)
    model = keras.Model(inp, keras.layers.Dense(2)(x))
    model.compile(optimizer="adam", loss="mse")
    return model


@pytest.fixture(scope="module")
def files() -> Iterator[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _model()
        folder = Path(d)
        model.save(folder / "m.keras")
        model.save(folder / "m.h5")  # the legacy full-model layout
        model.save_weights(folder / "m.weights.h5")
        with zipfile.ZipFile(folder / "m.keras") as zf:
            members = {name: zf.read(name) for name in zf.namelist()}
        yield {
            "folder": folder,
            "keras": (folder / "m.keras").read_bytes(),
            "members": members,
            "h5": (folder / "m.h5").read_bytes(),
            "weights": (folder / "m.weights.h5").read_bytes(),
        }


@pytest.fixture(scope="module", autouse=True)
def short_limit() -> Iterator[None]:
    # A mutation that does send libhdf5 into a loop is an UnsafeFileError after this long.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keras_archive, "H5_TIMEOUT_S", 10)
        mp.setattr(keras_weights, "H5_TIMEOUT_S", 10)
        yield


def _read_or_refuse(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        totals(read(path))
    except ParamscopeError as e:
        assert str(path) in str(e) or path.name in str(e), f"the error does not name the file: {e}"


def test_unmutated_files_read(files: dict[str, Any]) -> None:
    folder = files["folder"]
    for name in ("m.keras", "m.h5", "m.weights.h5"):
        assert totals(read(folder / name)).params == _model().count_params()


@FUZZ
@given(edits=hs.lists(_EDIT, min_size=1, max_size=4), member=hs.booleans())
def test_mutated_keras_archive(files: dict[str, Any], edits: list[tuple[str, float, float, int]], member: bool) -> None:
    if member:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in files["members"].items():
                zf.writestr(name, _mutate(data, edits, keep=8) if name == "model.weights.h5" else data)
        data = buf.getvalue()
    else:
        data = _mutate(files["keras"], edits)
    _read_or_refuse(files["folder"] / "fuzz.keras", data)


@FUZZ
@given(edits=hs.lists(_EDIT, min_size=1, max_size=4))
def test_mutated_legacy_h5_model(files: dict[str, Any], edits: list[tuple[str, float, float, int]]) -> None:
    _read_or_refuse(files["folder"] / "fuzz.h5", _mutate(files["h5"], edits, keep=_SUPERBLOCK))


@FUZZ
@given(edits=hs.lists(_EDIT, min_size=1, max_size=4))
def test_mutated_weights_h5(files: dict[str, Any], edits: list[tuple[str, float, float, int]]) -> None:
    _read_or_refuse(files["folder"] / "fuzz.weights.h5", _mutate(files["weights"], edits, keep=_SUPERBLOCK))


def test_a_looping_hdf5_library_is_stopped_for_weights(files: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # libhdf5 looping on a damaged file holds Python's lock; the weights are walked in a child
    # process under a time limit. Here the child is made to hang on purpose.
    path = files["folder"] / "m.weights.h5"
    monkeypatch.setattr(keras_weights, "H5_TIMEOUT_S", 1)
    replace_child(monkeypatch, HANG)
    with pytest.raises(UnsafeFileError, match="did not finish") as e:
        read(path)
    assert str(path) in str(e.value)


def test_a_crashing_hdf5_library_is_an_error_for_weights(files: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    path = files["folder"] / "m.weights.h5"
    replace_child(monkeypatch, CRASH)
    with pytest.raises(ParamscopeError, match="stopped while reading") as e:
        read(path)
    assert str(path) in str(e.value)
