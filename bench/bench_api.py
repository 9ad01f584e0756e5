"""Loopback load test of the jobs API: N concurrent clients each polling a job's status and reading its
event stream (SSE) against a real uvicorn server on 127.0.0.1. Prints one JSON line per request kind.

    .venv/bin/python bench/bench_api.py --clients 32 --requests 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from agent.api import PREFIX, create_app
from agent.service import JobService
from agent.settings import resolve_settings

TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seed_job(service: JobService, events: int) -> str:
    """A cancelled (finished) job with `events` events, so each event stream is bounded."""
    from tools.events import EventLog

    record = service.submit("fine-tune SmolLM2 on quantum error correction", owner="bench")
    log = EventLog(service.settings.job_paths(record.job_id).events)
    for step in range(events):
        log.emit("trainer", "step", f"step {step}", step=step, total_steps=events, loss=1.0, tokens_per_second=1.0)
    service.cancel(record.job_id, "bench")
    return record.job_id


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"p50_ms": round(pick(0.50) * 1000, 2), "p90_ms": round(pick(0.90) * 1000, 2),
            "p99_ms": round(pick(0.99) * 1000, 2), "max_ms": round(ordered[-1] * 1000, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2)}


async def _client(base: str, job_id: str, requests: int, status_times: list[float], stream_times: list[float],
                  expected_events: int) -> None:
    async with httpx.AsyncClient(headers=HEADERS, timeout=60) as client:
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.get(f"{base}/jobs/{job_id}")
            response.raise_for_status()
            status_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        events = 0
        async with client.stream("GET", f"{base}/jobs/{job_id}/events") as stream:
            async for line in stream.aiter_lines():
                events += line.startswith("data:")
        stream_times.append(time.perf_counter() - started)
        assert events == expected_events + 2, events  # the steps, the cancellation, the end message


async def _load(base: str, job_id: str, clients: int, requests: int, events: int) -> dict[str, list[float]]:
    status_times: list[float] = []
    stream_times: list[float] = []
    await asyncio.gather(*(_client(base, job_id, requests, status_times, stream_times, events)
                           for _ in range(clients)))
    return {"status": status_times, "events_stream": stream_times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20, help="status requests per client")
    parser.add_argument("--events", type=int, default=200, help="events in the streamed job")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        service = JobService(resolve_settings({"home": str(Path(home))}))
        job_id = _seed_job(service, args.events)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(service, TOKEN), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        started = time.perf_counter()
        results = asyncio.run(_load(f"http://127.0.0.1:{port}{PREFIX}", job_id, args.clients, args.requests,
                                    args.events))
        wall = time.perf_counter() - started
        server.should_exit = True
        thread.join(10)
    for kind, samples in results.items():
        print(json.dumps({"bench": "api", "kind": kind, "clients": args.clients, "requests": len(samples),
                          **({"events_per_stream": args.events} if kind == "events_stream" else {}),
                          **_percentiles(samples), "wall_seconds": round(wall, 2)}))


if __name__ == "__main__":
    main()
