"""Side by side: ``paramscope diff`` against comparing two checkpoints with safetensors' own reader.

Run from the repository root:

    python bench/diff_vs_safe_open.py [--repeat 3]

It writes two SPARSE sharded safetensors checkpoints with Llama-2-70B's layout (about 138 GB
each, no disk used: every shard is its real header followed by ``truncate``), the second with a
vocabulary of 32,064 instead of 32,000 (as a fine-tune that adds tokens), then compares them:

- ``paramscope diff A B`` (the CLI, a fresh process, JSON output);
- what a user writes otherwise: ``safe_open`` on every shard of both folders, a dict of name ->
  (shape, dtype) for each, and the names whose entries differ (numpy and torch frameworks).

Both must find the same two changed tensors (``model.embed_tokens.weight``, ``lm_head.weight``).
Needs: safetensors, numpy and torch.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import files_vs_libraries as layout  # noqa: E402
from _measure import arg_parser, measure_all, table  # noqa: E402

SAFE_OPEN_DIFF = """
import glob, json, sys
from safetensors import safe_open
def entries(folder):
    out = {}
    for f in sorted(glob.glob(folder + "/*.safetensors")):
        with safe_open(f, framework=sys.argv[3]) as h:
            for k in h.keys():
                s = h.get_slice(k)
                out[k] = (tuple(s.get_shape()), s.get_dtype())
    return out
a, b = entries(sys.argv[1]), entries(sys.argv[2])
changed = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
print(json.dumps({"added": sorted(b.keys() - a.keys()), "removed": sorted(a.keys() - b.keys()), "changed": changed}))
"""


def main() -> None:
    args = arg_parser(__doc__).parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-") as tmp:
        a, b = Path(tmp) / "base", Path(tmp) / "tuned"
        a.mkdir()
        b.mkdir()
        total = layout.write_sparse_checkpoint(a)
        layout.VOCAB = 32064
        layout.write_sparse_checkpoint(b)
        print(f"two sparse checkpoints of {total / 1e9:.1f} GB apparent each")
        results = measure_all(
            [
                ("paramscope diff (CLI, JSON)", [py, "-m", "paramscope", "diff", str(a), str(b), "--format", "json"]),
                ("safe_open numpy, dict compare", [py, "-c", SAFE_OPEN_DIFF, str(a), str(b), "numpy"]),
                ("safe_open pt, dict compare", [py, "-c", SAFE_OPEN_DIFF, str(a), str(b), "pt"]),
            ],
            repeat=args.repeat, capture=True, ok_codes=(0, 1),
        )  # fmt: skip
    ours = json.loads(results[0].stdout)
    theirs = json.loads(results[1].stdout)
    found = sorted(c["name"] for c in ours["changed"])
    assert found == theirs["changed"] == ["lm_head.weight", "model.embed_tokens.weight"], (found, theirs)
    assert not ours["added"] and not ours["removed"] and not theirs["added"] and not theirs["removed"]
    print(f"both find the same changed tensors: {', '.join(found)}")
    table("diff two sparse Llama-2-70B checkpoints (headers only)", results)


if __name__ == "__main__":
    main()
