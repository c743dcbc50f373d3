"""The ``paramscope`` command line: summary, explain, memory, diff, check and layout of a model, file or config.

This file is long (about 540 lines) because one argument parser holds every subcommand, so that
a mistyped option can be matched against all of them and every error is one line.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from paramscope.core.errors import ParamscopeError

__all__ = ["main", "build_parser"]

_EPILOG = """\
targets (formats are recognised from their content, not only their names):
  model.keras, model.h5, model.json, model.weights.h5   Keras files and configs, read without Keras
  model.safetensors, folder/, *.index.json               safetensors, single or sharded
  model.onnx, model.pt, model.pth, model.bin, model.gguf other checkpoints, never executed
  checkpoint/                                            sharded: DCP, DeepSpeed ZeRO and universal, Megatron-LM, FSDP1 rank files
  folder/config.json                                     a Hugging Face config, built on the meta device
  path/to/script.py:NAME, package.module:NAME            a model (or a function returning one) in code

examples:
  paramscope summary examples/seed.py:mlp_model
  paramscope summary model.keras --style keras2
  paramscope explain model.keras --layer batch_normalization
  paramscope summary examples/torch_seed.py:model --input-size 1,4096 --format json
  paramscope summary gpt2/config.json --input input_ids=int64[1,1024]
  paramscope memory config.json --train --seq 4096 --precision bf16-mixed --shard zero3 --dp 64
  paramscope layout checkpoints/step-1000 --world-size 16

'paramscope summary --help' and 'paramscope explain --help' list the options.
Exit status: 0 on success, 2 on bad input or options (one line on stderr; --debug for the traceback).
"""

#: The narrowest text table worth printing: a layer name and its type need about 40 columns.
MIN_WIDTH = 40
#: Input dtypes a forward pass takes, for "did you mean" on a typo.
_INPUT_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, with a "did you mean" where one is close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: "--layer" given to summary must not silently mean its "--layers".
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        from paramscope.diagnose import did_you_mean

        hint = ""
        choice = re.search(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)", message)
        if choice:
            choices = [c.strip(" '") for c in choice[2].split(",")]
            hint = did_you_mean(choice[1], choices)
        elif message.startswith("unrecognized arguments:"):
            unknown = next((a for a in message.split()[2:] if a.startswith("-")), "").split("=")[0]
            # An option of another subcommand, given exactly, says more than a near name here;
            # option names share their "--": a higher cutoff keeps --depth from suggesting --width.
            hint = _other_command(self, unknown) if unknown else ""
            if unknown and not hint:
                hint = did_you_mean(unknown, _option_strings(self), cutoff=0.75)
        command = self.prog.removeprefix("paramscope").strip()
        see = f"paramscope {command} --help" if command else "paramscope --help"
        self.exit(2, f"paramscope: error: {' '.join(message.split())}{hint}; see {see}\n")


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in parser._actions for o in a.option_strings)


def _other_command(parser: argparse.ArgumentParser, option: str) -> str:
    # "--depth" given to explain: say which subcommand has it.
    commands: dict[str, argparse.ArgumentParser] = parser.get_default("_commands") or {}
    owners = [name for name, sub in commands.items() if option in _option_strings(sub)]
    return f" ({option} is an option of {' and '.join(owners)})" if owners else ""


def _natural(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; 0 shows the top level only")
    return value


def _width(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < MIN_WIDTH:
        raise argparse.ArgumentTypeError(f"{value} columns is too narrow; the minimum is {MIN_WIDTH}")
    return value


_SUMMARY_EPILOG = """\
examples:
  paramscope summary examples/seed.py:mlp_model --style keras2   # the classic Keras layout
  paramscope summary model.keras                                 # Keras 3 archive, no Keras needed
  paramscope summary examples/torch_seed.py:model --input-size 1,4096
  paramscope summary llama/config.json --input input_ids=int64[1,4096]
  paramscope summary Llama-2-70b-hf/ --format json               # sharded safetensors, headers only
  paramscope summary model.Q4_K_M.gguf --depth 0                 # top level only

--input-size and --input are for PyTorch modules, Hugging Face configs and ONNX files; given for
a Keras model or a checkpoint, whose shapes are fixed, they are an error.
"""

_EXPLAIN_EPILOG = """\
examples:
  paramscope explain examples/seed.py:mlp_model --layer batch_normalization
  paramscope explain examples/torch_seed.py:model --layer 2      # the same layer in PyTorch
  paramscope explain model.safetensors --layer model.layers.0.self_attn --format markdown

--layer takes a layer's name or its path (as the summary shows it); without it, every layer.
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
    p.add_argument(
        "--width", type=_width, default=None, metavar="N",
        help=f"text width in columns, at least {MIN_WIDTH} (default: the terminal's)",
    )
    p.add_argument(
        "--input-size", metavar="D0,D1,...", default=None,
        help="PyTorch, Hugging Face configs and ONNX: shape of one float32 input, e.g. 1,3,224,224 "
        "(an error for Keras models and checkpoints, whose shapes are fixed)",
    )
    p.add_argument(
        "--input", dest="inputs", action="append", metavar="[NAME=]DTYPE[DIMS]", default=None,
        help="PyTorch, Hugging Face configs and ONNX: a typed input such as input_ids=int64[1,128]; "
        "repeat for several",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback on errors")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog="paramscope",
        description="Explain where every parameter, byte and FLOP of a neural network comes from.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from paramscope import __version__

    parser.add_argument("--version", action="version", version=f"paramscope {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{summary,explain,memory,diff,check,layout}")
    s = sub.add_parser(
        "summary", help="one row per layer with counts, totals, memory and FLOPs",
        description="One row per layer: output shape, parameters split by role, FLOPs and the\n"
        "formula behind each count; then totals, memory by dtype and notes.",
        epilog=_SUMMARY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(s)
    s.add_argument(
        "--style", choices=("paramscope", "keras2", "keras3"), default="paramscope",
        help="layout: paramscope (default; split counts, formulas), keras2 (classic, with "
        "'Connected to'), keras3",
    )
    s.add_argument(
        "--depth", type=_natural, default=None, metavar="N", help="deepest nesting level shown (0: top level)"
    )
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
    e = sub.add_parser(
        "explain", help="every tensor of a layer: shape, count, formula, role, why",
        description="Every tensor of one layer (or of all): shape, dtype, count, the formula behind\n"
        "it, its role (trainable, frozen, statistic, buffer) and why it exists.",
        epilog=_EXPLAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(e)
    e.add_argument("--layer", "-l", default=None, help="the layer's name or path (default: all layers)")
    _add_memory(sub)
    _add_diff(sub)
    _add_check(sub)
    g = sub.add_parser("layout", help="a sharded checkpoint's rank layout: who holds what, and at other world sizes")
    g.add_argument("target", help="a sharded checkpoint folder (PyTorch Distributed Checkpoint, DeepSpeed, Megatron-LM, FSDP1 rank files)")
    g.add_argument("--format", "-f", choices=("text", "markdown", "json", "html"), default="text", help="output format")
    g.add_argument("--width", type=_width, default=None, metavar="N", help=f"text width in columns, at least {MIN_WIDTH} (default: the terminal's)")
    g.add_argument("--world-size", dest="world_sizes", type=int, action="append", default=None, metavar="N",
                   help="also show the bytes per rank at N ranks (FSDP2 dim-0 shards); repeat for several")  # fmt: skip
    g.add_argument("--rank", type=int, default=None, help="list every slice this rank holds")
    g.add_argument("--debug", action="store_true", help="show the traceback on errors")
    # Each subcommand knows its siblings, to say where an option given to the wrong one belongs.
    for command in sub.choices.values():
        command.set_defaults(_commands=sub.choices)
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
        if any(d < 0 for d in options["input_size"]):
            raise ParamscopeError(f"--input-size {args.input_size!r} has a negative dimension")
    if args.inputs:
        _check_specs(args.inputs)
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


def _check_specs(specs: list[str]) -> None:
    # Checked before anything is read, whatever the target: a typo must never pass silently.
    from paramscope.core.errors import TargetError
    from paramscope.diagnose import did_you_mean
    from paramscope.trace.inputs import parse_input_spec

    for spec in specs:
        try:
            parse_input_spec(spec)
        except TargetError as e:
            dtype = re.match(r"\s*(?:\w+\s*=\s*)?(\w+)\s*\[", spec)
            hint = did_you_mean(dtype[1], _INPUT_DTYPES) if dtype and "unknown dtype" in str(e) else ""
            raise ParamscopeError(f"--input: {e}{hint}") from None


def _run(args: argparse.Namespace) -> Any:
    from paramscope.api import explain, read, summary
    from paramscope.core.errors import UnsupportedFormatError
    from paramscope.targets import check_input_options, input_notes, resolve_target

    if args.command == "layout":
        from paramscope.api import layout

        return layout(
            resolve_target(args.target), world_sizes=tuple(args.world_sizes or ()), rank=args.rank,
            format=args.format, width=args.width or _terminal_width(),
        )
    args.format = _output_format(args)
    options = _reader_options(args)
    source = resolve_target(args.target)
    check_input_options(source, options)
    if args.command == "memory":
        return _run_memory(args, source, args.width or _terminal_width())
    try:
        anatomy = read(source, **options)
    except UnsupportedFormatError as e:
        from paramscope.diagnose import unreadable_path

        specific = unreadable_path(source) if isinstance(source, str) else None
        if specific is None:
            raise
        raise UnsupportedFormatError(specific) from e
    notes = input_notes(source, options)
    if notes:
        anatomy = anatomy.with_(notes=anatomy.notes + notes)
    width = args.width or _terminal_width()
    if args.command == "summary":
        from paramscope.analysis.layer_range import parse_layer_range

        columns = None if args.columns is None else tuple(c.strip() for c in args.columns.split(",") if c.strip())
        return summary(
            anatomy, format=args.format, style=args.style, depth=args.depth, expand=args.expand, width=width,
            columns=columns, ascii=args.ascii,
            layer_range=None if args.layers is None else parse_layer_range(args.layers),
        )
    return explain(anatomy, layer=args.layer, format=args.format, width=width)


def _terminal_width() -> int:
    import shutil

    return max(80, shutil.get_terminal_size((120, 24)).columns)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Reported by the subcommand's parser, so that the hint names its --help.
        args._commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
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
    except (RecursionError, MemoryError) as e:
        # Limits stop hostile files before these; one that gets through still says what it
        # means for the input rather than naming a Python exception.
        if args.debug:
            raise
        target = getattr(args, "target", None) or f"{args.a} or {args.b}"  # diff names two
        print(f"paramscope: error: {_one_line(_EXHAUSTED[type(e)].format(target=target))}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug, or a failure inside the user's own model code
        if args.debug:
            raise
        print(
            f"paramscope: error: {type(e).__name__}: {_one_line(str(e))} "
            "(run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 2
    if getattr(args, "output", None) is not None:
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


_EXHAUSTED: dict[type[BaseException], str] = {
    RecursionError: "{target}: nests deeper than paramscope can walk (Python's recursion limit); "
    "a real model does not, so the input is refused as corrupt or hostile",
    MemoryError: "{target}: reading it needs more memory than is available; if it is a genuine "
    "model, report it with the file's source (run again with --debug for the traceback)",
}


def _one_line(text: str) -> str:
    from paramscope.render.fmt import safe

    return safe(" ".join(text.split()))


if __name__ == "__main__":
    raise SystemExit(main())
