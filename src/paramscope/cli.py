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
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="a file or folder, or script.py:NAME / package.module:NAME")
    p.add_argument(
        "--format", "-f", choices=("text", "markdown", "json", "html", "csv"), default=None,
        help="output format (default: text, or the one -o's suffix names); csv: summary only",
    )
    p.add_argument(
        "--output", "-o", metavar="FILE", default=None,
        help="write the report to FILE instead of the terminal; the suffix picks the format "
        "(.txt, .md, .json, .html, .csv)",
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="{summary,explain,diff,check}")
    s = sub.add_parser("summary", help="one row per layer with counts, totals, memory and FLOPs")
    _add_common(s)
    s.add_argument(
        "--style", choices=("paramscope", "keras2", "keras3"), default="paramscope",
        help="layout: paramscope (default; split counts, formulas), keras2 (classic, with "
        "'Connected to'), keras3",
    )
    s.add_argument("--depth", type=int, default=None, help="deepest nesting level shown (0: top level)")
    s.add_argument("--expand", action="store_true", help="one row per repeated block instead of xN")
    s.add_argument(
        "--columns", metavar="KEYS", default=None,
        help="columns to show, in order, comma-separated, from: shape, params, trainable, "
        "non_trainable, buffers, bytes, dtype, flops, macs, formula (default: those with something to show)",
    )
    s.add_argument(
        "--layers", metavar="FROM:TO", default=None,
        help="only the top-level layers from the first matching FROM to the last matching TO "
        "(regular expressions on layer names, as Keras's layer_range)",
    )
    s.add_argument("--ascii", action="store_true", help="rule tables with - instead of box-drawing characters")
    e = sub.add_parser("explain", help="every tensor of a layer: shape, count, formula, role, why")
    _add_common(e)
    e.add_argument("--layer", "-l", default=None, help="the layer's name or path (default: all layers)")
    _add_diff(sub)
    _add_check(sub)
    return parser


def _add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-size", metavar="D0,D1,...", default=None,
                   help="PyTorch and ONNX: shape of one float32 input, e.g. 1,3,224,224")
    p.add_argument("--input", dest="inputs", action="append", metavar="[NAME=]DTYPE[DIMS]", default=None,
                   help="PyTorch and ONNX: a typed input such as input_ids=int64[1,128]; repeat for several")
    p.add_argument("--debug", action="store_true", help="show the traceback on errors")


def _add_diff(sub: Any) -> None:
    d = sub.add_parser(
        "diff", help="compare two models or checkpoints tensor by tensor (exit 0 same, 1 different)",
        description="Compare two sources of any kind paramscope reads, from their headers: tensors "
        "added, removed, changed (shape, dtype, role, bytes), renamed and tied, and totals side by side. "
        "Exit status: 0 the same, 1 different, 2 bad input.",
        epilog="examples:\n  paramscope diff model.safetensors model.Q4_K_M.gguf\n"
        "  paramscope diff base/ finetuned/ --format json\n"
        "  paramscope diff pytorch_model.bin train.py:model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("a", help="the first source (file, folder, script.py:NAME, package.module:NAME)")
    d.add_argument("b", help="the second source")
    d.add_argument("--format", "-f", choices=("text", "markdown", "json"), default="text",
                   help="output format (default: text)")
    _add_inputs(d)


def _add_check(sub: Any) -> None:
    c = sub.add_parser(
        "check", help="check a model against parameter, byte and FLOP budgets (for CI; exit 1 if over)",
        description="Check a model against budgets. Counts take k/M/G(B)/T suffixes, sizes "
        "KiB/MiB/GiB (binary) or kB/MB/GB (decimal). Without --max-* flags the budgets are read from "
        "[tool.paramscope] in the nearest pyproject.toml (keys max-params, max-bytes, max-flops). "
        "Exit status: 0 within every budget, 1 over a budget or a figure unknown, 2 bad input.",
        epilog="examples:\n  paramscope check model.safetensors --max-params 7.5G --max-bytes 15GiB\n"
        "  paramscope check train.py:model --input-size 1,3,224,224 --max-flops 5G\n"
        "  paramscope check model.keras          # budgets from pyproject.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("target", help="a file or folder, or script.py:NAME / package.module:NAME")
    c.add_argument("--max-params", metavar="N", default=None, help="most parameters allowed, e.g. 150M")
    c.add_argument("--max-bytes", metavar="B", default=None,
                   help="most bytes of parameters and buffers allowed, e.g. 600MiB")
    c.add_argument("--max-flops", metavar="F", default=None,
                   help="most forward FLOPs allowed (matmul and convolution, batch as given), e.g. 2T")
    c.add_argument("--config", metavar="PYPROJECT", default=None,
                   help="read budgets from this pyproject.toml instead of the nearest one")
    c.add_argument("--format", "-f", choices=("text", "json"), default="text", help="output format")
    _add_inputs(c)


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


def _run_diff(args: argparse.Namespace) -> tuple[str, int]:
    from paramscope.api import diff
    from paramscope.render import diff as render
    from paramscope.targets import resolve_target

    options = _reader_options(args)
    result = diff(resolve_target(args.a), resolve_target(args.b), **options)
    text = {"json": render.render_diff_json, "markdown": render.render_diff_markdown}.get(
        args.format, render.render_diff_text
    )(result)
    return text, 0 if result.same else 1


def _run_check(args: argparse.Namespace) -> tuple[str, int]:
    from paramscope.analysis.budget import BUDGET_KEYS, Budget, budgets_from_pyproject, parse_quantity
    from paramscope.api import check
    from paramscope.render.budget import render_budget_json, render_budget_text
    from paramscope.targets import resolve_target

    budgets = tuple(
        Budget(key, parse_quantity(value, is_bytes=BUDGET_KEYS[key][1]))
        for key, value in (("params", args.max_params), ("bytes", args.max_bytes), ("flops", args.max_flops))
        if value is not None
    )
    if not budgets:
        import os

        folder = os.path.dirname(os.path.abspath(args.config)) if args.config else "."
        if args.config and not os.path.isfile(args.config):
            raise ParamscopeError(f"no such file: {args.config}")
        budgets, _ = budgets_from_pyproject(folder)
        if not budgets:
            raise ParamscopeError(
                "no budget given: pass --max-params, --max-bytes or --max-flops, or add "
                "[tool.paramscope] max-params = \"150M\" (and max-bytes, max-flops) to pyproject.toml"
            )
    verdicts = check(resolve_target(args.target), budgets, **_reader_options(args))
    render = render_budget_json if args.format == "json" else render_budget_text
    return render(args.target, verdicts), 0 if all(v.ok for v in verdicts) else 1


#: Output file suffixes and the format each means.
_SUFFIX_FORMATS = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".json": "json",
                   ".html": "html", ".htm": "html", ".csv": "csv"}


def _output_format(args: argparse.Namespace) -> str:
    """``--format`` if given, else the format ``-o FILE``'s suffix names, else text."""
    if args.output is not None:
        import os

        suffix = os.path.splitext(args.output)[1].lower()
        if args.format is None:
            if suffix not in _SUFFIX_FORMATS:
                raise ParamscopeError(
                    f"cannot tell the format of {args.output!r} from its suffix; use one of "
                    f"{', '.join(_SUFFIX_FORMATS)} or give --format"
                )
            return _SUFFIX_FORMATS[suffix]
    if args.format == "csv" and args.command != "summary":
        raise ParamscopeError("--format csv is for summary (one line per layer); explain writes text, "
                              "markdown, json or html")
    return args.format or "text"


def _write_output(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
    except OSError as e:
        raise ParamscopeError(f"cannot write {path}: {e.strerror}") from None


def _run(args: argparse.Namespace) -> Any:
    from paramscope.api import explain, summary
    from paramscope.targets import resolve_target

    args.format = _output_format(args)
    source = resolve_target(args.target)
    width = args.width or _terminal_width()
    options = _reader_options(args)
    if args.command == "summary":
        from paramscope.analysis.layer_range import parse_layer_range

        columns = None if args.columns is None else tuple(c.strip() for c in args.columns.split(",") if c.strip())
        report = summary(
            source, format=args.format, style=args.style, depth=args.depth, expand=args.expand,
            width=width, columns=columns, ascii=args.ascii,
            layer_range=None if args.layers is None else parse_layer_range(args.layers), **options,
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
        if args.command in ("diff", "check"):
            text, status = (_run_diff if args.command == "diff" else _run_check)(args)
            sys.stdout.write(_safe_output(text))
            return status
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
    if args.output is not None:
        try:
            _write_output(args.output, report.text)
        except ParamscopeError as e:
            print(f"paramscope: error: {_one_line(str(e))}", file=sys.stderr)
            return 2
        return 0
    if report.format == "text" and report.view is not None and sys.stdout.isatty() and not args.width:
        # A terminal gets rich's colours and its real width; pipes and files get plain text.
        from paramscope.render.text import print_rich

        print_rich(report.view, ascii_only=getattr(args, "ascii", False))
    else:
        sys.stdout.write(report.text)
    return 0


def _safe_output(text: str) -> str:
    # Lone surrogates from a file's names would make the write fail; JSON already escapes them.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _one_line(text: str) -> str:
    from paramscope.render.fmt import safe

    return safe(" ".join(text.split()))


if __name__ == "__main__":
    raise SystemExit(main())
