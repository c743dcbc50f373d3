"""One forward pass of a PyTorch module without allocating memory: shapes and FLOPs per module.

How the pass runs without memory, and without changing the user's module:

- a module with tensors on the ``meta`` device runs on ``meta`` inputs (any tensor it left on
  another device is swapped, for the call only, for a ``meta`` stand-in), and again under
  ``FakeTensorMode`` if that pass needs data;
- any other module runs under ``FakeTensorMode``: its parameters and buffers are swapped, for
  the call only, for fake tensors of the same shape, dtype and device
  (``torch.func.functional_call``), so no weight is copied and no in-place update reaches the
  real tensors;
- a model entirely on the CPU whose every input is an example tensor runs for real on the CPU,
  on those tensors, when the pass without data could not (its shapes depend on the values, or
  a kernel has no fake implementation);
- with ``device`` other than ``"meta"`` the module runs for real on inputs made on that device
  (for models that need real values, at the cost of real compute).

The pass runs in eval mode under ``torch.no_grad()``; training flags, and tensor attributes a
forward may reassign, are restored afterwards. Forward hooks (removed afterwards) record each
module's input and output shapes and keep the stack of running modules, to which
:class:`~paramscope.trace.flops.FlopCounter` attributes every operator.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from paramscope.trace.flops import FlopCounter, Tally
from paramscope.trace.inputs import InputSpec, build_inputs, float_dtype, model_device
from paramscope.trace.moe import experts_for_pass
from paramscope.trace.snapshot import Snapshot
from paramscope.core.anatomy import Compute, Shape
from paramscope.core.errors import ModelError, TargetError

__all__ = ["ModuleRun", "Trace", "trace"]


@dataclass
class ModuleRun:
    """What the hooks saw of one module path."""

    calls: int = 0
    input_shapes: tuple[Shape, ...] | None = None
    output_shapes: tuple[Shape, ...] | None = None


@dataclass
class Trace:
    """The result of one forward pass.

    Attributes:
        runs: per module path (``""`` for the root), calls and first-call shapes.
        compute: per module path, FLOPs inclusive of everything it ran; empty on failure.
        total: FLOPs of the whole pass, ``None`` on failure.
        inputs: shapes of the inputs given.
        outputs: shapes of the tensors in the model's output, in order.
        mode: ``"meta"``, ``"fake"`` or the device of a real run.
        failure: a sentence saying why the pass stopped, ``""`` if it completed.
        notes: sentences on how the pass ran (a wrapper unwrapped, per-module shapes missing).
    """

    runs: dict[str, ModuleRun] = field(default_factory=dict)
    compute: dict[str, Compute] = field(default_factory=dict)
    total: Compute | None = None
    inputs: tuple[Shape, ...] = ()
    outputs: tuple[Shape, ...] = ()
    mode: str = "meta"
    failure: str = ""
    notes: list[str] = field(default_factory=list)


def shapes_of(value: Any, _depth: int = 0) -> tuple[Shape, ...]:
    """Shapes of every tensor inside tuples, lists, dicts, ``ModelOutput`` and dataclasses, in order.

    Example:
        >>> shapes_of((torch.zeros(2, 3), {"mask": torch.zeros(4), "n": 7}))
        ((2, 3), (4,))
    """
    if isinstance(value, torch.Tensor):
        return (tuple(int(d) for d in value.shape),)
    if _depth > 16:
        return ()
    items: Sequence[Any] = ()
    if isinstance(value, Mapping):
        items = list(value.values())
    elif isinstance(value, (list, tuple)):
        items = value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [getattr(value, f.name) for f in dataclasses.fields(value)]
    out: list[Shape] = []
    for item in items:
        out.extend(shapes_of(item, _depth + 1))
    return tuple(out)


def _meta_limitation(exc: BaseException) -> bool:
    """Whether a failure comes from running without data rather than from the inputs."""
    from torch._subclasses import fake_tensor as ft

    if isinstance(
        exc,
        (NotImplementedError, ft.DataDependentOutputException, ft.DynamicOutputShapeException, ft.UnsupportedOperatorException),
    ):
        return True
    text = str(exc).lower()
    return any(w in text for w in ("meta", "fake", "data-dependent", "data dependent", "data pointer", "storage"))


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    line = text[0].rstrip(".") if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def trace(
    module: torch.nn.Module,
    paths: Mapping[int, Sequence[str]],
    specs: Sequence[InputSpec],
    *,
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
    device: str = "meta",
) -> Trace:
    """Run one forward pass and record shapes and FLOPs per module path.

    A model with tensors on ``meta`` first runs as it is (the fastest pass; tensors left on
    another device, as some transformers models leave a few, are swapped for ``meta`` ones
    for the call); if that needs data, it runs again under fake tensors, where model code
    that checks for tracing (transformers' mask helpers) skips its data-dependent checks.

    Example values are kept wherever the pass has data: a real pass (``device="cpu"``) runs on
    the user's own example tensors, moved to that device. A pass without data sees only their
    shapes and dtypes; if it stops for want of values and the model is entirely on the CPU with
    real weights and every input is an example tensor, it runs once more for real on the CPU,
    on those tensors (the outputs then depend on them, as in the user's own call).

    Wrappers: ``nn.DataParallel`` and ``DistributedDataParallel`` run their wrapped
    ``.module``; TorchScript modules run as they are under fake tensors (they take no hooks, so
    per-module shapes are missing and a note says so); modules that refuse ``eval()`` (the
    module of ``torch.export``) run in the mode they were exported in.

    Args:
        module: the model (left as it was found).
        paths: for each module object (by ``id``), the paths it is reachable at.
        specs: inputs to build, see :mod:`paramscope.trace.inputs`.
        example_inputs: positional example tensors.
        example_kwargs: keyword example tensors.
        device: ``"meta"`` for a pass without memory, else a device for a real pass.

    Returns:
        The trace; its ``failure`` says why the pass stopped, if it did.

    Raises:
        ModelError: the pass failed for a reason other than missing data (wrong input shape,
            unknown argument name), naming the module where it failed.

    Example:
        >>> t = trace(torch.nn.Linear(4, 2), {}, [InputSpec(None, "", (3, 4))])  # doctest: +SKIP
        >>> t.outputs, t.total.flops  # doctest: +SKIP
        (((3, 2),), 48)
    """
    notes: list[str] = []
    target = module
    if isinstance(module, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        # the wrapper scatters inputs over devices and calls .module on each; one pass of the
        # wrapped module is the same work (the stateless call the pass uses refuses the wrapper)
        target = module.module
        notes.append(f"The pass ran the module {type(module).__name__} wraps (.module).")
    tensors = [*target.parameters(), *target.buffers()]
    on_meta = any(t.device.type == "meta" for t in tensors)
    on_cpu = _all_on_cpu(tensors)
    if device != "meta":
        kinds = [str(device)]
    else:
        kinds = ["meta", "fake"] if on_meta else ["fake"]
    if not on_meta and on_cpu and _values_known(specs, example_inputs, example_kwargs):
        kinds.append("cpu")
    with experts_for_pass(target) if device == "meta" else nullcontext("") as moe_note:
        if moe_note:
            notes.append(moe_note)
        return _run(target, paths, specs, example_inputs, example_kwargs, kinds, on_meta, notes)


def _run(
    target: torch.nn.Module,
    paths: Mapping[int, Sequence[str]],
    specs: Sequence[InputSpec],
    example_inputs: Any,
    example_kwargs: Mapping[str, Any] | None,
    kinds: Sequence[str],
    on_meta: bool,
    notes: list[str],
) -> Trace:
    """The passes in order, each tried when the one before stopped for want of data."""
    stopped = ""
    for i, kind in enumerate(kinds):
        result, failure = _attempt(target, paths, specs, example_inputs, example_kwargs, kind, on_meta)
        if failure is None:
            if kind == "cpu" and i > 0:
                notes.append(
                    f"The pass without data stopped ({stopped}; the model needs input values or a "
                    "kernel with no fake implementation), so it ran for real on the CPU with the "
                    "example tensors given."
                )
            result.notes[:0] = notes
            return result
        where, exc = failure
        if i + 1 < len(kinds) and _meta_limitation(exc):
            stopped = f"{type(exc).__name__}: {_first_line(exc, 120)}"
            continue
        _fail(target, where, exc, specs, result)
        result.notes[:0] = notes
        return result
    raise AssertionError("unreachable")


def _values_known(specs: Sequence[InputSpec], example_inputs: Any, example_kwargs: Mapping[str, Any] | None) -> bool:
    """Whether every input is an example the user gave (so a real pass has its real values)."""
    return not specs and (example_inputs is not None or bool(example_kwargs))


def _all_on_cpu(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether every tensor is a plain CPU tensor (not meta, not fake)."""
    return all(t.device.type == "cpu" and not isinstance(t, torch._subclasses.FakeTensor) for t in tensors)


def _meta_state(module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Meta stand-ins for the tensors a mostly-meta model left on another device (``None``: none).

    One stand-in per tensor object, so that tied tensors stay tied during the call.
    """
    made: dict[int, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    named = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    for name, t in named:
        if t.device.type != "meta":
            if id(t) not in made:
                made[id(t)] = torch.empty_like(t, device="meta")
            state[name] = made[id(t)]
    return state or None


def _eval(module: torch.nn.Module, result: Trace) -> None:
    try:
        module.eval()
    except NotImplementedError:  # torch.export's module: its graph fixed the mode when exported
        result.notes.append(f"{type(module).__name__} refuses eval(); the pass ran in the mode it was exported in.")


def _attempt(
    module: torch.nn.Module,
    paths: Mapping[int, Sequence[str]],
    specs: Sequence[InputSpec],
    example_inputs: Any,
    example_kwargs: Mapping[str, Any] | None,
    kind: str,
    on_meta: bool,
) -> tuple[Trace, tuple[str, Exception] | None]:
    """One pass of the given kind ("meta", "fake" or a device); the failure, if any, and where."""
    result = Trace(mode=kind)
    real = kind not in ("meta", "fake")
    scripted = isinstance(module, torch.jit.ScriptModule)
    stack: list[str] = []
    if kind == "meta" or (kind == "fake" and on_meta):
        input_device = torch.device("meta")
    else:
        try:
            input_device = model_device(module) if kind == "fake" else torch.device(kind)
        except RuntimeError as exc:
            raise TargetError(f"device {kind!r} is not a PyTorch device ({exc}); use 'meta', 'cpu' or 'cuda'") from None

    def choose(mod: torch.nn.Module) -> str:
        cands = paths.get(id(mod), ())
        if len(cands) <= 1:
            return cands[0] if cands else f"<{type(mod).__name__}>"
        top = stack[-1] if stack else None
        for c in cands:
            parent = c.rsplit(".", 1)[0] if "." in c else ""
            if top is not None and parent == top:
                return c
        return cands[0]

    def pre(mod: torch.nn.Module, args: Any, kwargs: Any) -> None:
        path = choose(mod)
        stack.append(path)
        run = result.runs.setdefault(path, ModuleRun())
        run.calls += 1
        if run.input_shapes is None:
            run.input_shapes = shapes_of((args, kwargs))

    def post(mod: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        path = stack.pop() if stack else choose(mod)
        run = result.runs.setdefault(path, ModuleRun())
        if run.output_shapes is None:
            run.output_shapes = shapes_of(output)

    snapshot = Snapshot(module)
    with ExitStack() as es:
        for m in {id(m): m for m in module.modules()}.values():
            if isinstance(m, torch.jit.ScriptModule):
                continue  # TorchScript modules take no Python hooks
            try:
                es.callback(m.register_forward_pre_hook(pre, with_kwargs=True).remove)
                es.callback(m.register_forward_hook(post, with_kwargs=True).remove)
            except (RuntimeError, AttributeError):
                continue
        if scripted:
            result.notes.append(
                f"{type(module).__name__} is a TorchScript module, which takes no hooks: the model's "
                "output shapes and FLOPs are measured, per-module shapes and FLOPs are not."
            )
        es.callback(snapshot.restore)
        _eval(module, result)
        es.enter_context(torch.no_grad())
        state: dict[str, torch.Tensor] | None = None
        fake: Any = None
        if (kind == "meta" or (kind == "fake" and on_meta)) and not scripted:
            state = _meta_state(module)
        if kind == "fake":
            from torch._subclasses.fake_tensor import FakeTensorMode

            # a meta kernel failing is reported in a note; torch would also log it as an error
            log = logging.getLogger("torch._subclasses.fake_tensor")
            es.callback(setattr, log, "disabled", log.disabled)
            log.disabled = True
            fake = es.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
            # swap real tensors for fakes during the call (a TorchScript module's own tensors
            # cannot be swapped: the fake mode wraps them as constants when they are used)
            if not on_meta and not scripted:
                state = {n: fake.from_tensor(t) for n, t in module.named_parameters(remove_duplicate=False)}
                state.update({n: fake.from_tensor(t) for n, t in module.named_buffers(remove_duplicate=False)})
        try:
            call_args, call_kwargs = build_inputs(
                specs, example_inputs, example_kwargs, float_dtype(module), input_device, real, fake=fake
            )
        except (RuntimeError, AssertionError, NotImplementedError) as exc:
            if not real and (example_inputs is not None or bool(example_kwargs)):
                # an example without a fake or meta form (a quantized tensor): the pass without
                # data stops here, and a real pass on the example may follow
                return result, ("", exc if _meta_limitation(exc) else NotImplementedError(f"meta: {exc}"))
            raise TargetError(f"cannot make the inputs on {input_device}: {_first_line(exc)}") from None  # e.g. a device this machine lacks
        result.inputs = shapes_of((call_args, call_kwargs))
        counter = FlopCounter(lambda: stack, [*call_args, *call_kwargs.values()])
        try:
            with counter.modes():
                if state is not None:
                    output = torch.func.functional_call(module, state, call_args, call_kwargs, strict=False)
                else:
                    output = module(*call_args, **call_kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of user code is reported, not raised
            return result, (stack[-1] if stack else "", exc)
    result.outputs = shapes_of(output)
    result.compute = {p: counter.tallies.get(p, Tally()).compute() for p in result.runs}
    result.total = counter.total.compute()
    return result, None

def _caused_by_inputs(exc: Exception, target: torch.nn.Module) -> bool:
    """Whether a failure points at the inputs: a bad argument, or a torch.nn layer refusing them.

    Failures inside model code (custom kernels, data-dependent branches, meta kernels stricter
    than the real ones) are reported as a note instead, with the parameter anatomy.
    """
    if _meta_limitation(exc):
        return False
    if isinstance(exc, TypeError):
        return True
    origin = type(target).__module__
    return origin == "torch.nn" or origin.startswith("torch.nn.")


def _fail(module: torch.nn.Module, where: str, exc: Exception, specs: Sequence[InputSpec], result: Trace) -> None:
    target = module.get_submodule(where) if where and not where.startswith("<") else module
    what = f"'{where}' ({type(target).__name__})" if where else f"the model ({type(module).__name__})"
    cause = f"{type(exc).__name__}: {_first_line(exc)}"
    float_name = str(float_dtype(module)).removeprefix("torch.")
    given = ", ".join(s.describe(float_name) for s in specs) or "the example inputs"
    if _caused_by_inputs(exc, target):
        raise ModelError(
            f"the forward pass failed in {what} with {cause}; inputs given: {given}. "
            "Check the input shapes and dtypes, or give no input for the parameter anatomy alone"
        ) from exc
    how = "without data" if result.mode in ("meta", "fake") else f"on {result.mode}"
    result.failure = (
        f"Shapes and FLOPs are not available: the forward pass {how} stopped in {what} "
        f"with {cause} (inputs: {given}). Parameter counts are unaffected."
        + (" A forward on real data (device='cpu') may succeed." if how == "without data" else "")
    )
