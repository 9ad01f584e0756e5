"""Language-model calls: the chat model and its structured decisions, the answer judge, prompt
files, sentence embeddings."""
