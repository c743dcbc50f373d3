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
  checkpoint/                           sharded: DCP, DeepSpeed ZeRO, Megatron-LM, FSDP1 rank files
  config.json                           a Hugging Face config (built on the meta device)
  path/to/script.py:NAME                a model (or zero-argument function) in a script
  package.module:NAME                   the same, from an importable module

examples:
  paramscope summary model.keras
  paramscope summary examples/seed.py:mlp_model --style keras2
  paramscope explain model.keras --layer batch_normalization
  paramscope summary examples/torch_seed.py:model --input-size 1,4096 --format json
  paramscope layout checkpoints/step-1000 --world-size 16
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="{summary,explain,layout}")
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
    g = sub.add_parser("layout", help="a sharded checkpoint's rank layout: who holds what, and at other world sizes")
    g.add_argument("target", help="a sharded checkpoint folder (PyTorch Distributed Checkpoint, DeepSpeed, Megatron-LM, FSDP1 rank files)")
    g.add_argument("--format", "-f", choices=("text", "markdown", "json", "html"), default="text", help="output format")
    g.add_argument("--width", type=int, default=None, help="text width (default: the terminal's)")
    g.add_argument("--world-size", dest="world_sizes", type=int, action="append", default=None, metavar="N",
                   help="also show the bytes per rank at N ranks (FSDP2 dim-0 shards); repeat for several")  # fmt: skip
    g.add_argument("--rank", type=int, default=None, help="list every slice this rank holds")
    g.add_argument("--debug", action="store_true", help="show the traceback on errors")
    return parser


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
    from paramscope.api import explain, layout, summary
    from paramscope.targets import resolve_target

    source = resolve_target(args.target)
    width = args.width or _terminal_width()
    if args.command == "layout":
        return layout(source, world_sizes=tuple(args.world_sizes or ()), rank=args.rank, format=args.format, width=width)
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
