"""A tiny randomly initialised causal LM with a real (small, byte-level BPE) tokenizer and a ChatML
template like SmolLM2's: seconds to build and to train on CPU."""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _training_text() -> list[str]:
    corpus = Path(__file__).resolve().parents[2] / "tools" / "eval_sets" / "demo_corpus"
    texts = [p.read_text(errors="ignore") for p in sorted(corpus.glob("*.md"))]
    return texts or ["the quick brown fox jumps over the lazy dog"]


def build_tiny_model(target: Path, vocab_size: int = 800, hidden: int = 48, layers: int = 2) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(_training_text(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=None, eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", unk_token=None)
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    return target


def random_adapter(base_dir: Path, target: Path, seed: int = 0, rank: int = 4, alpha: int = 64) -> Path:
    """A LoRA adapter on every linear layer whose weights are random (not the identity), so it visibly
    changes answers; saved with the tokenizer, as the trainer saves adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(target))
    return target


def pretrain_on_general_text(model_dir: Path, target: Path, steps: int = 120, learning_rate: float = 1e-2) -> Path:
    """A copy of the tiny model trained (all weights) on tools/eval_sets/general/general_text.jsonl, so it has
    general skills to lose: a random model's general perplexity only falls when it is fine-tuned, so a
    general regression cannot be planted on it. ~5 s on CPU; general perplexity ~800 -> ~100."""
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    general = Path(__file__).resolve().parents[2] / "tools" / "eval_sets" / "general" / "general_text.jsonl"
    texts = [json.loads(line)["text"] for line in general.read_text().splitlines() if line.strip()]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=128)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        rows = torch.randperm(len(texts), generator=generator)[:16]
        model(input_ids=batch["input_ids"][rows], attention_mask=batch["attention_mask"][rows],
              labels=labels[rows]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    return target
