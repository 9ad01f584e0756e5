"""Training data: chunks, facts and questions, extractive and LLM generators, the example gate, splits, cards."""
