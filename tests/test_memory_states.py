"""Model states: the ZeRO paper's Table 1, and the seed's bytes against Keras's and PyTorch's own optimizers."""

from __future__ import annotations

from typing import Any

import pytest

import paramscope
from paramscope.planner.setup import make_setup
from paramscope.planner.states import ParamGroup, model_states

# Rajbhandari et al. 2020, Table 1: psi = 7.5B parameters, N_d = 64, K = 12 (mixed-precision
# Adam): baseline 120 GB, P_os 31.4 GB, P_os+g 16.6 GB, P_os+g+p 1.9 GB.
ZERO_TABLE_1 = {"none": 120.0, "zero1": 31.4, "zero2": 16.6, "zero3": 1.9}


@pytest.mark.parametrize("shard", sorted(ZERO_TABLE_1))
def test_zero_paper_table_1(shard: str) -> None:
    setup = make_setup(train=True, precision="fp16-mixed", optimizer="adam", shard=shard, dp=None if shard == "none" else 64)
    s = model_states([ParamGroup(7_500_000_000, "float32", True)], setup, "float32")
    total = (s.params.n_bytes or 0) + (s.grads.n_bytes or 0) + (s.optimizer.n_bytes or 0)
    assert round(total / 1e9, 1) == ZERO_TABLE_1[shard]


def test_fsdp_and_offload_move_states() -> None:
    group = [ParamGroup(1_000_000, "float32", True)]
    fsdp = model_states(group, make_setup(train=True, precision="bf16-mixed", shard="fsdp", dp=4), None)
    assert (fsdp.params.n_bytes, fsdp.grads.n_bytes, fsdp.optimizer.n_bytes) == (500_000, 500_000, 3_000_000)
    off = model_states(group, make_setup(train=True, precision="bf16-mixed", shard="zero2", dp=4, offload="optimizer"), None)
    assert off.optimizer.n_bytes == 0 and off.optimizer.host_bytes == 3_000_000


def test_frozen_weights_have_no_gradient_or_state() -> None:
    groups = [ParamGroup(1000, "float32", True), ParamGroup(9000, "float32", False)]
    s = model_states(groups, make_setup(train=True, optimizer="adamw"), None)
    assert (s.params.n_bytes, s.grads.n_bytes, s.optimizer.n_bytes) == (40_000, 4000, 8000)


def _keras_seed() -> Any:
    keras = pytest.importorskip("keras")
    x = keras.Input(shape=(4096,))
    h = keras.layers.Dense(512, activation="relu")(x)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.5)(h)
    return keras.Model(x, keras.layers.Dense(80, activation="sigmoid")(h))


def _nbytes(variables: Any) -> int:
    import numpy as np

    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


def test_seed_adam_fp32_states_match_keras_optimizer() -> None:
    keras = pytest.importorskip("keras")
    model = _keras_seed()
    opt = keras.optimizers.Adam()
    opt.build(model.trainable_variables)
    moments = [v for v in opt.variables if v.name not in ("iteration", "learning_rate")]

    plan = paramscope.memory(model, train=True, optimizer="adam", batch=32)
    assert plan.figure("params").n_bytes == _nbytes(model.weights) == 8_563_008
    assert plan.figure("grads").n_bytes == _nbytes(model.trainable_variables) == 8_558_912
    assert plan.figure("optimizer").n_bytes == _nbytes(moments) == 17_117_824
    why = " ".join(plan.notes)
    assert "1,024 numbers are moving statistics" in why and "no gradient and no optimizer state" in why


def test_seed_adam_states_match_torch_optimizer() -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    model = nn.Sequential(nn.Linear(4096, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, 80), nn.Sigmoid())
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(8, 4096)).sum().backward()
    opt.step()
    moments = sum(t.nbytes for st in opt.state.values() for k, t in st.items() if k != "step")
    grads = sum(p.grad.nbytes for p in model.parameters())

    plan = paramscope.memory(model, train=True, optimizer="adam", input_size=(8, 4096))
    assert plan.figure("optimizer").n_bytes == moments == 17_117_824
    assert plan.figure("grads").n_bytes == grads == 8_558_912
    assert plan.figure("activations").n_bytes is not None


def test_inference_has_no_gradients_or_optimizer() -> None:
    plan = paramscope.memory(_keras_seed(), batch=4)
    assert plan.mode == "inference"
    assert plan.figure("grads").n_bytes == 0 and plan.figure("optimizer").n_bytes == 0
    assert plan.peak is not None and plan.peak > plan.figure("params").n_bytes


def test_adafactor_and_8bit_adam_hand_worked() -> None:
    # A 1,000 x 500 matrix and a 500-vector, fp32 training.
    groups = [ParamGroup(500_000, "float32", True, rows_cols=1_500, largest=500_000),
              ParamGroup(500, "float32", True, split=False, largest=500, small=500)]
    ada = model_states(groups, make_setup(train=True, optimizer="adafactor"), None)
    assert ada.optimizer.n_bytes == 4 * (1_000 + 500) + 4 * 500  # factored rows + cols; the vector in full
    eight = model_states(groups, make_setup(train=True, optimizer="adamw-8bit"), None)
    # 1 byte per state, one fp32 absmax per 2,048 elements per state; small tensors stay 32-bit (8 B).
    assert eight.optimizer.n_bytes == round(500_500 * (2 + 8 / 2048)) + 500 * (8 - 2)
