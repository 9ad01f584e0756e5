"""Which examples each rank computes in a training run: an epoch's optimizer-step batches (grouped
by length, a function of seed and epoch only, so a resumed run sees the same order), a step's batch
dealt over the ranks in micro-batches that fit the memory plan, and a set's evaluation
micro-batches. Indices and examples only: the tensors are built in tools/training/encoding.collate.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tools.training.encoding import IGNORED, EncodedExample, padded_width

if TYPE_CHECKING:
    from tools.training.parallel import Parallelism

Part = tuple[list[EncodedExample], float]  # a micro-batch and its weight (1, or 0 for a filler)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffle, sort within windows of 16 batches by length (little padding), shuffle the batches.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        group = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def micro_batches(
    examples: Sequence[EncodedExample], micro_batch: int, micro_tokens: int | None
) -> list[list[EncodedExample]]:
    """One step's examples sorted by length and split into micro-batches (little padding each): of
    at most `micro_tokens` padded tokens each when the memory plan packs by tokens, else
    `micro_batch` examples."""
    ordered = sorted(examples, key=lambda e: len(e.input_ids))
    if not micro_tokens:
        return [ordered[k : k + micro_batch] for k in range(0, len(ordered), micro_batch)]
    batches: list[list[EncodedExample]] = [[]]
    for example in ordered:  # ascending length: the newest example sets the padded width
        if batches[-1] and (len(batches[-1]) + 1) * padded_width(len(example.input_ids)) > micro_tokens:
            batches.append([])
        batches[-1].append(example)
    return batches


class StepBatches:
    """The training set's batches for this rank, under the memory plan's micro-batch size."""

    def __init__(
        self,
        examples: Sequence[EncodedExample],
        batch_size: int,
        seed: int,
        micro_batch: int,
        micro_tokens: int | None,
        parallel: Parallelism,
    ) -> None:
        self.examples, self.batch_size, self.seed = examples, batch_size, seed
        self.micro_batch, self.micro_tokens = micro_batch, micro_tokens
        self.parallel = parallel

    def epoch(self, epoch: int) -> list[list[int]]:
        """The epoch's optimizer-step batches, as indices into the training set."""
        lengths = [len(e.input_ids) for e in self.examples]
        return length_grouped_batches(lengths, self.batch_size, self.seed + epoch)

    def micro_batches(self, batch: list[int]) -> list[list[EncodedExample]]:
        """The step's examples (indices) in micro-batches that fit the memory plan."""
        return micro_batches([self.examples[i] for i in batch], self.micro_batch, self.micro_tokens)

    def supervised_tokens(self, batch: list[int]) -> int:
        """Tokens the whole step's batch is trained on, over all ranks (each loss is divided by it).
        """
        return sum(sum(label != IGNORED for label in self.examples[i].labels[1:]) for i in batch)

    def rank_parts(self, batch: list[int]) -> list[Part]:
        """This rank's micro-batches of a step: the batch sorted by length and dealt round robin
        over the ranks (one rank: all of it)."""
        ordered = sorted(batch, key=lambda i: len(self.examples[i].input_ids))
        parts = [
            (examples, 1.0)
            for examples in self.micro_batches(self.parallel.shard(ordered))
            if examples
        ]
        return self._padded_to_the_ranks(parts, self.examples[ordered[0]])

    def evaluation_parts(self, examples: Sequence[EncodedExample]) -> list[Part]:
        """This rank's shard of a (non-empty) set, sorted by length, in micro-batches."""
        ordered = sorted(examples, key=lambda e: len(e.input_ids))
        mine = self.parallel.shard(ordered)
        size = self.micro_batch
        parts = [(mine[k : k + size], 1.0) for k in range(0, len(mine), size)]
        return self._padded_to_the_ranks(parts, ordered[0])

    def _padded_to_the_ranks(self, parts: list[Part], filler: EncodedExample) -> list[Part]:
        """Every rank runs at least one forward per step (DDP averages gradients at the last one);
        under FSDP every rank runs as many as the busiest (each forward gathers the shards from all
        ranks). The fillers weigh 0."""
        parts = parts or [([filler], 0.0)]
        if self.parallel.strategy == "fsdp":
            most = max(self.parallel.all_gather(len(parts)))
            parts = parts + [([filler], 0.0)] * (most - len(parts))
        return parts
