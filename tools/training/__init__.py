"""LoRA fine-tuning: the recipe (lora.py) and the parts of a run it wires together (config,
base_model, encoding, memory, batches, anomalies, validation, checkpointing, outputs), its backends
(peft, Unsloth), training in several processes (torchrun launch, DDP/FSDP), the chunked loss,
TensorBoard and MLflow tracking."""
