"""`ftagent mcp` through the official SDK's own stdio client: the tools are listed, a job on the user's
own dataset is started with the tiny model and runs to a registered model, which the client then lists,
shows and asks; bad input comes back as a tool error that says what is wrong."""

import json
import os
import sys
import time
from pathlib import Path

import anyio
from own_dataset import parts_rows, write_rows

REPO = Path(__file__).resolve().parents[2]
TOOLS = {"start_job", "job_status", "job_events", "list_models", "show_model", "ask_model", "cancel_job"}


def server_parameters(home: Path):
    from mcp.client.stdio import StdioServerParameters

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "FTAGENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return StdioServerParameters(command=sys.executable, args=["-m", "agent.cli", "mcp", "--user", "tester"],
                                 env=env, cwd=str(REPO))


def payload(result):
    """A tool result's value: its structured content (a value under "result" when not an object)."""
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content) if set(content) == {"result"} else content
    return json.loads(result.content[0].text)


async def session_run(home: Path, body):
    from mcp import ClientSession
    from mcp.client.stdio import stdio_client

    async with stdio_client(server_parameters(home)) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await body(session)


async def wait_for_end(session, job_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = payload(await session.call_tool("job_status", {"job_id": job_id}))
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return status
        await anyio.sleep(1)
    raise AssertionError(f"job {job_id} did not end within {timeout} s")


def test_mcp_client_lists_tools_starts_a_job_and_asks_the_model(tmp_path, tiny_model_dir):
    dataset = write_rows(tmp_path / "own.jsonl", parts_rows())
    options = {"base_model": str(tiny_model_dir), "dataset": str(dataset), "max_rounds": 0,
               "gates": {"min_nll_improvement": 0.0, "max_general_ppl_increase": 10.0},
               "training": {"max_steps": 3, "precision": "fp32", "checkpoint_every": 3},
               "evaluation": {"generate_limit": 2, "max_new_tokens": 4, "general_texts": 2, "general_qa": 1}}

    async def body(session):
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert TOOLS <= set(listed) and "sentence" in listed["start_job"].input_schema["properties"]
        refused = await session.call_tool("start_job", {"sentence": "fine-tune SmolLM2"})
        assert refused.is_error and "no subject" in refused.content[0].text
        started = payload(await session.call_tool("start_job", {
            "sentence": "fine-tune a model on our parts list", "options": options}))
        status = await wait_for_end(session, started["job_id"])
        events = payload(await session.call_tool("job_events", {"job_id": started["job_id"]}))
        models = payload(await session.call_tool("list_models", {}))
        shown = payload(await session.call_tool("show_model", {"name": models[0]["name"]}))
        answer = await session.call_tool("ask_model", {"name": models[0]["name"], "question": "Which part?",
                                                       "max_new_tokens": 4})
        missing = await session.call_tool("show_model", {"name": "no-such-model"})
        return status, events, models, shown, answer, missing

    status, events, models, shown, answer, missing = anyio.run(session_run, tmp_path / "home", body)
    assert status["status"] == "succeeded" and status["owner"] == "tester", status
    assert any("research and generation skipped" in e["message"] for e in events)
    assert len(models) == 1 and models[0]["subject"] == "our parts list"
    assert shown["card"].startswith("---\n") and not answer.is_error
    assert missing.is_error and "no-such-model" in missing.content[0].text
