"""The one thread a server's torch work runs on.

Why: torch's CPU kernels run in OpenMP parallel regions, and GNU OpenMP gives each OS thread that opens one
its own team of worker threads. A server that loads its model on the main thread, decodes alone requests
in a thread pool, batches in a batcher thread and streams from a thread per request soon holds several
teams; once their threads outnumber the cores, libgomp stops spin-waiting between regions (in every team,
idle or not) and each small operation pays a futex wake-up. Measured with SmolLM2-135M in int4 on 2 cores:
one sequence decodes at 53 tokens/s while one thread has run torch, and at 30 as soon as a second one has
(OMP_WAIT_POLICY, GOMP_SPINCOUNT and KMP_BLOCKTIME do not bring it back). So every call that touches the
model — loading, merging, putting adapters on and off, generating — runs here, one at a time.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class ModelThread:
    """Runs functions on one dedicated thread and waits for their result (or error); a call made from that
    thread itself runs at once, so model methods may call one another."""

    def __init__(self, name: str = "model") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._ident = self._executor.submit(threading.get_ident).result()

    def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if threading.get_ident() == self._ident:
            return function(*args, **kwargs)
        return self._executor.submit(function, *args, **kwargs).result()

    def close(self) -> None:
        """No new calls; the one running (and those queued) finish."""
        self._executor.shutdown(wait=False)


def on_model_thread(method: Callable[..., T]) -> Callable[..., T]:
    """A method of an object with a `model_thread` (ModelThread) that always runs on that thread."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> T:
        return self.model_thread.run(method, self, *args, **kwargs)

    return run
