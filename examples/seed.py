"""The question that started paramscope: why does BatchNormalization have 2,048 parameters?

This is the code from the question, with one change: ``import keras`` became
``from paramscope import keras``. It runs without Keras, TensorFlow or PyTorch installed.

    python examples/seed.py
    paramscope explain examples/seed.py:mlp_model --layer batch_normalization
"""

from paramscope import keras

x = keras.layers.Input(batch_shape = (None, 4096))
hidden = keras.layers.Dense(512, activation = 'relu')(x)
hidden = keras.layers.BatchNormalization()(hidden)
hidden = keras.layers.Dropout(0.5)(hidden)
predictions = keras.layers.Dense(80, activation = 'sigmoid')(hidden)
mlp_model = keras.models.Model(input = [x], output = [predictions])

if __name__ == "__main__":
    mlp_model.summary(style="keras2")  # the seed's classic table: same columns, same numbers
    print()
    mlp_model.summary()  # the counts split by role, with the formula behind each
    print()
    mlp_model.explain("batch_normalization")  # the answer: 4 x 512, and why 1,024 are not trained
