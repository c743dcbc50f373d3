"""Deep builder models: thousands of chained layers build, count and export without recursion,
and real Keras, building the same model from the builder's ``to_json()``, counts every layer alike."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

import paramscope
from paramscope import keras as pk
from paramscope.analysis import layer_totals, totals


@pytest.fixture(autouse=True)
def _fresh_names() -> None:
    pk.clear_session()


@pytest.fixture
def keras_recursion() -> Iterator[None]:
    # Keras's own graph code recurses once per layer (about 1,000 frames already fail), so the
    # oracle, not paramscope, needs the higher limit; it is restored after the test.
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 60_000))
    yield
    sys.setrecursionlimit(before)


def chain(n_layers: int) -> pk.Model:
    """Input(6) then n_layers alternating Dense(6) and BatchNormalization, one after the other."""
    x = pk.Input(shape=(6,))
    h = x
    for i in range(n_layers):
        h = pk.layers.Dense(6)(h) if i % 2 == 0 else pk.layers.BatchNormalization()(h)
    return pk.Model(x, h)


@pytest.mark.parametrize("n_layers", [1_100, 5_000])
def test_deep_chain_counts_without_recursion(n_layers: int) -> None:
    # Run under a recursion limit far below the depth: any recursion over the layer graph fails.
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(400)
    try:
        model = chain(n_layers)
        anatomy = paramscope.read(model)
        config_json = model.to_json()
        # The text table of 5,000 rows takes rich tens of seconds; 1,100 rows prove the same path.
        text = paramscope.summary(model).text if n_layers <= 1_100 else ""
    finally:
        sys.setrecursionlimit(before)
    dense, bn = (n_layers + 1) // 2, n_layers // 2
    # Dense(6) on 6 features: 6 x 6 + 6 = 42; BatchNormalization: 4 x 6 = 24, half of it statistics.
    assert totals(anatomy).params == dense * 42 + bn * 24
    assert totals(anatomy).non_trainable == bn * 12
    assert len(model.layers) == n_layers + 1
    if text:
        assert f"Total params: {dense * 42 + bn * 24:,}" in text
    assert config_json.count('"class_name": "Dense"') == dense


@pytest.mark.parametrize("n_layers", [1_100, 5_000])
def test_deep_chain_matches_keras_layer_by_layer(n_layers: int, keras_recursion: None) -> None:
    keras = pytest.importorskip("keras")
    model = chain(n_layers)
    real = keras.models.model_from_json(model.to_json())
    anatomy = paramscope.read(model)
    # paramscope reads the live Keras model without recursion too, whatever Keras needed.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)
    try:
        live = paramscope.read(real)
    finally:
        sys.setrecursionlimit(limit)
    assert totals(live).params == real.count_params()
    ours = {layer.name: layer_totals(layer).params for layer in anatomy.layers}
    theirs = {layer.name: layer.count_params() for layer in real.layers}
    assert ours == theirs
    assert [layer.name for layer in anatomy.layers] == [layer.name for layer in real.layers]
    assert totals(anatomy).params == real.count_params()
