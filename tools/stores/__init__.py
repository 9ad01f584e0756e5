"""Shared state in SQLite or PostgreSQL (jobs, model registry, feedback, API tokens, graph
checkpoints) and the chunk vector store."""
