"""The rewrites' worker threads: results in input order, a worker's error raised in the caller, and a caller
interrupted while every worker waits (a job's cancel, delivered as an asynchronous exception) stops at once,
with no worker starting another item."""

from __future__ import annotations

import ctypes
import threading
import time

import pytest

from tools.data.rewrites import WAIT_SLICE_S, in_parallel


def test_results_come_back_in_input_order_whatever_order_the_workers_finish_in():
    def slow_for_small(n: int) -> int:
        time.sleep(0.01 * (10 - n))
        return n * n

    assert in_parallel(slow_for_small, list(range(10)), 4, threading.Event()) == [n * n for n in range(10)]
    assert in_parallel(slow_for_small, [], 4, threading.Event()) == []


def test_an_error_in_a_worker_is_raised_in_the_caller():
    def fail_on_three(n: int) -> int:
        if n == 3:
            raise ValueError("three")
        return n

    with pytest.raises(ValueError, match="three"):
        in_parallel(fail_on_three, list(range(8)), 2, threading.Event())


class Interrupted(Exception):
    pass


def test_an_interrupted_caller_returns_at_once_and_no_worker_starts_another_item():
    release, started, stop = threading.Event(), [], threading.Event()
    outcome: dict[str, object] = {}

    def wait_for_release(n: int) -> int:
        started.append(n)
        release.wait(30)
        return n

    def caller() -> None:
        try:
            in_parallel(wait_for_release, list(range(20)), 3, stop)
        except Interrupted:
            outcome["interrupted_at"] = time.monotonic()

    thread = threading.Thread(target=caller)
    thread.start()
    while len(started) < 3:
        time.sleep(0.01)
    asked = time.monotonic()
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(Interrupted))
    thread.join(5)
    try:
        assert outcome["interrupted_at"] - asked < WAIT_SLICE_S + 1  # not after the workers' 30 s wait
        assert stop.is_set()
    finally:
        release.set()
    time.sleep(0.2)  # the three released workers end without taking another item
    assert sorted(started) == [0, 1, 2]
