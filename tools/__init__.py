"""Capabilities with no knowledge of the graph, one package per capability: sources, intake, data, llm,
models, training, evaluation, serving, stores; a few shared helpers at the top."""
