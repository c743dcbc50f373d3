"""Keras readers: live models, configs, `.keras`/`.h5` archives and `.weights.h5` files; the config engine in :mod:`.engine`."""
