"""Progress bars with ETA for the long tasks besides training: EventLog.progress ticks reach listeners
(throttled, the last always) and are never written to the log; the CLI draws them with tqdm on stderr
only on a terminal and never with --quiet. (Which tasks tick in a real job: tests/graph/test_graph.py.)"""

import io
import re
import time

from rich.console import Console

from agent.cli import ProgressPrinter
from tools.events import EventLog


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def tick(task: str, done: int, total: int, phase: str = "curator") -> dict:
    return {"kind": "progress", "phase": phase, "message": task, "data": {"task": task, "done": done, "total": total}}


def test_ticks_reach_listeners_throttled_and_are_never_written(tmp_path):
    heard: list[dict] = []
    log = EventLog(tmp_path / "events.jsonl", (heard.append,))
    for done in range(1, 1001):
        log.progress("curator", "embedding chunks", done, 1000)
    log.emit("curator", "phase", "kept 3 of 4 chunks")
    ticks = [e["data"]["done"] for e in heard if e["kind"] == "progress"]
    assert ticks[0] == 1 and ticks[-1] == 1000 and len(ticks) < 100  # a tight loop: a handful, not 1000
    assert [e["kind"] for e in EventLog(tmp_path / "events.jsonl").read()] == ["phase"]


def test_a_terminal_gets_a_bar_with_eta_on_stderr():
    stream, out = Terminal(), io.StringIO()
    printer = ProgressPrinter(Console(file=out), stream=stream)
    for done in (1, 2, 3):
        time.sleep(0.25)  # the bar redraws at most every 0.2 s
        printer(tick("embedding chunks", done, 4))
    printer({"kind": "phase", "phase": "curator", "message": "kept 3 of 4 chunks", "data": {}})
    drawn = stream.getvalue()
    assert "curator  embedding chunks" in drawn
    assert re.search(r"[123]/4 \[\d\d:\d\d<\d\d:\d\d", drawn), drawn  # done/total [elapsed<remaining]
    assert "kept 3 of 4 chunks" in out.getvalue() and "embedding" not in out.getvalue()  # bars: stderr only
    assert printer.tick_bar is None  # a phase line closes the bar


def test_no_bars_off_a_terminal_or_with_quiet():
    for stream, bars in ((io.StringIO(), None), (Terminal(), False)):
        out = io.StringIO()
        printer = ProgressPrinter(Console(file=out), bars=bars, stream=stream)
        printer(tick("evaluating base: answers", 1, 2, "evaluator"))
        printer({"kind": "step", "phase": "trainer", "message": "step 1/4",
                 "data": {"step": 1, "total_steps": 4, "loss": 2.0, "tokens_per_second": 10.0}})
        assert (printer.progress is None) == (bars is False)  # --quiet: no training bar either
        printer.close()
        assert stream.getvalue() == ""
