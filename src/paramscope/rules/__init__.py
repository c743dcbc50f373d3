"""Layer rules: for each layer type, what its tensors are, their shapes, roles and why."""
