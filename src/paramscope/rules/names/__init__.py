"""What a tensor stored under a flat name is, from the name alone: the explainer for checkpoints.

Checkpoint files (safetensors, GGUF, PyTorch state dicts, Keras weight files) keep a flat list
of named tensors and nothing else. The naming conventions of the frameworks say a lot: a 2-D
``weight`` beside a ``bias`` is a linear map stored ``(out, in)``, a ``running_mean`` is a
BatchNorm statistic kept as a buffer, ``blk.3.attn_q.weight`` is a GGUF query projection.

The rules are data (:data:`RULES`, in ``table``); ``explain`` applies the first that matches.
A name no rule knows gets :attr:`Role.UNKNOWN`; its count stays exact, because a checkpoint
lists every stored element. :func:`anatomy_from_flat` (``flat``) turns a reader's flat tensors
into a whole :class:`Anatomy`, with shared storage (tied weights, ``ties``) detected and
explained, optionally in data-flow order (``order``); every file reader calls it.
"""

from paramscope.rules.names.explain import explain_name as explain_name
from paramscope.rules.names.explain import name_tokens as name_tokens
from paramscope.rules.names.flat import CHECKPOINT_NOTE as CHECKPOINT_NOTE
from paramscope.rules.names.flat import anatomy_from_flat as anatomy_from_flat
from paramscope.rules.names.order import natural_key as natural_key
from paramscope.rules.names.purpose import PURPOSE as PURPOSE
from paramscope.rules.names.table import GPT2_CONV1D as GPT2_CONV1D
from paramscope.rules.names.table import NORM_TOKENS as NORM_TOKENS
from paramscope.rules.names.table import POSITION_TABLES as POSITION_TABLES
from paramscope.rules.names.table import RULES as RULES
from paramscope.rules.names.table import TOKEN_TABLES as TOKEN_TABLES
from paramscope.rules.names.table import NameRule as NameRule
from paramscope.rules.names.ties import map_tensors as map_tensors

__all__ = [
    "NameRule",
    "RULES",
    "PURPOSE",
    "explain_name",
    "name_tokens",
    "natural_key",
    "anatomy_from_flat",
    "CHECKPOINT_NOTE",
    "map_tensors",
]
