"""Write the seed model as files, to try paramscope on files: ``python examples/write_files.py [FOLDER]``.

Writes into FOLDER (default ``model-files``):

- ``seed.json``: the Keras config of the seed, from the builder (needs nothing else);
- ``gpt2/config.json``: GPT-2 small's Hugging Face config (reading it needs transformers);
- with Keras installed: ``seed.keras`` (a Keras 3 archive with weights) and ``seed.weights.h5``;
- with PyTorch installed: ``torch_seed.pt`` (a state dict) and, with safetensors,
  ``torch_seed.safetensors``.

Whatever cannot be written for lack of a library is listed with the extra that installs it.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    seed = _quiet_run(HERE / "seed.py")["mlp_model"]
    written = [_write(folder / "seed.json", seed.to_json(indent=1))]
    (folder / "gpt2").mkdir(exist_ok=True)
    gpt2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_positions": 1024}
    written.append(_write(folder / "gpt2" / "config.json", json.dumps(gpt2, indent=1)))
    skipped = []
    try:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        real = seed.to_keras()
        real.save(folder / "seed.keras")
        real.save_weights(folder / "seed.weights.h5")
        written += [folder / "seed.keras", folder / "seed.weights.h5"]
    except Exception as e:  # keras, or its backend, is missing
        skipped.append(f"seed.keras, seed.weights.h5 (pip install 'paramscope[keras,torch]': {e})")
    try:
        import torch

        state = _quiet_run(HERE / "torch_seed.py")["model"].state_dict()
        torch.save(state, folder / "torch_seed.pt")
        written.append(folder / "torch_seed.pt")
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, folder / "torch_seed.safetensors")
        written.append(folder / "torch_seed.safetensors")
    except ImportError as e:
        skipped.append(f"torch_seed.pt, torch_seed.safetensors (pip install 'paramscope[bench]': {e})")
    print("wrote " + ", ".join(str(p) for p in written))
    for line in skipped:
        print(f"not written: {line}")
    return 0


def _quiet_run(path: Path) -> dict[str, object]:
    # The seed script prints its summaries; only its model is wanted here.
    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        return runpy.run_path(str(path))
    finally:
        sys.stdout.close()
        sys.stdout = stdout


def _write(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    return path


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("model-files")))
