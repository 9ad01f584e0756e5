"""Serving and export: the OpenAI-compatible server, micro-batching, serving from the registry
(hot reload), vLLM, merged and GGUF export."""
