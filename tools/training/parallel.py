"""How the LoRA recipe's work is split between processes: one process (no split),
DistributedDataParallel (each rank holds the whole model and trains on its shard of every step's
batch; gradients are averaged over the ranks) or FSDP (fully_shard: parameters, gradients and
optimizer state sharded over the ranks, for a model that does not fit one GPU).

The recipe talks to one `Parallelism` object and never to torch.distributed itself, so a one-process
run goes through the same code. Every rank encodes the whole dataset and sees every step's full
batch; it trains on `shard(batch)`, and the loss of each rank is divided by the whole batch's
supervised tokens, so the averaged gradient is the one-process gradient of the same batch (the
effective batch size stays the spec's). Imported only inside the recipe: it imports torch."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from tools.training.linear_cross_entropy import supervised_loss_sum


class SupervisedLoss(torch.nn.Module):
    """The training forward as one module (what DDP and FSDP wrap): the summed fp32 cross-entropy
    over the supervised tokens, through the chunked head where the model allows, else the model's
    own loss."""

    def __init__(self, model: torch.nn.Module, adapter_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.model, self.adapter_dtype = model, adapter_dtype

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self._adapter_precision(ids.device.type):
            loss = supervised_loss_sum(self.model, ids, mask, labels)
            if loss is not None:
                return loss
            own = self.model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        return own.float() * int((labels[:, 1:] != -100).sum())

    @contextlib.contextmanager
    def _adapter_precision(self, device_type: str) -> Iterator[None]:
        """With `adapter_dtype` (bf16 base weights), the LoRA layers compute in it too: autocast casts
        their fp32 weights for the matrix products, and the gradients reach those weights in fp32.
        Without it peft casts every adapted layer's input to fp32 and adds an fp32 result to the bf16
        one: four full-size copies per layer and a fifth of a CPU step (bench/bench_trainer.py)."""
        if self.adapter_dtype is None:
            yield
            return
        from peft.helpers import disable_input_dtype_casting

        with disable_input_dtype_casting(self.model), torch.autocast(device_type, dtype=self.adapter_dtype):
            yield


class Parallelism:
    """One process: nothing is split, nothing is communicated."""

    strategy = "single"
    rank, world, local_rank = 0, 1, 0

    @property
    def is_main(self) -> bool:
        """Whether this rank writes files (checkpoints, adapter, plot) and reports progress."""
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "processes": self.world}

    def shard(self, items: Sequence[Any]) -> list[Any]:
        """This rank's share of a step's examples (round robin over a length-sorted batch:
        balanced)."""
        return list(items[self.rank :: self.world])

    def all_sum(self, values: Sequence[float]) -> list[float]:
        return [float(v) for v in values]

    def all_gather(self, value: Any) -> list[Any]:
        return [value]

    def barrier(self) -> None:
        return None

    def wrap(self, loss: SupervisedLoss) -> torch.nn.Module:
        """The module the training forward goes through."""
        return loss

    def sync_gradients(
        self, wrapped: torch.nn.Module, last: bool
    ) -> contextlib.AbstractContextManager:
        """Gradient accumulation: communicate only on a rank's last micro-batch of the step."""
        return contextlib.nullcontext()

    def loss_scale(self) -> float:
        """DDP and FSDP average gradients over the ranks; scaled by the world size, each rank's loss
        (its share of the batch's summed loss) gives the whole batch's gradient."""
        return float(self.world)

    def grad_norm(self, parameters: Sequence[torch.Tensor], max_norm: float) -> float:
        return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))

    def adapter_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The whole adapter in peft's format (the keys of adapter_model.safetensors), detached
        copies."""
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}

    def load_adapter_state(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)

    def optimizer_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        return optimizer.state_dict()

    def load_optimizer_state(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict
    ) -> None:
        optimizer.load_state_dict(optimizer_state_by_index(state, model))

    def save_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        """What `save_pretrained` writes (None: the model's own state dict)."""
        return None

    def close(self) -> None:
        return None


class DataParallel(Parallelism):
    """DistributedDataParallel over the ranks torchrun started (gloo on CPU, NCCL on CUDA)."""

    strategy = "ddp"

    def __init__(self, backend: str | None = None) -> None:
        import torch.distributed as dist

        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)  # "cuda" then means this rank's GPU
        self.backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if not dist.is_initialized():
            dist.init_process_group(self.backend)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "processes": self.world, "backend": self.backend}

    def whoami(self, device: str, threads: int) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "local_rank": self.local_rank,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": device if device != "cuda" else f"cuda:{self.local_rank}",
            "threads": threads,
        }

    def _device(self) -> torch.device:
        return (
            torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        )

    def all_sum(self, values: Sequence[float]) -> list[float]:
        import torch.distributed as dist

        tensor = torch.tensor(
            [float(v) for v in values], dtype=torch.float64, device=self._device()
        )
        dist.all_reduce(tensor)
        return tensor.tolist()

    def all_gather(self, value: Any) -> list[Any]:
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def wrap(self, loss: SupervisedLoss) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if self.backend == "nccl" else None
        # every LoRA weight takes part in every forward; no buffer needs syncing (no batch norm)
        return DistributedDataParallel(loss, device_ids=device_ids, broadcast_buffers=False)

    def sync_gradients(
        self, wrapped: torch.nn.Module, last: bool
    ) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if last else wrapped.no_sync()

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class FullySharded(DataParallel):
    """FSDP (torch's fully_shard, FSDP2): each decoder layer and the rest of the model are sharded
    over the ranks, gathered for their forward and backward only. Checkpoints hold the whole adapter
    and optimizer state (gathered to full tensors, the optimizer's keyed by parameter name), so they
    resume under any strategy and process count."""

    strategy = "fsdp"

    def wrap(self, loss: SupervisedLoss) -> torch.nn.Module:
        from torch.distributed.fsdp import fully_shard

        for layer in decoder_layers(loss.model):
            fully_shard(layer)
        fully_shard(
            loss
        )  # the root: embeddings, final norm and head, gathered for the whole forward
        self._root = loss
        return loss

    def sync_gradients(
        self, wrapped: torch.nn.Module, last: bool
    ) -> contextlib.AbstractContextManager:
        return _gradient_sync(wrapped, last)

    def grad_norm(self, parameters: Sequence[torch.Tensor], max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def _full_model_state(self) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self._root, options=StateDictOptions(full_state_dict=True))
        prefix = "model."
        return {
            name[len(prefix) :]: tensor.detach().clone()
            for name, tensor in full.items()
            if name.startswith(prefix) and "lora_" in name
        }

    def adapter_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model, state_dict=self._full_model_state())

    def load_adapter_state(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        names = _peft_names(model)
        full = {"model." + names[key]: tensor for key, tensor in state.items()}
        set_model_state_dict(
            self._root, full, options=StateDictOptions(full_state_dict=True, strict=False)
        )

    def optimizer_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        if (
            not optimizer.state
        ):  # before the first step: torch's getter would take a step to make one
            return optimizer.state_dict()
        return get_optimizer_state_dict(
            self._root, optimizer, options=StateDictOptions(full_state_dict=True)
        )

    def load_optimizer_state(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict
    ) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        if not state.get("state"):  # back to before the first step (a rollback to the start)
            optimizer.state.clear()
            return
        set_optimizer_state_dict(
            self._root,
            optimizer,
            optimizer_state_by_name(state, model),
            options=StateDictOptions(full_state_dict=True),
        )

    def save_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        return self._full_model_state()


@contextlib.contextmanager
def _gradient_sync(module: torch.nn.Module, last: bool) -> Iterator[None]:
    """FSDP2's no_sync: reduce-scatter gradients only after a rank's last micro-batch."""
    module.set_requires_gradient_sync(last)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def _trainable_names(model: torch.nn.Module) -> list[str]:
    """The LoRA parameters' names as FSDP checkpoints key the optimizer state (relative to the
    SupervisedLoss root), in the optimizer's order."""
    return ["model." + name for name, p in model.named_parameters() if p.requires_grad]


def _uses_names(state: dict) -> bool:
    return any(isinstance(p, str) for group in state["param_groups"] for p in group["params"])


def optimizer_state_by_index(state: dict, model: torch.nn.Module) -> dict:
    """An optimizer state keyed by parameter name (an FSDP checkpoint) keyed by position instead, as
    torch.optim.Optimizer.load_state_dict wants it; a state keyed by position as it is."""
    if not _uses_names(state):
        return state
    position = {name: i for i, name in enumerate(_trainable_names(model))}
    return {
        "state": {position[name]: value for name, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [position[name] for name in group["params"]]}
            for group in state["param_groups"]
        ],
    }


def optimizer_state_by_name(state: dict, model: torch.nn.Module) -> dict:
    """An optimizer state keyed by position (a one-process or DDP checkpoint) keyed by parameter
    name, as FSDP's set_optimizer_state_dict wants it; a state keyed by name as it is."""
    if _uses_names(state):
        return state
    names = _trainable_names(model)
    return {
        "state": {names[i]: value for i, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [names[i] for i in group["params"]]}
            for group in state["param_groups"]
        ],
    }


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of a (peft-wrapped) causal LM: FSDP's sharding units."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = causal_lm.get_decoder()
    layers = getattr(decoder, "layers", None) or getattr(decoder, "h", None)
    if layers is None:
        raise ValueError(
            f"cannot find the decoder layers of {type(causal_lm).__name__} to shard with FSDP"
        )
    return list(layers)


def _peft_names(model: torch.nn.Module) -> dict[str, str]:
    """peft's adapter key (no adapter name) -> the parameter's name in the model."""
    from peft import get_peft_model_state_dict

    names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    by_name = {name: torch.empty(0) for name in names}
    keyed = get_peft_model_state_dict(model, state_dict=by_name)
    adapter = getattr(model, "active_adapter", "default")
    lookup = {name.replace(f".{adapter}.", "."): name for name in names}
    return {key: lookup[key] for key in keyed}


def parallelism(strategy: str) -> Parallelism:
    """The Parallelism of a torchrun rank ("ddp", "fsdp"), or of one process ("single")."""
    if strategy == "single":
        return Parallelism()
    if strategy == "ddp":
        return DataParallel()
    if strategy == "fsdp":
        return FullySharded()
    raise ValueError(f"unknown parallel strategy {strategy!r}: use single, ddp or fsdp")
