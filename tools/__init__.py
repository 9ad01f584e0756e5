"""Capabilities with no knowledge of the graph: sources, text, embeddings, storage, training, evaluation."""
