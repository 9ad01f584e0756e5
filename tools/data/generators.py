"""Example generators behind one interface, chosen by name ("extractive" | "llm" | "local").

- extractive: sentence patterns over the chunk (no model; every answer is chunk text).
- llm: any OpenAI-compatible chat model through langchain-openai, prompts from tools/llm/prompts/, answers
  validated as pydantic objects (JSON mode + structured output), retried on timeouts and errors.
- local: the same prompts through a local causal LM (transformers); small models rarely produce
  valid JSON, so its yield is low and every failure is counted.

Every generator counts what went wrong in `stats` (malformed output, timeouts, errors) and skips it:
a failure never looks like a result."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError

from tools.data.chunking import Chunk
from tools.data.examples import Example
from tools.data.qa_extractive import DocumentContext, generate_candidates
from tools.llm.prompt_files import render_prompt

ExampleType = Literal["definition", "cause", "comparison", "function", "reasoning", "fact"]


class QAPair(BaseModel):
    """One question/answer pair as a model must return it."""

    question: str = Field(min_length=8, max_length=400)
    answer: str = Field(min_length=3, max_length=2000)
    type: ExampleType = "fact"


class QAPairs(BaseModel):
    """The structured reply: the pairs written for one passage."""

    pairs: list[QAPair] = Field(min_length=1, max_length=20)


class Generator(Protocol):
    """Writes examples for one chunk (with what its document's other chunks say, where the generator uses
    it); `stats` counts attempts, outputs and failures by reason."""

    name: str
    stats: Counter[str]

    def generate(self, chunk: Chunk, source: str, max_examples: int,
                 context: DocumentContext | None = None) -> list[Example]: ...


def _to_examples(pairs: QAPairs, chunk: Chunk, source: str, generator: str, limit: int) -> list[Example]:
    return [Example(question=p.question.strip(), answer=p.answer.strip(), chunk_id=chunk.chunk_id,
                    doc_id=chunk.doc_id, type=p.type, source=source, metadata={"generator": generator})
            for p in pairs.pairs[:limit]]


def prompt_messages(chunk: Chunk, source: str, subject: str, max_examples: int) -> list[tuple[str, str]]:
    """(role, content) messages for one chunk, from tools/llm/prompts/qa_generation_*.txt."""
    system = render_prompt("qa_generation_system", subject=subject)
    user = render_prompt("qa_generation_user", title=source or "(untitled)", heading=chunk.heading or "(none)",
                         passage=chunk.text, max_examples=str(max_examples))
    return [("system", system), ("user", user)]


class ExtractiveGenerator:
    """Pattern questions (definition, cause/effect, comparison, function); cloze only as a last resort."""

    name = "extractive"

    def __init__(self, min_quality: float = 0.6, allow_cloze: bool = True, max_per_fact: int = 3) -> None:
        self.min_quality, self.allow_cloze, self.max_per_fact = min_quality, allow_cloze, max_per_fact
        self.stats: Counter[str] = Counter()

    def generate(self, chunk: Chunk, source: str, max_examples: int,
                 context: DocumentContext | None = None) -> list[Example]:
        self.stats["chunks"] += 1
        made, rejected = generate_candidates(chunk, source, max_examples, self.min_quality, self.allow_cloze,
                                             self.max_per_fact, context)
        self.stats["generated"] += len(made)
        self.stats["chunks without questions"] += not made
        for reason, count in rejected.items():
            self.stats[f"question gate: {reason}"] += count
        return [Example(**{**e.to_dict(), "metadata": {**e.metadata, "generator": self.name}}) for e in made]


class LLMGenerator:
    """Examples from an OpenAI-compatible chat model, as validated `QAPairs`."""

    name = "llm"

    def __init__(self, model: str, base_url: str | None, api_key: str | None, subject: str,
                 retries: int = 2, timeout_s: float = 60.0, temperature: float = 0.2,
                 max_tokens: int = 1024) -> None:
        from tools.llm.chat_model import StructuredOutput, build_chat

        # Retries are ours (counted per reason), not the client's silent ones (build_chat: max_retries=0).
        chat = build_chat(model, base_url, api_key, timeout_s=timeout_s, temperature=temperature,
                          max_tokens=max_tokens)
        self._structured = StructuredOutput(chat, QAPairs, "json_mode")
        self.subject, self.retries = subject, retries
        self.stats: Counter[str] = Counter()

    def generate(self, chunk: Chunk, source: str, max_examples: int,
                 context: DocumentContext | None = None) -> list[Example]:  # the prompt shows the chunk alone
        self.stats["chunks"] += 1
        messages = prompt_messages(chunk, source, self.subject, max_examples)
        for _ in range(self.retries + 1):
            self.stats["requests"] += 1
            outcome = self._ask(messages)
            if isinstance(outcome, QAPairs):
                made = _to_examples(outcome, chunk, source, self.name, max_examples)
                self.stats["generated"] += len(made)
                return made
            self.stats[outcome] += 1
        self.stats["chunks skipped after retries"] += 1
        return []

    def _ask(self, messages: list[tuple[str, str]]) -> QAPairs | str:
        """The validated reply, or the failure's name ("timeout", "truncated output", "malformed output",
        "API error")."""
        import openai

        try:
            reply: dict[str, Any] = self._structured.invoke(messages)
        except openai.APITimeoutError:
            return "timeout"
        except openai.LengthFinishReasonError:
            return "truncated output"
        except (openai.APIConnectionError, openai.APIStatusError):
            return "API error"
        except (ValidationError, ValueError):
            return "malformed output"
        parsed = reply.get("parsed")
        return parsed if isinstance(parsed, QAPairs) else "malformed output"


def parse_pairs(text: str) -> QAPairs | None:
    """The first JSON object in a local model's text, validated as QAPairs (None when there is none)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return QAPairs.model_validate(json.loads(text[start : end + 1]))
    except (json.JSONDecodeError, ValidationError):
        return None


class LocalGenerator:
    """The same prompts through a local causal LM with transformers (greedy decoding)."""

    name = "local"

    def __init__(self, model_path: str, subject: str, max_new_tokens: int = 256, threads: int | None = None,
                 loader: Callable[..., tuple[Any, Any]] | None = None) -> None:
        from tools.models.loading import load_for_inference

        self.model, self.tokenizer = (loader or load_for_inference)(str(model_path), None, threads)
        self.subject, self.max_new_tokens = subject, max_new_tokens
        self.stats: Counter[str] = Counter()

    def generate(self, chunk: Chunk, source: str, max_examples: int,
                 context: DocumentContext | None = None) -> list[Example]:  # the prompt shows the chunk alone
        self.stats["chunks"] += 1
        text = self._complete(prompt_messages(chunk, source, self.subject, max_examples))
        pairs = parse_pairs(text)
        if pairs is None:
            self.stats["prose instead of JSON" if "{" not in text else "malformed output"] += 1
            return []
        made = _to_examples(pairs, chunk, source, self.name, max_examples)
        self.stats["generated"] += len(made)
        return made

    def _complete(self, messages: list[tuple[str, str]]) -> str:
        import torch

        chat = [{"role": role, "content": content} for role, content in messages]
        ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        with torch.no_grad():
            output = self.model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                         pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(output[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


class GeneratorUnavailable(RuntimeError):
    """The chosen generator cannot run here (e.g. "llm" with no chat model configured)."""


def make_generator(name: str, *, subject: str, min_quality: float = 0.6, allow_cloze: bool = True,
                   max_per_fact: int = 3, chat_model: str | None = None, chat_base_url: str | None = None,
                   chat_api_key: str | None = None, retries: int = 2, timeout_s: float = 60.0,
                   local_model_path: str | None = None, max_new_tokens: int = 256) -> Generator:
    """The generator called `name`; GeneratorUnavailable when its model is not configured."""
    if name == "extractive":
        return ExtractiveGenerator(min_quality, allow_cloze, max_per_fact)
    if name == "llm":
        if not chat_model:
            raise GeneratorUnavailable("the llm generator needs a chat model (FTAGENT_CHAT_MODEL and "
                                       "FTAGENT_CHAT_BASE_URL)")
        return LLMGenerator(chat_model, chat_base_url, chat_api_key, subject, retries, timeout_s)
    if name == "local":
        if not local_model_path:
            raise GeneratorUnavailable("the local generator needs a local model folder")
        return LocalGenerator(local_model_path, subject, max_new_tokens)
    raise GeneratorUnavailable(f"unknown generator {name!r}; choose extractive, llm or local")

