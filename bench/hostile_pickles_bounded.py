"""Hostile checkpoints: ``paramscope summary`` (budget 10 s, 1 GiB) beside ``torch.load(weights_only=True)``.

Run from the repository root:

    python bench/hostile_pickles_bounded.py [--repeat 1] [--no-torch]

Each file is a ``.pt`` zip whose ``data.pkl`` is an attack on a pickle reader (the tests in
``tests/test_security_pickle.py`` hold the same ones and check the refusals and the memory;
timing lives here because wall time is not behaviour). Every run is a fresh process; the table
gives paramscope's exit status, median wall time and peak RSS and whether it stayed within the
budget, then what the loader a user would otherwise reach for, torch's restricted
``torch.load(path, weights_only=True)``, does with the same file: how it ends (an exception, a
signal such as SIGSEGV, or killed at the 30 s limit), its wall time and peak RSS (it runs under
a 4 GiB address-space limit so an attack cannot take the machine). The exit status is 1 when a
paramscope run is over its budget.
"""

from __future__ import annotations

import io
import json
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import _WRAPPER, ROOT, arg_parser, child_env  # noqa: E402

BUDGET_S, BUDGET_BYTES = 10.0, 1 << 30
PROTO = b"\x80\x04"


def _text(s: str) -> bytes:
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _get(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


def _dag(levels: int, leaf: bytes, pair: bytes) -> bytes:
    out = leaf + b"\x940"
    for i in range(levels):
        out += pair.replace(b"@", _get(i)) + b"\x940"
    return out + _get(levels)


def _long(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _module(cls: bytes, state: bytes) -> bytes:
    return cls + b")\x81}(" + state + b"ub"


def cases() -> dict[str, bytes]:
    """name -> data.pkl."""
    seq = b"ctorch.nn.modules.container\nSequential\n"
    ident = b"ctorch.nn.modules.linear\nIdentity\n"
    return {
        "300,000-deep tuple as a dict key": PROTO + b"}" + b")" + b"\x85" * 300_000 + b"K\x01s.",
        "300,000-deep tuple under FROZENSET": PROTO + b"(" + b")" + b"\x85" * 300_000 + b"\x91.",
        "2**40-leaf tuple DAG as a dict key": PROTO + b"}" + _dag(40, b")", b"@@\x86") + b"K\x01s.",
        "2**40-leaf list DAG as a value": PROTO + b"}" + _text("w") + _dag(40, b"]", b"]@a@a") + b"s.",
        "2**40-path module records": PROTO + _dag(40, _module(ident, b""), _module(seq, _text("_modules") + b"}("
                                                   + _text("a") + b"@" + _text("b") + b"@u")) + b".",  # fmt: skip
        "2**40-leaf list DAG in torch.device()": PROTO + b"}" + _text("d") + b"ctorch\ndevice\n"
                                                 + _dag(40, b"]", b"]@a@a") + b"\x85Rs.",  # fmt: skip
        "19,000,000 EMPTY_SET": PROTO + b"\x8f" * 19_000_000 + b".",
        "64 MiB of text opcodes": b"\x80\x02" + b"I1\n0" * ((64 << 20) // 4 - 1) + b"N.",
        "65 MiB of opcodes (bytes cap)": b"\x80\x02" + b"N0" * (33 << 20) + b"N.",
        "299,999 int keys sharing one hash": PROTO + b"}(" + b"".join(_long(k * (2**61 - 1)) + b"N" for k in range(1, 300_000))
                                              + b"u.",  # fmt: skip
        "100,000 entries sharing one value": PROTO + b"](" + b"]" * 100_000 + b"e\x940}("
                                             + b"".join(_text(f"k{i}") + _get(0) for i in range(100_000)) + b"u.",  # fmt: skip
    }


def _write(folder: Path, i: int, data_pkl: bytes) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/version", b"3\n")
    path = folder / f"case{i}.pt"
    path.write_bytes(buf.getvalue())
    return path


TORCH_LIMIT_S, TORCH_AS_BYTES = 30.0, 4 << 30

#: Runs torch.load in a grandchild with a time and address-space limit; prints how it ended.
_TORCH_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "def limit():\n"
    f"    resource.setrlimit(resource.RLIMIT_AS, ({TORCH_AS_BYTES}, {TORCH_AS_BYTES}))\n"
    "code = 'import sys, torch; torch.load(sys.argv[1], weights_only=True)'\n"
    "t = time.perf_counter()\n"
    "try:\n"
    "    r = subprocess.run([sys.executable, '-c', code, sys.argv[1]], capture_output=True, text=True,\n"
    f"                       timeout={TORCH_LIMIT_S}, preexec_fn=limit)\n"
    "    lines = r.stderr.splitlines()\n"
    "    errors = [l for l in lines if l.split(':', 1)[0].endswith(('Error', 'Exception'))]\n"
    "    text = ' '.join(l.strip() for l in lines)\n"
    "    if 'WeightsUnpickler error:' in text:  # the reason, inside torch's long message\n"
    "        errors.append('refused: ' + text.split('WeightsUnpickler error:', 1)[1].split('Check the documentation')[0].strip())\n"
    "    rc, tail = r.returncode, (errors or [''])[-1][:90]\n"
    "except subprocess.TimeoutExpired:\n"
    f"    rc, tail = None, 'killed at {TORCH_LIMIT_S:.0f} s'\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "print(json.dumps({'rc': rc, 'wall_s': wall, 'peak_bytes': rss, 'tail': tail}))\n"
)


def run_torch(path: Path) -> str:
    """How ``torch.load(weights_only=True)`` ends on ``path``, in a table's cells."""
    done = subprocess.run([sys.executable, "-c", _TORCH_WRAPPER, str(path)], capture_output=True, text=True,
                          env=child_env(), cwd=ROOT)  # fmt: skip
    d = json.loads(done.stdout)
    if d["rc"] is None:
        how = d["tail"]
    elif d["rc"] < 0:
        how = f"killed by {signal.Signals(-d['rc']).name}"
    elif d["rc"] == 0:
        how = "loaded"
    else:
        how = d["tail"] or f"exit {d['rc']}"
    return f"{how} | {d['wall_s']:.2f} | {d['peak_bytes'] / 2**20:.0f}"


def run(path: Path) -> tuple[int, float, int, str]:
    argv = [sys.executable, "-m", "paramscope", "summary", str(path)]
    done = subprocess.run([sys.executable, "-c", _WRAPPER, "0", *argv], capture_output=True, text=True,
                          env=child_env(), cwd=ROOT)  # fmt: skip
    d = json.loads(done.stdout.partition("\n")[0])
    return d["rc"], d["wall_s"], d["peak_bytes"], d["err"].strip().splitlines()[-1][:90] if d["err"].strip() else ""


def main() -> int:
    parser = arg_parser(__doc__)
    parser.add_argument("--no-torch", action="store_true", help="paramscope alone, without torch.load beside it")
    args = parser.parse_args()
    over = False
    print("| case | file KiB | exit | wall s | peak RSS MiB | within 10 s, 1 GiB | message "
          "| torch.load(weights_only=True) | torch wall s | torch peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, data) in enumerate(cases().items()):
            path = _write(Path(tmp), i, data)
            runs = [run(path) for _ in range(max(1, args.repeat))]
            wall = statistics.median(r[1] for r in runs)
            peak = int(statistics.median(r[2] for r in runs))
            ok = wall <= BUDGET_S and peak <= BUDGET_BYTES and runs[-1][0] in (0, 2)
            over |= not ok
            theirs = "- | - | -" if args.no_torch else run_torch(path)
            print(f"| {name} | {path.stat().st_size / 1024:.0f} | {runs[-1][0]} | {wall:.2f} | {peak / 2**20:.0f} | "
                  f"{'yes' if ok else 'NO'} | {runs[-1][3]} | {theirs} |", flush=True)  # fmt: skip
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
