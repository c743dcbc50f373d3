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

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("KERAS_BACKEND", "torch")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def _measure(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB and stdout of one fresh child process."""
    # Each measurement runs in its own grandchild so RUSAGE_CHILDREN sees that child alone.
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "sys.stderr.write(p.stderr[-2000:] if p.returncode else '')\n"
        "print(f'{wall} {rss} {p.returncode}')\n"
        "sys.stdout.write(p.stdout)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                         env=_env(), check=True)
    first, _, rest = out.stdout.partition("\n")
    wall, rss_kib, code = first.split()
    if code != "0":
        raise SystemExit(f"{argv[:4]} failed:\n{out.stderr}")
    return float(wall), int(rss_kib) / 1024, rest


def _total(text: str) -> int:
    m = re.search(r"Total params: ([\d,]+)", text)
    if not m:
        raise SystemExit(f"no 'Total params' line in:\n{text[-2000:]}")
    return int(m.group(1).replace(",", ""))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EfficientNetV2L")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / f"{args.model}.json")
        made = subprocess.run([sys.executable, "-c", _MAKE, args.model, path], capture_output=True,
                              text=True, env=_env(), check=True)
        expected = int(made.stdout.strip().splitlines()[-1])
        size_kib = os.path.getsize(path) / 1024
        print(f"{args.model}: {expected:,} params, config {size_kib:,.0f} KiB; median of {args.repeat} runs")
        tools = {
            "paramscope summary": [sys.executable, "-m", "paramscope", "summary", path],
            "keras model_from_json + summary()": [sys.executable, "-c", _KERAS, path],
        }
        results: dict[str, tuple[float, float]] = {}
        for name, cmd in tools.items():
            walls, rsss = [], []
            for _ in range(args.repeat):
                wall, rss, text = _measure(cmd)
                if _total(text) != expected:
                    raise SystemExit(f"{name} reports {_total(text):,} params, expected {expected:,}")
                walls.append(wall)
                rsss.append(rss)
            results[name] = (statistics.median(walls), statistics.median(rsss))
        print(f"{'tool':<36}{'wall s':>10}{'peak RSS MiB':>15}")
        for name, (wall, rss) in results.items():
            print(f"{name:<36}{wall:>10.2f}{rss:>15.0f}")
        (pw, pr), (kw, kr) = results.values()
        print(f"ratio keras / paramscope: {kw / pw:.1f}x wall, {kr / pr:.1f}x peak RSS")
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    code = main(sys.argv[1:])
    print(f"({time.perf_counter() - start:.0f} s in all)")
    raise SystemExit(code)
