"""Wall time and peak memory of a command, each run as a fresh process.

A small wrapper process starts the command and reads ``RUSAGE_CHILDREN`` after it exits, so
the peak resident set size belongs to that one command (and its own children) alone.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "print(json.dumps({'wall_s': wall, 'peak_bytes': rss, 'rc': r.returncode, 'err': r.stderr.decode()[-2000:]}))\n"
)


@dataclass(frozen=True)
class Result:
    """Median wall time and peak RSS over several runs."""

    label: str
    wall_s: float
    peak_bytes: int
    runs: int


def measure(label: str, argv: Sequence[str], *, repeat: int = 3, env: dict[str, str] | None = None) -> Result:
    """Run ``argv`` ``repeat`` times in fresh processes; medians of wall time and peak RSS."""
    walls, peaks = [], []
    full_env = dict(os.environ, **(env or {}))
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *argv], capture_output=True, text=True, env=full_env, check=True
        ).stdout
        d = json.loads(out.strip().splitlines()[-1])
        if d["rc"] != 0:
            raise RuntimeError(f"{label} failed (exit {d['rc']}): {d['err']}")
        walls.append(d["wall_s"])
        peaks.append(d["peak_bytes"])
    return Result(label, statistics.median(walls), int(statistics.median(peaks)), repeat)


def report(title: str, ours: Result, theirs: Result) -> None:
    """Print both results side by side with the ratios (theirs / ours)."""
    print(f"\n{title}")
    print(f"  {'':44} {'wall (median)':>14} {'peak RSS':>12}")
    for r in (ours, theirs):
        print(f"  {r.label:44} {r.wall_s:12.2f} s {r.peak_bytes / 2**20:9.0f} MiB")
    print(
        f"  ratio: paramscope is {theirs.wall_s / ours.wall_s:.1f}x faster and uses "
        f"{theirs.peak_bytes / ours.peak_bytes:.1f}x less peak memory ({ours.runs} runs each)"
    )
