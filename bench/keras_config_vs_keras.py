"""Summarise the largest keras.applications config: paramscope against Keras itself.

Run: ``python bench/keras_config_vs_keras.py [--repeat 3] [--model EfficientNetV2L]``

The model's JSON (``model.to_json()``) is written once into a temporary folder. Then, each
in a fresh subprocess and repeated, (a) ``python -m paramscope summary model.json`` and
(b) a script that imports Keras, rebuilds the model with ``keras.models.model_from_json``
and prints ``model.summary()``. Wall time and peak RSS (``getrusage(RUSAGE_CHILDREN)`` of
a fresh child each time) are reported as medians, with their ratios, and the two parameter
totals are checked to be equal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import arg_parser, child_env, measure, report  # noqa: E402

ENV = {
    "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch"),
    "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
}

_MAKE = """
import sys, keras
model = getattr(keras.applications, sys.argv[1])(weights=None)
open(sys.argv[2], "w").write(model.to_json())
print(model.count_params())
"""

_KERAS = """
import sys, keras
model = keras.models.model_from_json(open(sys.argv[1]).read())
model.summary()
"""


def _total(text: str) -> int:
    m = re.search(r"Total params: ([\d,]+)", text)
    if not m:
        raise SystemExit(f"no 'Total params' line in:\n{text[-2000:]}")
    return int(m.group(1).replace(",", ""))


def main(argv: list[str]) -> int:
    parser = arg_parser(__doc__)
    parser.add_argument("--model", default="EfficientNetV2L")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / f"{args.model}.json")
        made = subprocess.run([sys.executable, "-c", _MAKE, args.model, path], capture_output=True,
                              text=True, env=child_env(ENV), check=True)
        expected = int(made.stdout.strip().splitlines()[-1])
        size_kib = os.path.getsize(path) / 1024
        print(f"{args.model}: {expected:,} params, config {size_kib:,.0f} KiB; median of {args.repeat} runs")
        results = [
            measure(name, cmd, repeat=args.repeat, env=ENV, capture=True)
            for name, cmd in [
                ("paramscope summary", [sys.executable, "-m", "paramscope", "summary", path]),
                ("keras model_from_json + summary()", [sys.executable, "-c", _KERAS, path]),
            ]
        ]
        for r in results:
            if _total(r.stdout) != expected:
                raise SystemExit(f"{r.label} reports {_total(r.stdout):,} params, expected {expected:,}")
        report(f"{args.model}: summary of the model's JSON config, cold process", *results)
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    code = main(sys.argv[1:])
    print(f"({time.perf_counter() - start:.0f} s in all)")
    raise SystemExit(code)
