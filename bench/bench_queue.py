"""Benchmark: the job queue on PostgreSQL with several worker processes. Queues N tiny jobs (they
stop after intake and the researcher: no documents), starts W worker processes on one shared home,
and prints one JSON line: whether every job finished and none ran twice, the claim latency (one
`claim_next`, SELECT … FOR UPDATE SKIP LOCKED inside an UPDATE) p50/p95/max, jobs per worker, wall
time. Needs a PostgreSQL database it may fill (a fresh one: jobs are added, none removed).

    .venv/bin/python bench/bench_queue.py --database-url postgresql://user@host:5432/db [--workers
    3] [--jobs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    """A child: claim and run jobs until none is left, one JSON line per claim."""
    from agent.queue import run_job
    from agent.service import JobService
    from agent.settings import resolve_settings

    service = JobService(
        resolve_settings({"home": args.home, "database_url": args.database_url, "threads": 1})
    )
    while True:
        started = time.perf_counter()
        record = service.jobs.claim_next(os.getpid())
        claim_ms = (time.perf_counter() - started) * 1000
        print(
            json.dumps(
                {
                    "job": record.job_id if record else None,
                    "claim_ms": round(claim_ms, 2),
                    "worker": service.jobs.worker,
                }
            ),
            flush=True,
        )
        if record is None:
            return
        run_job(service, record.job_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("FTAGENT_DATABASE_URL"))
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--home", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("give --database-url postgresql://… (or set FTAGENT_DATABASE_URL)")
    if args.child:
        worker(args)
        return
    from agent.service import JobService
    from agent.settings import resolve_settings

    home = Path(args.home or tempfile.mkdtemp(prefix="bench-queue-"))
    empty = home / "no-documents"
    empty.mkdir(parents=True, exist_ok=True)
    service = JobService(resolve_settings({"home": str(home), "database_url": args.database_url}))
    jobs = [
        service.submit(
            f"fine-tune on topic {chr(97 + n % 26)}{n}x", {"docs_path": str(empty)}
        ).job_id
        for n in range(args.jobs)
    ]
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                "--database-url",
                args.database_url,
                "--home",
                str(home),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for _ in range(args.workers)
    ]
    claims = [
        json.loads(line)
        for child in children
        for line in child.communicate()[0].splitlines()
        if line.startswith("{")
    ]
    wall = time.perf_counter() - started
    taken = [c for c in claims if c["job"]]
    latencies = sorted(c["claim_ms"] for c in claims)
    per_worker: dict[str, int] = {}
    for claim in taken:
        per_worker[claim["worker"]] = per_worker.get(claim["worker"], 0) + 1
    statuses = [service.jobs.get(job).status for job in jobs]
    print(
        json.dumps(
            {
                "bench": "queue",
                "workers": args.workers,
                "jobs": args.jobs,
                "all_finished": all(s in ("failed", "succeeded") for s in statuses),
                "claimed_twice": len(taken) - len({c["job"] for c in taken}),
                "attempts_above_one": sum(
                    1 for job in jobs if service.jobs.lease(job).attempts != 1
                ),
                "claim_ms_p50": round(statistics.median(latencies), 2),
                "claim_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
                "claim_ms_max": round(latencies[-1], 2),
                "jobs_per_worker": sorted(per_worker.values()),
                "wall_s": round(wall, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
