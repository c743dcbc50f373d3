"""The ``paramscope`` command line: ``summary`` and ``explain`` of a model, file or config."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from paramscope.core.errors import ParamscopeError

__all__ = ["main", "build_parser"]

_EPILOG = """\
targets:
  model.keras, model.h5, model.json     Keras model files and configs
  model.safetensors, folder/, *.index.json   safetensors checkpoints
  model.onnx, model.pt/.pth/.bin, model.gguf  other checkpoint files
  config.json                           a Hugging Face config (built on the meta device)
  path/to/script.py:NAME                a model (or zero-argument function) in a script
  package.module:NAME                   the same, from an importable module

examples:
  paramscope summary model.keras
  paramscope summary examples/seed.py:mlp_model --style keras2
  paramscope explain model.keras --layer batch_normalization
  paramscope summary examples/torch_seed.py:model --input-size 1,4096 --format json
  paramscope memory config.json --train --seq 4096 --precision bf16-mixed --shard zero3 --dp 64
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="a file or folder, or script.py:NAME / package.module:NAME")
    p.add_argument(
        "--format", "-f", choices=("text", "markdown", "json", "html"), default="text",
        help="output format (default: text)",
    )
    p.add_argument("--width", type=int, default=None, help="text width (default: the terminal's)")
    p.add_argument(
        "--input-size", metavar="D0,D1,...", default=None,
        help="PyTorch and ONNX: shape of one float32 input, e.g. 1,3,224,224",
    )
    p.add_argument(
        "--input", dest="inputs", action="append", metavar="[NAME=]DTYPE[DIMS]", default=None,
        help="PyTorch and ONNX: a typed input such as input_ids=int64[1,128]; repeat for several",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback on errors")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="paramscope",
        description="Explain where every parameter, byte and FLOP of a neural network comes from.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from paramscope import __version__

    parser.add_argument("--version", action="version", version=f"paramscope {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{summary,explain,memory}")
    s = sub.add_parser("summary", help="one row per layer with counts, totals, memory and FLOPs")
    _add_common(s)
    s.add_argument(
        "--style", choices=("paramscope", "keras2", "keras3"), default="paramscope",
        help="layout: paramscope (default; split counts, formulas), keras2 (classic, with "
        "'Connected to'), keras3",
    )
    s.add_argument("--depth", type=int, default=None, help="deepest nesting level shown (0: top level)")
    s.add_argument("--expand", action="store_true", help="one row per repeated block instead of xN")
    e = sub.add_parser("explain", help="every tensor of a layer: shape, count, formula, role, why")
    _add_common(e)
    e.add_argument("--layer", "-l", default=None, help="the layer's name or path (default: all layers)")
    _add_memory(sub)
    return parser


def _add_memory(sub: Any) -> None:
    """The ``memory`` subcommand's options (see :func:`paramscope.memory`)."""
    from paramscope.planner import setup as s

    m = sub.add_parser("memory", help="memory per device to serve or train: parts, peak, fit")
    _add_common(m)
    m.add_argument("--train", action="store_true", help="plan a training step (default: inference)")
    m.add_argument("--batch", type=int, default=None, help="sequences per device (default: the input's, 1 for configs)")
    m.add_argument("--seq", type=int, default=None, help="tokens per sequence; for inference the KV cache's context")
    m.add_argument("--precision", choices=tuple(s.PRECISIONS), default=None,
                   help="default: stored dtype for inference, fp32 for training")
    m.add_argument("--optimizer", choices=s.OPTIMIZERS, default="adamw", help="default: adamw")
    m.add_argument("--checkpointing", choices=s.CHECKPOINTING, default="none", help="activation checkpointing")
    m.add_argument("--shard", choices=s.SHARDING, default="none", help="ZeRO stage or FSDP, with --dp")
    m.add_argument("--dp", type=int, default=None, help="data-parallel devices the sharding spreads over")
    m.add_argument("--tp", type=int, default=1, help="Megatron tensor-parallel size")
    m.add_argument("--sp", action="store_true", help="Megatron sequence parallelism (with --tp)")
    m.add_argument("--pp", type=int, default=1, help="pipeline stages")
    m.add_argument("--offload", choices=s.OFFLOAD, default="none", help="what moves to host memory")
    m.add_argument("--device", default=None, help="a device (h100-80gb, a100-40gb) or size (24GiB): does it fit")
    m.add_argument("--attention", choices=s.ATTENTION, default="flash",
                   help="flash (default: what CUDA kernels keep) or math (L x S matrices kept)")


def _run_memory(args: argparse.Namespace, source: Any, width: int) -> Any:
    from paramscope.api import Report, memory, render_memory
    from paramscope.core.anatomy import Anatomy

    plan = memory(
        source, train=args.train, batch=args.batch, seq=args.seq, precision=args.precision,
        optimizer=args.optimizer, checkpointing=args.checkpointing, shard=args.shard, dp=args.dp,
        tp=args.tp, pp=args.pp, sequence_parallel=args.sp, offload=args.offload, device=args.device,
        attention=args.attention, **_reader_options(args),
    )
    view = None
    if args.format == "text":
        from paramscope.render.memory import memory_document

        view = memory_document(plan)
    return Report(render_memory(plan, format=args.format, width=width), args.format, Anatomy(plan.name, "plan"), view)


def _reader_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.input_size:
        try:
            options["input_size"] = tuple(int(x) for x in args.input_size.replace("x", ",").split(","))
        except ValueError:
            raise ParamscopeError(
                f"--input-size {args.input_size!r} is not a list of integers; write e.g. 1,3,224,224"
            ) from None
    if args.inputs:
        options["inputs"] = list(args.inputs)
    return options


def _run(args: argparse.Namespace) -> Any:
    from paramscope.api import explain, summary
    from paramscope.targets import resolve_target

    source = resolve_target(args.target)
    width = args.width or _terminal_width()
    if args.command == "memory":
        return _run_memory(args, source, width)
    options = _reader_options(args)
    if args.command == "summary":
        report = summary(
            source, format=args.format, style=args.style, depth=args.depth, expand=args.expand,
            width=width, **options,
        )
    else:
        report = explain(source, layer=args.layer, format=args.format, width=width, **options)
    return report


def _terminal_width() -> int:
    import shutil

    return max(80, shutil.get_terminal_size((120, 24)).columns)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = _run(args)
    except ParamscopeError as e:
        if args.debug:
            raise
        print(f"paramscope: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug, or a failure inside the user's own model code
        if args.debug:
            raise
        print(
            f"paramscope: error: {type(e).__name__}: {_one_line(str(e))} "
            "(run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 2
    if report.format == "text" and report.view is not None and sys.stdout.isatty() and not args.width:
        # A terminal gets rich's colours and its real width; pipes and files get plain text.
        from paramscope.render.text import print_rich

        print_rich(report.view)
    else:
        sys.stdout.write(report.text)
    return 0


def _one_line(text: str) -> str:
    from paramscope.render.fmt import safe

    return safe(" ".join(text.split()))


if __name__ == "__main__":
    raise SystemExit(main())
