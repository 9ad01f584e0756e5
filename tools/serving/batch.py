"""Micro-batching for the model server: requests that arrive together decode in one ``generate`` call.

Policies:

- **Who shares a call.** Greedy requests share with greedy ones; sampled requests without a seed share
  with those of the same temperature and ``top_p``. A seeded request runs alone (its seed promises a
  repeatable answer, which a random stream shared with strangers cannot keep), and so does a streamed
  one (its tokens go to one client as they come). Rows may use different adapters: peft's mixed-adapter
  inference (``adapter_names=``, one per row, ``"__base__"`` for the base model) picks each row's LoRA.
- **The window.** A worker takes the oldest waiting request, joins every compatible waiting one, and
  waits up to ``window_s`` (a few ms) for more, up to ``max_batch_size`` rows. The window starts when
  the worker takes the request, not when it arrived: clients whose batch just ended need a moment to
  send their next request, and without that moment two halves of the clients settle into taking
  turns (two half batches in a row) instead of decoding together (seen in bench/bench_serving.py).
- **Rows.** Prompts are left-padded; each row stops at its own EOS or its own ``max_tokens`` (a per-row
  stopping criterion) and the call ends when every row has. A row joins a batch only if every row's
  prompt plus the batch's largest ``max_tokens`` fits the context (finished rows keep their positions
  moving while the others decode).
- **Equality.** A batched greedy answer equals the one-at-a-time answer up to the rounding of padded
  matrix products; a near-tie between two tokens could flip, more easily with bf16 weights (the default
  where the CPU has native bf16) than in fp32 (the tests compare on the tiny model in fp32).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("ftagent.serving")


@dataclass
class Generation:
    """One prepared request: which version answers, with which adapter, and how to decode."""

    served_name: str
    adapter: str | None  # peft adapter id; None = the base model
    input_ids: Any  # torch.LongTensor of shape (1, prompt_tokens)
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stream: bool = False

    @property
    def prompt_tokens(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def batch_key(job: Generation) -> Hashable | None:
    """Jobs with equal keys can decode in one call; None means the job runs alone."""
    if job.stream or job.seed is not None:
        return None
    if job.temperature == 0:
        return ("greedy",)
    return ("sample", job.temperature, job.top_p)


def fits_together(jobs: Sequence[Generation], context_length: int) -> bool:
    """Every row's prompt plus the batch's largest max_new_tokens stays within the context."""
    longest_answer = max(job.max_new_tokens for job in jobs)
    return all(job.prompt_tokens + longest_answer <= context_length for job in jobs)


def left_pad(jobs: Sequence[Generation], pad_token_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) with every prompt right-aligned, so all rows decode in step."""
    import torch

    width = max(job.prompt_tokens for job in jobs)
    input_ids = torch.full((len(jobs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(jobs), width), dtype=torch.long)
    for row, job in enumerate(jobs):
        input_ids[row, width - job.prompt_tokens:] = job.input_ids[0]
        mask[row, width - job.prompt_tokens:] = 1
    return input_ids, mask


class RowLimits:
    """A stopping criterion that ends each row at its own number of new tokens (generate pads a
    finished row and stops when every row is finished)."""

    def __init__(self, prompt_width: int, limits: Sequence[int]) -> None:
        import torch

        self.prompt_width = prompt_width
        self.limits = torch.tensor(list(limits))

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return (input_ids.shape[1] - self.prompt_width) >= self.limits


def cut_answer(new_tokens: list[int], limit: int, eos_token_id: int | None) -> tuple[list[int], bool]:
    """A row's own answer: at most `limit` tokens, ending at its first EOS. (tokens, ended at EOS)."""
    tokens = new_tokens[:limit]
    if eos_token_id is not None and eos_token_id in tokens:
        return tokens[: tokens.index(eos_token_id) + 1], True
    return tokens, False


@dataclass(eq=False)  # compared by identity: the queue removes a job by `==`, and jobs hold tensors
class _Pending:
    job: Generation
    key: Hashable
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """A queue and one worker thread that turns waiting compatible jobs into batches.

    `run_batch` decodes a list of jobs and returns, per job, its result or the error to raise."""

    def __init__(self, run_batch: Callable[[list[Generation]], list[GenerationResult | Exception]],
                 context_length: int, max_batch_size: int = 8, window_s: float = 0.01) -> None:
        if max_batch_size < 2:
            raise ValueError(f"a micro-batcher needs max_batch_size >= 2, not {max_batch_size}")
        if window_s < 0:
            raise ValueError(f"the batching window cannot be negative ({window_s} s)")
        self.run_batch, self.context_length = run_batch, context_length
        self.max_batch_size, self.window_s = max_batch_size, window_s
        self.batch_sizes: Counter[int] = Counter()  # rows per generate call → how many calls
        self._queue: deque[_Pending] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
        self._worker.start()

    def submit(self, job: Generation) -> Future:
        """Queue a batchable job; the future holds its GenerationResult (or the error)."""
        key = batch_key(job)
        if key is None:
            raise ValueError("seeded and streamed requests run alone; they cannot be batched")
        pending = _Pending(job, key)
        with self._ready:
            if self._closed or not self._worker.is_alive():  # a dead worker would leave the job waiting forever
                raise RuntimeError("the micro-batcher is not running (closed, or its worker failed: see the log)")
            self._queue.append(pending)
            self._ready.notify_all()
        return pending.future

    def close(self) -> None:
        """Stop taking jobs; waiting ones still run, then the worker ends."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._worker.join(timeout=60)

    def _loop(self) -> None:
        while (batch := self._collect()) is not None:
            self._run(batch)

    def _collect(self) -> list[_Pending] | None:
        """The oldest waiting job and the compatible jobs that come within its window."""
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if not self._queue:
                return None
            batch = [self._queue.popleft()]
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.max_batch_size:
                if self._take_compatible(batch):
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._ready.wait(remaining)
            return batch

    def _take_compatible(self, batch: list[_Pending]) -> bool:
        for pending in self._queue:
            if pending.key == batch[0].key and fits_together([p.job for p in (*batch, pending)],
                                                               self.context_length):
                self._queue.remove(pending)
                batch.append(pending)
                return True
        return False

    def _run(self, batch: list[_Pending]) -> None:
        self.batch_sizes[len(batch)] += 1
        try:
            outcomes = self.run_batch([p.job for p in batch])
        except Exception as error:  # every caller of the batch gets the error
            logger.exception("a batch of %d generations failed", len(batch))
            outcomes = [error] * len(batch)
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)
