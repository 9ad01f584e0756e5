"""Shared state: jobs, model registry, feedback, API tokens, graph checkpoints (SQLite or PostgreSQL) and the chunk vector store."""
