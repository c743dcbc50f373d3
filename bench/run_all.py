"""Run every benchmark in this folder, one after the other: ``python bench/run_all.py``.

Each benchmark compares paramscope with the tool a user would otherwise use, side by side in
one run, and prints wall times, peak memory and their ratios. Pass names to run only some:
``python bench/run_all.py keras_config_vs_keras``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The tools the benchmarks compare paramscope with (the "bench" extra; the test install has them).
NEEDED = ("torch", "keras", "transformers", "torchinfo", "safetensors", "onnx", "gguf", "numpy")


def main(argv: list[str]) -> int:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"bench: {', '.join(missing)} not installed; the benchmarks compare paramscope with them. "
            """Install them with: pip install -c constraints/test.txt -e ".[test]" (or ".[bench]")""",
            file=sys.stderr,
        )
        return 2
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    if argv:
        scripts = [p for p in scripts if p.stem in argv]
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} " + "=" * max(0, 70 - len(script.stem)), flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)])
        print(f"--- {script.stem}: exit {code}, {time.perf_counter() - start:.1f} s", flush=True)
        if code:
            failed.append(script.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
