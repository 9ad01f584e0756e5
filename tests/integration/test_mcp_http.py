"""`ftagent mcp --http`: a real server subprocess on loopback, driven by the official SDK's own
streamable-HTTP client. Tools are listed, a job is started (queued: no worker) and owned by the token's
user, another user neither sees nor cancels it, the remote door's document roots apply, and a wrong or
missing token is refused with 401 before any MCP message is handled."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest
from own_dataset import parts_rows, write_rows
from test_mcp import TOOLS, payload

from tools.stores.api_tokens import TokenStore

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def mcp_http(tmp_path):
    """The server, with tokens for alice (a user) and root (an admin); yields (url, tokens, documents)."""
    home, documents = tmp_path / "home", tmp_path / "documents"
    documents.mkdir()
    home.mkdir(mode=0o700)
    store = TokenStore(home / "ftagent.sqlite")
    tokens = {"alice": store.add("alice"), "root": store.add("root", admin=True)}
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "FTAGENT_HOME": str(home), "FTAGENT_DOCUMENT_ROOTS": str(documents), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "agent.cli", "mcp", "--http", "--port", str(port),
                               "--no-worker"], env=env, cwd=str(REPO), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read()
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        yield url, tokens, documents
    finally:
        server.terminate()
        server.wait(timeout=30)


async def with_session(url: str, token: str, body):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http, \
            streamable_http_client(url, http_client=http) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await body(session)


def test_tools_jobs_and_owners_over_streamable_http(mcp_http, tiny_model_dir):
    url, tokens, documents = mcp_http
    dataset = write_rows(documents / "own.jsonl", parts_rows())
    options = {"base_model": str(tiny_model_dir), "dataset": str(dataset), "max_rounds": 0}

    async def as_root(session):
        listed = {tool.name for tool in (await session.list_tools()).tools}
        started = payload(await session.call_tool("start_job", {
            "sentence": "fine-tune a model on our parts list", "options": options}))
        status = payload(await session.call_tool("job_status", {"job_id": started["job_id"]}))
        return listed, started, status

    listed, started, status = anyio.run(with_session, url, tokens["root"], as_root)
    assert TOOLS <= listed
    assert started["status"] == "queued" and status["owner"] == "root"
    job_id = started["job_id"]

    async def as_alice(session):
        seen = await session.call_tool("job_status", {"job_id": job_id})
        cancel = await session.call_tool("cancel_job", {"job_id": job_id})
        folder = await session.call_tool("start_job", {"sentence": "fine-tune a model on our parts list",
                                                       "options": {"base_model": str(tiny_model_dir),
                                                                   "dataset": str(dataset)}})
        outside = await session.call_tool("start_job", {"sentence": "fine-tune SmolLM2 on passwords",
                                                        "options": {"docs_path": "/etc"}})
        return seen, cancel, folder, outside

    seen, cancel, folder, outside = anyio.run(with_session, url, tokens["alice"], as_alice)
    assert seen.is_error and job_id in seen.content[0].text  # as unknown as a job that does not exist
    assert cancel.is_error
    assert folder.is_error and "only by an admin" in folder.content[0].text
    assert outside.is_error and "document roots" in outside.content[0].text and str(documents) in \
        outside.content[0].text

    async def cancel_as_root(session):
        return payload(await session.call_tool("cancel_job", {"job_id": job_id}))

    assert anyio.run(with_session, url, tokens["root"], cancel_as_root)["status"] == "cancelled"


def test_a_wrong_or_missing_token_is_refused(mcp_http):
    url, _, _ = mcp_http
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"}}}
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YTpi"}):
        answer = httpx.post(url, json=hello, headers={**headers, "Accept": "application/json, text/event-stream"})
        assert answer.status_code == 401 and "Authorization: Bearer" in answer.json()["error"]

    async def never(session):
        raise AssertionError("a session opened with a wrong token")

    from mcp.shared.exceptions import MCPError

    with pytest.raises(BaseExceptionGroup) as refused:  # the SDK's client raises inside its task groups
        anyio.run(with_session, url, "not-a-token", never)
    assert refused.value.subgroup(MCPError) is not None and refused.value.subgroup(AssertionError) is None
