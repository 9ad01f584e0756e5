"""Language-model calls: the chat model with structured decisions, the answer judge, prompt files and sentence embeddings."""
