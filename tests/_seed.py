"""The seed model as a hand-built anatomy, for renderer tests independent of any reader.

Arithmetic (Keras counts; see the seed question):
  dense:   4096 x 512 kernel + 512 bias = 2,097,152 + 512 = 2,097,664
  batch_normalization: gamma, beta (trainable) + moving_mean, moving_variance = 4 x 512 = 2,048
  dense_1: 512 x 80 + 80 = 41,040
  total 2,140,752; non-trainable 1,024 (the two moving statistics); trainable 2,139,728.
"""

from __future__ import annotations

from paramscope.core import Anatomy, Formula, Layer, Role, Tensor


def seed_anatomy() -> Anatomy:
    def dense(name: str, n_in: int, n_out: int, inbound: str) -> Layer:
        return Layer(
            name, "Dense", name,
            (
                Tensor("kernel", (n_in, n_out), key=f"{name}/kernel", formula=Formula("input_dim x units", f"{n_in} x {n_out}")),
                Tensor("bias", (n_out,), key=f"{name}/bias", formula=Formula("units", f"{n_out}")),
            ),
            input_shapes=((None, n_in),), output_shapes=((None, n_out),), inbound=(inbound,),
        )

    stat = "a running average updated during training, not by gradient"
    bn = Layer(
        "batch_normalization", "BatchNormalization", "batch_normalization",
        (
            Tensor("gamma", (512,), key="bn/gamma", formula=Formula("features", "512")),
            Tensor("beta", (512,), key="bn/beta", formula=Formula("features", "512")),
            Tensor("moving_mean", (512,), role=Role.STATISTIC, key="bn/mm", formula=Formula("features", "512"), why=stat),
            Tensor("moving_variance", (512,), role=Role.STATISTIC, key="bn/mv", formula=Formula("features", "512"), why=stat),
        ),
        input_shapes=((None, 512),), output_shapes=((None, 512),), inbound=("dense[0][0]",),
        formula=Formula("4 x features", "4 x 512"),
    )
    return Anatomy(
        "functional", "keras",
        (
            Layer("input_layer", "InputLayer", "input_layer", output_shapes=((None, 4096),)),
            dense("dense", 4096, 512, "input_layer[0][0]"),
            bn,
            Layer("dropout", "Dropout", "dropout", output_shapes=((None, 512),), inbound=("batch_normalization[0][0]",)),
            dense("dense_1", 512, 80, "dropout[0][0]"),
        ),
    )
