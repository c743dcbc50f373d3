"""One pass of a PyTorch module on the meta device or fake tensors: output shapes and FLOPs per module, with no weights or activations allocated."""
