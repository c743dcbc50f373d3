"""The memory planner: what a model costs to serve and to train, per device, and whether it fits.

``paramscope.memory(source, **setup)`` reads the model as :func:`paramscope.read` does, measures
its activations (PyTorch modules and Hugging Face configs, on the meta device) or estimates them
(Keras), adds weights, gradients, optimizer states, the KV cache and the temporaries of sharded
training, and reports the peak over the moments of a step. The formulas and their sources are in
docs/memory.md.
"""

from paramscope.planner.result import Figure, Fit, MemoryPlan, ModuleActivation, Phase
from paramscope.planner.setup import MemorySetup, make_setup

__all__ = ["Figure", "Fit", "MemoryPlan", "MemorySetup", "ModuleActivation", "Phase", "make_setup", "plan_memory"]


def plan_memory(source: object, setup: MemorySetup, *, input_size: object = None, inputs: object = None) -> MemoryPlan:
    """The plan of ``source`` for a checked setup (see :func:`paramscope.memory`)."""
    from paramscope.planner.plan import plan

    return plan(source, setup, input_size=input_size, inputs=inputs)
