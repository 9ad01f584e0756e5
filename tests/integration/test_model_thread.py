"""A server's torch work runs on its one model thread, whichever thread a request arrives on (a second
thread running torch slows every decode in the process: tools/serving/model_thread.py)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tiny_model import random_adapter

from tools.serving.model_thread import ModelThread
from tools.serving.server import ChatCompletionRequest, ModelServer


def test_calls_run_on_the_one_thread_with_their_results_and_errors() -> None:
    worker = ModelThread("test-model")
    names = {worker.run(lambda: threading.current_thread().name) for _ in range(3)}
    assert len(names) == 1 and names.pop().startswith("test-model")
    with pytest.raises(ValueError, match="bad input"):
        worker.run(lambda: (_ for _ in ()).throw(ValueError("bad input")))
    # a call made on the model thread itself runs at once (no deadlock waiting on its own queue)
    assert worker.run(lambda: worker.run(lambda: 7) + 1) == 8
    worker.close()


def test_requests_from_any_thread_run_their_model_work_on_the_model_thread(tiny_model_dir: Path,
                                                                           tmp_path: Path) -> None:
    from transformers import TextIteratorStreamer

    adapter = str(random_adapter(tiny_model_dir, tmp_path / "adapter", seed=3))
    server = ModelServer(str(tiny_model_dir), {"ft-v1": adapter}, base_name="tiny-base", max_batch_size=4)
    seen: set[str] = set()
    for model in (server.model, server.merged.model):
        model.register_forward_pre_hook(lambda *_: seen.add(threading.current_thread().name))
    jobs = [server.prepare(ChatCompletionRequest(model=name, messages=[{"role": "user", "content": "Why?"}],
                                                 max_tokens=4, temperature=0), None)
            for name in ("ft-v1", "tiny-base")]
    with ThreadPoolExecutor(2, thread_name_prefix="request") as pool:
        alone = list(pool.map(server.generate, jobs))
        batched = pool.submit(server.generate_batch, jobs[:1]).result()
    streamer = TextIteratorStreamer(server.tokenizer, skip_prompt=True, skip_special_tokens=True)
    thread = threading.Thread(target=server.generate, args=(jobs[0], streamer, threading.Event()), name="stream")
    thread.start()
    streamed = "".join(streamer)
    thread.join()
    server.close()
    assert all(a.text for a in alone) and batched[0].text == alone[0].text and streamed.strip()
    assert seen and all(name.startswith("model") for name in seen), seen
