"""Training data: chunks, facts and questions, the extractive and LLM generators, the example
gate, splits and cards."""
