"""PyTorch readers: live modules, and checkpoint files and folders read by the data-only pickle interpreter."""
