"""Base models: the catalogue of names and weights, and loading a model (with its adapter) for
inference."""
