"""PyTorch module rules: what each ``torch.nn`` module's tensors are, and why.

Importing this package does not import torch; the built-in rules are loaded (and torch with
them) on the first lookup, which only happens when a live module is being read.
"""

from paramscope.rules.torch.registry import (
    ModuleNote as ModuleNote,
    TensorNote as TensorNote,
    register_torch_resolver as register_torch_resolver,
    register_torch_rule as register_torch_rule,
    torch_rule as torch_rule,
)
