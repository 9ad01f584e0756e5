"""Answer-quality metrics: token F1, ROUGE-L, exact match, format compliance."""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from tools.text import words


def token_f1(prediction: str, reference: str) -> float:
    """Word-overlap F1 of prediction and reference (SQuAD style, lower-cased words)."""
    predicted, expected = words(prediction), words(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score, with stemming)."""
    return _rouge_scorer().score(reference, prediction)["rougeL"].fmeasure


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when both have the same lower-cased words, else 0.0."""
    return float(words(prediction) == words(reference))


# Chat-template tokens of common templates (ChatML, Llama 2/3, Mistral, Gemma, Phi) and role markers that
# mean the model kept talking past its own answer.
TEMPLATE_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|assistant|>", "<|user|>", "<|system|>", "<|end|>", "[INST]", "[/INST]",
                   "<<SYS>>", "<</SYS>>", "<start_of_turn>", "<end_of_turn>", "</s>", "<s>")
_ROLE_MARKER = re.compile(r"(?:^|\n)\s*(?:system|user|assistant|human|###\s*(?:instruction|response))\s*(?::|\n|$)",
                          re.IGNORECASE)
_CLEAN_ENDINGS = (".", "!", "?", "…", '"', "'", ")", "]", "```", "”", "’")
DEFAULT_MAX_ANSWER_WORDS = 150


def format_problems(answer: str, max_words: int = DEFAULT_MAX_ANSWER_WORDS) -> list[str]:
    """What is wrong with an answer's form (empty list = compliant): empty, cut off mid-sentence,
    chat-template tokens or role markers leaked, longer than `max_words` words."""
    text = answer.strip()
    if not text:
        return ["empty"]
    problems = []
    if not strip_template_tokens(text).endswith(_CLEAN_ENDINGS):
        problems.append("does not end cleanly")
    leaked = [token for token in TEMPLATE_TOKENS if token in text]
    if leaked:
        problems.append(f"template tokens leaked: {' '.join(leaked)}")
    if _ROLE_MARKER.search(text):
        problems.append("role marker leaked")
    if len(text.split()) > max_words:
        problems.append(f"longer than {max_words} words")
    return problems


def format_compliance(answer: str, max_words: int = DEFAULT_MAX_ANSWER_WORDS) -> float:
    """1.0 when the answer's form is clean (see `format_problems`), else 0.0."""
    return float(not format_problems(answer, max_words))


def strip_template_tokens(answer: str) -> str:
    """The answer without chat-template tokens (what the content metrics compare)."""
    for token in TEMPLATE_TOKENS:
        answer = answer.replace(token, " ")
    return " ".join(answer.split())
