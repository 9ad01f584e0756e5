"""LoRA fine-tuning: the recipe, its backends (peft, Unsloth), training in several processes
(torchrun launch, DDP/FSDP), the chunked loss, TensorBoard tracking."""
