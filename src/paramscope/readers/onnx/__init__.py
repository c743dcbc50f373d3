"""ONNX reader: a bounded protobuf scan of the model, its initializers, shapes and per-node FLOPs."""
