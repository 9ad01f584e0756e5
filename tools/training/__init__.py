"""LoRA fine-tuning: the recipe, its backends (peft, Unsloth), the chunked loss and TensorBoard tracking."""
