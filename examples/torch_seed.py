"""The seed model in PyTorch: the same BatchNormalization, counted the PyTorch way.

    paramscope summary examples/torch_seed.py:model --input-size 1,4096
    paramscope explain examples/torch_seed.py:model --layer 2
"""

from torch import nn

model = nn.Sequential(
    nn.Linear(4096, 512),
    nn.ReLU(),
    nn.BatchNorm1d(512),
    nn.Dropout(0.5),
    nn.Linear(512, 80),
    nn.Sigmoid(),
)
