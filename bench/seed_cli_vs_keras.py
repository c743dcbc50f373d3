"""Cold start on the seed model: ``paramscope summary`` against Keras's own ``summary()``.

paramscope: a fresh ``paramscope summary examples/seed.py:mlp_model`` process (the builder,
no framework). Keras: a fresh process that imports keras (torch backend), builds the same
model and calls ``model.summary()``. Run: ``python bench/seed_cli_vs_keras.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import ROOT, measure, report  # noqa: E402

KERAS_SEED = """
import keras
x = keras.layers.Input(batch_shape=(None, 4096))
hidden = keras.layers.Dense(512, activation='relu')(x)
hidden = keras.layers.BatchNormalization()(hidden)
hidden = keras.layers.Dropout(0.5)(hidden)
predictions = keras.layers.Dense(80, activation='sigmoid')(hidden)
mlp_model = keras.models.Model(inputs=[x], outputs=[predictions])
mlp_model.summary()
"""


def main() -> None:
    ours = measure(
        "paramscope summary seed.py:mlp_model",
        [sys.executable, "-m", "paramscope", "summary", f"{ROOT / 'examples' / 'seed.py'}:mlp_model"],
        repeat=5,
    )
    theirs = measure("import keras + build + summary()", [sys.executable, "-c", KERAS_SEED], repeat=5,
                     env={"KERAS_BACKEND": "torch"})
    report("Seed model, cold process, summary printed", ours, theirs)


if __name__ == "__main__":
    main()
