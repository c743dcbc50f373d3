"""Hostile and broken Keras files: each is refused with the right error, naming the file, and
nothing in them is run or imported."""

from __future__ import annotations

import json
import math
import struct
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
from _hdf5_child import CRASH, HANG, replace_child

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
layers = keras.layers

from paramscope.core.errors import CorruptFileError, UnsafeFileError, UnsupportedFormatError  # noqa: E402
from paramscope.readers import read  # noqa: E402
from paramscope.readers.keras import archive as keras_archive
from paramscope.readers.keras import h5_child as _keras_h5_child
from paramscope.readers.keras.h5_child import archive_part  # noqa: E402


def _save(model: Any, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = keras.Sequential([keras.Input((8,)), layers.Dense(4), layers.BatchNormalization(), layers.Dense(2)])
    return _save(model, tmp_path_factory.mktemp("good") / "good.keras")


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes | None]) -> Path:
    """Copy a zip, replacing (or dropping, with None) some members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in replace:
                data = replace[info.filename]
                if data is not None:
                    zout.writestr(info.filename, data)
            else:
                zout.writestr(info, zin.read(info))
        for name, data in replace.items():
            if name not in zin.namelist() and data is not None:
                zout.writestr(name, data)
    return dst


def test_random_bytes_named_keras(tmp_path: Path) -> None:
    path = tmp_path / "junk.keras"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CorruptFileError, match="not a readable zip") as e:
        read(path)
    assert str(path) in str(e.value)


def test_truncated_archive(good: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.keras"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorruptFileError) as e:
        read(path)
    assert str(path) in str(e.value)


def test_zip_without_config(good: Path, tmp_path: Path) -> None:
    path = _rewrite(good, tmp_path / "noconf.keras", {"config.json": None})
    with pytest.raises(CorruptFileError, match="no config.json") as e:
        read(path)
    assert str(path) in str(e.value)


def test_config_that_is_not_json(good: Path, tmp_path: Path) -> None:
    path = _rewrite(good, tmp_path / "badjson.keras", {"config.json": b"{'class_name': Sequential"})
    with pytest.raises(CorruptFileError, match="invalid JSON") as e:
        read(path)
    assert f"{path}: config.json" in str(e.value)


def test_config_that_is_not_a_model(good: Path, tmp_path: Path) -> None:
    path = _rewrite(good, tmp_path / "list.keras", {"config.json": b"[1, 2, 3]"})
    with pytest.raises(CorruptFileError) as e:
        read(path)
    assert str(path) in str(e.value)


def test_zip_bomb_refused_by_declared_size(
    good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keras_archive, "MAX_CONFIG_BYTES", 1 << 20)
    bomb = b'{"pad": "' + b" " * (8 << 20) + b'"}'
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", bomb)
        z.writestr("metadata.json", b"{}")
    assert path.stat().st_size < 64 * 1024  # small on disk, 8 MiB inflated
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: Any, *a: Any, **k: Any) -> Any:
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(UnsafeFileError, match="refused without inflating") as e:
        read(path)
    assert "config.json" not in opened
    assert str(path) in str(e.value)


def test_zip_bomb_with_lying_header_is_not_inflated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The central directory claims 100 bytes; the stream inflates to 8 MiB. Reading stops at
    # the claimed size (and the CRC then fails), never inflating the rest.
    monkeypatch.setattr(keras_archive, "MAX_CONFIG_BYTES", 1 << 20)
    path = tmp_path / "liar.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", b"{" + b" " * (8 << 20) + b"}")
    data = bytearray(path.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 100)  # uncompressed size in the central directory
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as e:
        read(path)
    assert str(path) in str(e.value)


def test_weights_that_contradict_the_config(good: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(good) as z:
        config = json.loads(z.read("config.json"))
    dense = next(x for x in config["config"]["layers"] if x["class_name"] == "Dense")
    dense["config"]["units"] = 5
    path = _rewrite(good, tmp_path / "mismatch.keras", {"config.json": json.dumps(config).encode()})
    with pytest.raises(CorruptFileError) as e:
        read(path)
    message = str(e.value)
    assert str(path) in message
    assert dense["config"]["name"] in message and "kernel" in message


def test_weights_for_a_layer_the_config_lacks(good: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(good) as z:
        config = json.loads(z.read("config.json"))
    config["config"]["layers"] = [x for x in config["config"]["layers"] if x["class_name"] != "BatchNormalization"]
    path = _rewrite(good, tmp_path / "extra.keras", {"config.json": json.dumps(config).encode()})
    with pytest.raises(CorruptFileError, match="batch_normalization") as e:
        read(path)
    assert str(path) in str(e.value)


def test_lambda_code_is_reported_not_run(tmp_path: Path) -> None:
    flag = tmp_path / "ran"
    x = keras.Input((4,))
    # The lambda leaves a mark when it runs; Keras runs it once to build the graph.
    mark = str(flag)
    y = layers.Lambda(lambda t: (open(mark, "w").write("ran"), t * 2)[1], name="double")(x)
    model = keras.Model(x, layers.Dense(3)(y))
    path = _save(model, tmp_path / "lambda.keras")
    flag.unlink()
    anatomy = read(path)
    lam = anatomy.find("double")
    assert lam is not None and lam.type == "Lambda" and "never run" in lam.note
    assert not flag.exists()


def test_custom_module_is_reported_not_imported(tmp_path: Path) -> None:
    @keras.saving.register_keras_serializable(package="paramscope_tests")
    class Scale(layers.Layer):  # type: ignore[misc,name-defined]
        def build(self, input_shape: Any) -> None:
            self.w = self.add_weight(name="w", shape=(input_shape[-1], 3))

        def call(self, x: Any) -> Any:
            return keras.ops.matmul(x, self.w)

    model = keras.Sequential([keras.Input((8,)), Scale(name="scale"), layers.Dense(2)])
    src = _save(model, tmp_path / "custom.keras")
    with zipfile.ZipFile(src) as z:
        config = json.loads(z.read("config.json"))
    entry = next(x for x in config["config"]["layers"] if x["class_name"] == "Scale")
    entry["module"] = "paramscope_evil_module"
    path = _rewrite(src, tmp_path / "evil.keras", {"config.json": json.dumps(config).encode()})
    anatomy = read(path)
    layer = anatomy.find("scale")
    assert layer is not None and not layer.known
    assert "paramscope_evil_module" in layer.note
    assert [t.shape for t in layer.tensors] == [(8, 3)]  # the real shape, from the weights file
    assert "paramscope_evil_module" not in sys.modules


def test_weights_groups_that_match_no_layer(good: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(good) as z:
        config = json.loads(z.read("config.json"))
    dense = next(x for x in config["config"]["layers"] if x["class_name"] == "Dense")
    dense["class_name"] = "Backdoor"  # the file's groups are named after the real classes
    path = _rewrite(good, tmp_path / "renamed.keras", {"config.json": json.dumps(config).encode()})
    with pytest.raises(CorruptFileError, match="matches no layer") as e:
        read(path)
    assert str(path) in str(e.value)


def test_external_link_in_weights_is_refused(good: Path, tmp_path: Path) -> None:
    weights = tmp_path / "w.h5"
    with zipfile.ZipFile(good) as z:
        weights.write_bytes(z.read("model.weights.h5"))
    with h5py.File(weights, "a") as f:
        del f["layers/dense/vars/0"]
        f["layers/dense/vars/0"] = h5py.ExternalLink("/etc/passwd", "/x")
    path = _rewrite(good, tmp_path / "link.keras", {"model.weights.h5": weights.read_bytes()})
    with pytest.raises(UnsafeFileError, match="external file") as e:
        read(path)
    assert str(path) in str(e.value)


def test_weights_only_h5_read_directly(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    path = tmp_path / "only.weights.h5"
    model.save_weights(path)
    with pytest.raises(UnsupportedFormatError, match="weights only") as e:
        keras_archive.read(path)
    assert str(path) in str(e.value)


def test_corrupt_h5(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\xff" * 200)
    with pytest.raises(CorruptFileError) as e:
        keras_archive.read(path)
    assert str(path) in str(e.value)


def test_h5_model_config_not_json(tmp_path: Path) -> None:
    path = tmp_path / "nojson.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = "{not json"
    with pytest.raises(CorruptFileError, match="model_config") as e:
        read(path)
    assert str(path) in str(e.value)


def _central_entry(data: bytes, name: bytes) -> int:
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at)
        n = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + n] == name:
            return at
        at += 4


def test_weights_entry_claiming_bytes_past_the_end(good: Path, tmp_path: Path) -> None:
    data = bytearray(good.read_bytes())
    at = _central_entry(bytes(data), b"model.weights.h5")
    struct.pack_into("<II", data, at + 20, 1 << 30, 1 << 30)  # compressed and uncompressed sizes
    path = tmp_path / "long.keras"
    path.write_bytes(bytes(data))
    # The central directory now disagrees with the member's local header: refused as ambiguous
    # before the entry's extent is even considered.
    with pytest.raises(CorruptFileError, match="1,073,741,824/1,073,741,824 in the central directory") as e:
        read(path)
    assert str(path) in str(e.value)


def test_weights_are_never_read_only_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = keras.Sequential([keras.Input((1000,)), layers.Dense(1000), layers.Dense(1000)])
    path = _save(model, tmp_path / "big.keras")  # 8 MB of weights
    seen = [0]
    real = _keras_h5_child._Window.readinto

    def counting(self: Any, buffer: Any) -> int:
        n = real(self, buffer)
        seen[0] += n
        return n

    monkeypatch.setattr(_keras_h5_child._Window, "readinto", counting)
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
    # The HDF5 half, run here rather than in its child process so that its reads can be counted.
    reply = archive_part(str(path), config)
    assert sum(math.prod(shape) for ws in reply["stored"].values() for _, shape, _ in ws) == model.count_params()
    assert 0 < seen[0] < 256 * 1024, seen[0]


def test_deflated_weights_entry_still_reads(good: Path, tmp_path: Path) -> None:
    path = tmp_path / "deflated.keras"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    assert [layer.tensors for layer in read(path).layers] == [layer.tensors for layer in read(good).layers]


def test_a_looping_hdf5_library_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A damaged global heap can make libhdf5 loop forever holding Python's lock; the HDF5 half
    # runs in a child process under a time limit. Here the child is made to hang on purpose.
    seed = tmp_path / "m.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.Sequential([keras.Input((3,)), layers.Dense(2)]).save(seed)
    monkeypatch.setattr(keras_archive, "H5_TIMEOUT_S", 1)
    replace_child(monkeypatch, HANG)
    with pytest.raises(UnsafeFileError, match="did not finish") as e:
        read(seed)
    assert str(seed) in str(e.value)


def test_a_crashing_hdf5_library_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = tmp_path / "m.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.Sequential([keras.Input((3,)), layers.Dense(2)]).save(seed)
    replace_child(monkeypatch, CRASH)
    with pytest.raises(CorruptFileError, match="stopped while reading") as e:
        read(seed)
    assert str(seed) in str(e.value)
