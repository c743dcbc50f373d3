"""Wall time and peak memory of a command, each run as a fresh process; the tables that show them.

A small wrapper process starts the command and reads ``RUSAGE_CHILDREN`` after it exits, so
the peak resident set size belongs to that one command (and its own children) alone. Every
benchmark in this folder measures through this module.

Commands run from the repository root with ``src`` first on ``PYTHONPATH``, so the paramscope
measured is this checkout's, installed or not.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "out = subprocess.PIPE if sys.argv[1] == '1' else subprocess.DEVNULL\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE)\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "err = r.stderr.decode(errors='replace')[-2000:]\n"
    "print(json.dumps({'wall_s': wall, 'peak_bytes': rss, 'rc': r.returncode, 'err': err}), flush=True)\n"
    "sys.stdout.buffer.write(r.stdout or b'')\n"
)


@dataclass(frozen=True)
class Result:
    """Median wall time and peak RSS over several runs; ``stdout`` of the last run when captured."""

    label: str
    wall_s: float
    peak_bytes: int
    runs: int
    stdout: str = ""


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring's first line, and ``--repeat`` (runs per tool)."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh runs per tool; the median is shown")
    return parser


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``src`` first on ``PYTHONPATH``, then ``env`` on top."""
    out = dict(os.environ)
    src = str(ROOT / "src")
    out["PYTHONPATH"] = src + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    out.update(env or {})
    return out


def paramscope_totals(path: str | Path) -> dict[str, int]:
    """The ``totals`` of ``paramscope summary PATH --format json``, to check a benchmark's input."""
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", "summary", str(path), "--format", "json"],
        capture_output=True, text=True, env=child_env(), cwd=ROOT, check=True,
    )  # fmt: skip
    totals: dict[str, int] = json.loads(done.stdout)["totals"]
    return totals


def _run_once(
    label: str, argv: Sequence[str], env: dict[str, str], capture: bool, ok_codes: Sequence[int] = (0,)
) -> tuple[float, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, "1" if capture else "0", *argv],
        capture_output=True, encoding="utf-8", errors="replace", env=env, cwd=ROOT, check=True,
    )  # fmt: skip
    first, _, stdout = done.stdout.partition("\n")
    d = json.loads(first)
    if d["rc"] not in ok_codes:
        raise RuntimeError(f"{label} failed (exit {d['rc']}): {d['err']}")
    return d["wall_s"], d["peak_bytes"], stdout


def measure_all(
    jobs: Sequence[tuple[str, Sequence[str]]],
    *,
    repeat: int = 3,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
    ok_codes: Sequence[int] = (0,),
) -> list[Result]:
    """Run each ``(label, argv)`` ``repeat`` times in fresh processes; medians of wall time and peak RSS.

    The runs are interleaved (every job once, then every job again), so a change of load on the
    machine hits every tool alike. ``capture`` keeps the last run's stdout in ``Result.stdout``;
    ``ok_codes`` are the exit statuses that count as success (``diff`` exits 1 on a difference).
    """
    full_env = child_env(env)
    # Bytecode for this checkout, as an installed package has it (pip compiles at install), so
    # no run pays for compiling paramscope's modules however the environment sets
    # PYTHONDONTWRITEBYTECODE.
    compileall.compile_dir(ROOT / "src", quiet=1)
    samples: list[list[tuple[float, int, str]]] = [[] for _ in jobs]
    for _ in range(max(1, repeat)):
        for (label, argv), got in zip(jobs, samples):
            got.append(_run_once(label, argv, full_env, capture, ok_codes))
    return [
        Result(label, statistics.median(w for w, _, _ in got), int(statistics.median(p for _, p, _ in got)),
               len(got), got[-1][2])
        for (label, _), got in zip(jobs, samples)
    ]  # fmt: skip


def measure(
    label: str,
    argv: Sequence[str],
    *,
    repeat: int = 3,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
) -> Result:
    """Run ``argv`` ``repeat`` times in fresh processes; medians of wall time and peak RSS."""
    return measure_all([(label, argv)], repeat=repeat, env=env, capture=capture)[0]


Row = Result | tuple[str, str]
"""A measured tool, or ``(label, a note in place of the figures)``: a tool that was not run."""


def table(title: str, groups: Mapping[str, Sequence[Row]] | Sequence[Row]) -> None:
    """Print a markdown table of wall time, peak RSS and their ratios against a base row.

    ``groups`` is either one list of rows, or a mapping from a case (a model, a file) to its
    rows, which adds a case column. In each list the first row is the base: every ratio is that
    row's tool divided by the base.
    """
    cases = groups if isinstance(groups, Mapping) else {"": groups}
    with_case = isinstance(groups, Mapping)
    runs = sorted({r.runs for rows in cases.values() for r in rows if isinstance(r, Result)})
    print(f"\n{title}")
    plural = "s" if runs != [1] else ""
    print(f"median of {'/'.join(map(str, runs))} fresh run{plural} each; ratios: tool / first row\n")
    head = ["tool", "wall s", "peak RSS MiB", "wall ratio", "RSS ratio"]
    print("| " + " | ".join((["case"] if with_case else []) + head) + " |")
    print("|" + "---|" * (with_case + 1) + "---:|" * 4)
    for case, rows in cases.items():
        base = rows[0]
        assert isinstance(base, Result), "the base row must be measured"
        for i, row in enumerate(rows):
            lead = [case if i == 0 else ""] if with_case else []
            if isinstance(row, Result):
                cells = [
                    row.label,
                    f"{row.wall_s:.3f}",
                    f"{row.peak_bytes / 2**20:.1f}",
                    f"{row.wall_s / base.wall_s:.2f}x",
                    f"{row.peak_bytes / base.peak_bytes:.2f}x",
                ]
            else:
                cells = [row[0], row[1], "", "", ""]
            print("| " + " | ".join(lead + cells) + " |")


def report(title: str, ours: Result, theirs: Result) -> None:
    """Print both results side by side with the ratios (theirs / ours)."""
    table(title, [ours, theirs])
    print(
        f"paramscope is {theirs.wall_s / ours.wall_s:.1f}x faster and uses "
        f"{theirs.peak_bytes / ours.peak_bytes:.1f}x less peak memory"
    )
