"""Saved Keras models: ``paramscope summary FILE`` against loading the file in Keras and calling ``summary()``.

Two models, each saved as ``.keras`` and as legacy ``.h5``: ResNet50 (``weights=None``, 25.6M
parameters) and a text model built from the recurrent, attention and wrapper layers
(Embedding -> Bidirectional LSTM -> MultiHeadAttention -> GRU -> Dense). paramscope reads the
config and the weights file's headers, never the weights; Keras (torch backend) loads the model
with ``keras.saving.load_model(path, compile=False)``. Every run is a fresh process.
Run: ``python bench/keras_files_vs_keras.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, report  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "paramscope-bench-keras-files"
KERAS_LOAD = "import sys, keras\nkeras.saving.load_model(sys.argv[1], compile=False).summary()\n"


def _models() -> dict[str, object]:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    from keras import layers

    x = keras.Input((200,), dtype="int32")
    h = layers.Embedding(20_000, 128)(x)
    h = layers.Bidirectional(layers.LSTM(256, return_sequences=True))(h)
    h = layers.MultiHeadAttention(num_heads=8, key_dim=64)(h, h)
    h = layers.GRU(128)(h)
    text = keras.Model(x, layers.Dense(5, activation="softmax")(h), name="text")
    return {"resnet50": keras.applications.ResNet50(weights=None), "text": text}


def _files() -> list[tuple[str, Path]]:
    wanted = [(f"{name}.{fmt}", CACHE / f"{name}.{fmt}") for name in ("resnet50", "text") for fmt in ("keras", "h5")]
    if not all(p.exists() for _, p in wanted):
        CACHE.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, model in _models().items():
                for fmt in ("keras", "h5"):
                    model.save(CACHE / f"{name}.{fmt}")  # type: ignore[attr-defined]
    return wanted


def main() -> None:
    for label, path in _files():
        size = path.stat().st_size / 2**20
        ours = measure(f"paramscope summary {label}", [sys.executable, "-m", "paramscope", "summary", str(path)])
        theirs = measure(
            f"keras load_model({label}).summary()",
            [sys.executable, "-c", KERAS_LOAD, str(path)],
            env={"KERAS_BACKEND": "torch"},
        )
        report(f"{label} ({size:.0f} MiB on disk), cold process, summary printed", ours, theirs)


if __name__ == "__main__":
    main()
