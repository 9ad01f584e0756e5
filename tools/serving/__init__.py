"""Serving and export: the OpenAI-compatible server, micro-batching, hot reload from the registry, vLLM, merged and GGUF export."""
