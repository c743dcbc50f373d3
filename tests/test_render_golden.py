"""Golden renders: the default summary of the seed model and of GPT-2, compared byte for byte.

The files under tests/golden/ were checked by hand once (the seed: 2,097,664 / 2,048 / 41,040,
total 2,140,752, trainable 2,139,728, non-trainable 1,024; GPT-2: 124,439,808 parameters, the
head tied to the token embedding and counted there). After an intended change of the output,
rewrite them with ``python tests/test_render_golden.py`` and read the difference before committing.
"""

from __future__ import annotations

import functools
import runpy
import sys
from pathlib import Path
from typing import Any

import pytest

import paramscope

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).parent.parent


def _seed() -> Any:
    from paramscope.keras._naming import clear_session

    clear_session()  # layer names count up per session, as in Keras: start from a fresh one
    return runpy.run_path(str(ROOT / "examples" / "seed.py"))["mlp_model"]


@functools.lru_cache(maxsize=1)
def _gpt2() -> Any:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        return transformers.GPT2LMHeadModel(transformers.GPT2Config())


def renders() -> dict[str, Any]:
    """File name -> a function that renders it (fixed width, no colour)."""
    return {
        "seed_summary_120.txt": lambda: paramscope.summary(_seed(), width=120).text,
        "seed_summary_80.txt": lambda: paramscope.summary(_seed(), width=80).text,
        "seed_summary_60.txt": lambda: paramscope.summary(_seed(), width=60).text,
        "seed_explain_bn_120.txt": lambda: paramscope.explain(_seed(), layer="batch_normalization", width=120).text,
        "seed_explain_bn_80.txt": lambda: paramscope.explain(_seed(), layer="batch_normalization", width=80).text,
        "seed_explain_bn_60.txt": lambda: paramscope.explain(_seed(), layer="batch_normalization", width=60).text,
        "gpt2_summary_120.txt": lambda: paramscope.summary(_gpt2(), width=120).text,
        # With an input: shapes and FLOPs (c_attn: 2 x 128 x 768 x 2,304 = 453 M; lm_head:
        # 2 x 128 x 768 x 50,257 = 9.88 G), and attn_dropout, which SDPA never calls.
        "gpt2_summary_tokens128_120.txt": lambda: paramscope.summary(
            _gpt2(), width=120, inputs=["input_ids=int64[1,128]"]
        ).text,
    }


@pytest.mark.parametrize("name", sorted(renders()))
def test_golden_render(name: str) -> None:
    text = renders()[name]()
    assert text == (GOLDEN / name).read_text(encoding="utf-8")
    width = int(name.rsplit("_", 1)[1].split(".")[0])  # the file name ends in its width
    assert max(len(line) for line in text.splitlines()) <= width


def test_golden_numbers_are_the_frameworks() -> None:
    # The goldens' key figures, against the oracles: the seed's question and torch's own count.
    seed = (GOLDEN / "seed_summary_120.txt").read_text(encoding="utf-8")
    for figure in ("2,097,664", "2,048", "41,040", "Total params: 2,140,752", "Trainable params: 2,139,728",
                   "Non-trainable params: 1,024"):
        assert figure in seed
    model = _gpt2()
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    assert total == 124_439_808
    assert f"Total params: {total:,}" in (GOLDEN / "gpt2_summary_120.txt").read_text(encoding="utf-8")


def test_names_are_never_split_inside_a_word() -> None:
    for name in sorted(renders()):
        if name.startswith("gpt2"):
            continue
        text = (GOLDEN / name).read_text(encoding="utf-8")
        words = set(text.split())
        for token in ("batch_normalization", "(BatchNormalization)", "moving_variance", "input_layer"):
            if token.strip("()") in text.replace("\n", " "):
                assert any(token in w for w in words), (name, token)


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for file_name, render in renders().items():
        (GOLDEN / file_name).write_text(render(), encoding="utf-8")
        print("wrote", file_name, file=sys.stderr)
