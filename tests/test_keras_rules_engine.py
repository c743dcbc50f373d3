"""Engine behaviours checked against real Keras: sharing, nesting, freezing, Lambda, custom
classes, keras.ops nodes and weights read from a file."""

from __future__ import annotations

import json
from typing import Any

import pytest

keras = pytest.importorskip("keras")

from keras import layers  # noqa: E402

from paramscope.analysis.totals import layer_totals, totals  # noqa: E402
from paramscope.core.anatomy import Role  # noqa: E402
from paramscope.readers.keras.engine.graph import StoredWeight, anatomy_from_config  # noqa: E402


def _config(model: Any) -> dict[str, Any]:
    return json.loads(model.to_json())


def test_layer_shared_by_two_submodels_is_counted_as_model_from_json_builds_it() -> None:
    shared = layers.Dense(4, name="shared_d")
    i1 = keras.Input((3,))
    a = keras.Model(i1, shared(i1), name="a")
    i2 = keras.Input((3,))
    b = keras.Model(i2, layers.Dense(2)(shared(i2)), name="b")
    x = keras.Input((3,))
    model = keras.Model(x, [a(x), b(x)])
    config = _config(model)
    rebuilt = keras.models.model_from_json(json.dumps(config))
    anatomy = anatomy_from_config(config)
    # The live model shares shared_d (26 params); the config cannot say so and the rebuilt
    # model holds two copies (16 + 26 = 42).
    assert model.count_params() < rebuilt.count_params()
    assert totals(anatomy).params == rebuilt.count_params()
    assert any("shared_d" in note and "a/shared_d" in note and "b/shared_d" in note for note in anatomy.notes)
    assert anatomy.find("a/shared_d") is not None and anatomy.find("b/shared_d") is not None


def test_shared_layer_is_one_row_with_every_call() -> None:
    x = keras.Input((5,), name="x")
    y = keras.Input((5,), name="y")
    shared = layers.Dense(5, name="shared")
    out = layers.Add(name="sum")([shared(x), shared(shared(y))])
    anatomy = anatomy_from_config(_config(keras.Model([x, y], out)))
    row = anatomy.find("shared")
    assert row is not None and row.calls == 3
    assert row.inbound == ("x[0][0]", "y[0][0]", "shared[1][0]")
    assert layer_totals(row).params == 5 * 5 + 5
    summed = anatomy.find("sum")
    assert summed is not None and summed.inbound == ("shared[0][0]", "shared[2][0]")


def test_frozen_layers_and_models_explain_why() -> None:
    inner = keras.Sequential([keras.Input((3,)), layers.Dense(2, name="inner_dense")], name="inner")
    inner.trainable = False
    x = keras.Input((3,))
    bn = layers.BatchNormalization(name="bn", trainable=False)
    model = keras.Model(x, bn(inner(x)))
    anatomy = anatomy_from_config(_config(model))
    dense = anatomy.find("inner/inner_dense")
    assert dense is not None
    assert {t.role for t in dense.tensors} == {Role.FROZEN}
    assert all("enclosing model" in t.why or "trainable is False" in t.why for t in dense.tensors)
    bn_row = anatomy.find("bn")
    assert bn_row is not None
    roles = {t.name: t.role for t in bn_row.tensors}
    assert roles == {"gamma": Role.FROZEN, "beta": Role.FROZEN,
                     "moving_mean": Role.STATISTIC, "moving_variance": Role.STATISTIC}
    assert totals(anatomy).trainable == sum(int(w.numpy().size) for w in model.trainable_weights) == 0


def test_lambda_is_never_run_and_its_shape_comes_from_the_config() -> None:
    x = keras.Input((4,))
    y = layers.Lambda(lambda t: keras.ops.concatenate([t, t], axis=-1), name="double")(x)
    out = layers.Dense(3, name="head")(y)
    anatomy = anatomy_from_config(_config(keras.Model(x, out)))
    lam = anatomy.find("double")
    assert lam is not None and lam.known and not lam.tensors
    # No output_shape was declared: the shape is read from the Dense's inbound tensor.
    assert lam.output_shapes == ((None, 8),)
    head = anatomy.find("head")
    assert head is not None and layer_totals(head).params == 8 * 3 + 3
    seq = keras.Sequential([keras.Input((4,)), layers.Lambda(lambda t: t * 2)])
    last = anatomy_from_config(_config(seq)).layers[-1]
    assert last.type == "Lambda" and last.output_shapes is None


@keras.saving.register_keras_serializable(package="paramscope_test")
class Scale(layers.Layer):
    def build(self, input_shape: Any) -> None:
        self.s = self.add_weight(shape=(input_shape[-1],), name="s")

    def call(self, x: Any) -> Any:
        return x * self.s


def test_custom_layer_is_reported_not_imported_and_takes_stored_weights() -> None:
    x = keras.Input((6,))
    model = keras.Model(x, Scale(name="scale")(layers.Dense(6, name="d")(x)))
    config = _config(model)
    anatomy = anatomy_from_config(config)
    row = anatomy.find("scale")
    assert row is not None and not row.known and "custom class" in row.note
    assert row.output_shapes is None and not totals(anatomy).complete
    stored = {"scale": [StoredWeight("0", (6,), "float32")]}
    with_weights = anatomy_from_config(config, stored_weights=stored)
    row = with_weights.find("scale")
    assert row is not None and [t.shape for t in row.tensors] == [(6,)]
    assert row.tensors[0].role is Role.UNKNOWN and not row.known
    assert totals(with_weights).params == model.count_params()


def test_ops_nodes_have_no_weights_and_known_shapes() -> None:
    x = keras.Input((3, 4))
    y = keras.ops.matmul(x, keras.ops.transpose(x, (0, 2, 1)))
    z = keras.ops.multiply(keras.ops.sigmoid(y), 2.0)
    model = keras.Model(x, z)
    anatomy = anatomy_from_config(_config(model))
    op_rows = [layer for layer in anatomy.layers if layer.origin.startswith("keras.src.ops")]
    assert len(op_rows) == len(model._operations) - len(model.layers)
    assert all(not layer.tensors and layer.known for layer in op_rows)
    assert anatomy.outputs == (tuple(model.output.shape),)
    for op, row in zip([o for o in model._operations if o not in model.layers], op_rows):
        assert row.output_shapes == (tuple(op.output.shape),)


def test_stored_weight_mismatch_names_layer_and_weight() -> None:
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="d")])
    config = _config(model)
    from paramscope.core.errors import CorruptFileError

    with pytest.raises(CorruptFileError, match=r"m\.keras, layer d: .*'kernel'"):
        anatomy_from_config(config, source="m.keras",
                            stored_weights={"d": [StoredWeight("0", (4, 2), "float32"),
                                                  StoredWeight("1", (3,), "float32")]})
    with pytest.raises(CorruptFileError, match="2 stored weights|1 stored weights"):
        anatomy_from_config(config, stored_weights={"d": [StoredWeight("0", (4, 3), "float32")]})


def test_layer_a_rule_cannot_size_takes_stored_weights() -> None:
    # A GPTQ-quantized Dense: its variables depend on calibration, so the rule does not list
    # them; a weights file still gives their exact count.
    cfg = {"class_name": "Dense", "config": {"name": "d", "units": 4, "dtype": {
        "class_name": "GPTQDTypePolicy", "config": {"mode": "gptq/4/128", "source_name": "float32"}}},
        "build_config": {"input_shape": [None, 8]}}
    bare = anatomy_from_config(cfg)
    assert not bare.complete and "gptq" in bare.layers[0].note
    stored = {"d": [StoredWeight("0", (4,), "float32"), StoredWeight("1", (8, 2), "uint8")]}
    with_file = anatomy_from_config(cfg, stored_weights=stored)
    assert [t.shape for t in with_file.layers[0].tensors] == [(4,), (8, 2)]
    assert with_file.layers[0].output_shapes == ((None, 4),)


def test_lora_layer_read_from_a_keras_archive(tmp_path: Any) -> None:
    # Keras saves a LoRA layer's kernel with the update merged, not the two factors: the
    # archive holds fewer weights than the layer has, and that is not an error.
    import paramscope

    x = keras.Input((6,))
    model = keras.Model(x, layers.Dense(4, lora_rank=2, name="adapted")(layers.Dense(6)(x)))
    path = tmp_path / "lora.keras"
    model.save(path)
    anatomy = paramscope.read(str(path))
    assert totals(anatomy).params == model.count_params()
    assert totals(anatomy).trainable == sum(int(w.numpy().size) for w in model.trainable_weights)
    row = anatomy.find("adapted")
    assert row is not None
    roles = {t.name: t.role for t in row.tensors}
    assert roles["kernel"] is Role.FROZEN and roles["lora_kernel_a"] is Role.TRAINABLE
