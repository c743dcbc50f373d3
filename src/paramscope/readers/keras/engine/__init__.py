"""The Keras config engine: walks a model config (Functional, Sequential, nested, shared layers, ops nodes) and builds layers with the rules of :mod:`paramscope.rules.keras`."""
