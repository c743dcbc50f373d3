"""A framework-free stand-in for the parts of Keras that common models use.

Write Keras code, change only the import, and paramscope explains the model without
TensorFlow, PyTorch or Keras installed::

    from paramscope import keras
    x = keras.layers.Input(batch_shape=(None, 4096))
    y = keras.layers.Dense(80, activation="sigmoid")(x)
    model = keras.models.Model(input=[x], output=[y])   # Keras 1/2 keywords work too
    model.summary()

Layer names follow Keras 3 (``dense``, ``dense_1``...). ``model.to_config()`` gives a config the
real ``keras.Model.from_config`` accepts and ``model.to_keras()`` builds the real model.
"""

from types import SimpleNamespace

from paramscope.keras import layers as layers
from paramscope.keras._naming import clear_session
from paramscope.keras.models import Functional, Input, Model, Sequential

models = SimpleNamespace(Model=Model, Functional=Functional, Sequential=Sequential, Input=Input)
backend = SimpleNamespace(clear_session=clear_session)
layers.Input = Input  # type: ignore[attr-defined]  # keras.layers.Input exists in Keras too

__all__ = ["layers", "models", "backend", "Input", "Model", "Functional", "Sequential", "clear_session"]
