"""LoRA fine-tuning: the recipe, its backends (peft, Unsloth), the chunked loss, TensorBoard
tracking."""
