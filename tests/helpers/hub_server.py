"""A local HTTP server speaking the part of the Hugging Face Hub API that huggingface_hub's create_repo and
create_commit call: POST /api/repos/create, /api/validate-yaml, /api/models/{repo}/preupload/{rev} and
/api/models/{repo}/commit/{rev} (NDJSON). Every file is answered as a "regular" upload, so its bytes
arrive base64-encoded inside the commit; the LFS/Xet upload path of large files is not spoken here.
Requests without the expected bearer token get 401, as on the Hub."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class HubRepos:
    token: str
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo id -> path -> content
    private: dict[str, bool] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)


def hub_app(state: HubRepos) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def bearer(request: Request, call_next):
        state.calls.append(f"{request.method} {request.url.path}")
        if request.headers.get("authorization") != f"Bearer {state.token}":
            return JSONResponse({"error": "Invalid credentials in Authorization header"}, status_code=401)
        return await call_next(request)

    @app.post("/api/repos/create")
    async def create(request: Request):
        body = await request.json()
        repo_id = f"{body['organization']}/{body['name']}"
        if repo_id in state.repos:
            return JSONResponse({"error": "You already created this model repo", "url": f"{request.base_url}"
                                 f"{repo_id}"}, status_code=409)
        state.repos[repo_id] = {}
        state.private[repo_id] = body.get("visibility") == "private" or bool(body.get("private"))
        return {"url": f"{str(request.base_url).rstrip('/')}/{repo_id}", "name": repo_id, "id": repo_id}

    @app.post("/api/validate-yaml")
    async def validate(request: Request):
        content = (await request.json())["content"]
        try:
            front = content.split("---\n")[1] if content.startswith("---\n") else ""
            yaml.safe_load(front)
        except (yaml.YAMLError, IndexError) as error:
            return JSONResponse({"errors": [{"message": str(error)}]}, status_code=400)
        return {"errors": [], "warnings": []}

    @app.post("/api/models/{owner}/{name}/preupload/{revision}")
    async def preupload(owner: str, name: str, revision: str, request: Request):
        if f"{owner}/{name}" not in state.repos:
            return JSONResponse({"error": "Repository not found"}, status_code=404)
        files = (await request.json())["files"]
        return {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}

    @app.post("/api/models/{owner}/{name}/commit/{revision}")
    async def commit(owner: str, name: str, revision: str, request: Request):
        repo_id = f"{owner}/{name}"
        if repo_id not in state.repos:
            return JSONResponse({"error": "Repository not found"}, status_code=404)
        lines = [json.loads(line) for line in (await request.body()).decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        for line in lines:
            if line["key"] == "file":
                state.repos[repo_id][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        oid = hashlib.sha1(json.dumps(lines).encode()).hexdigest()
        state.commits.append({"repo": repo_id, "summary": header["summary"], "oid": oid})
        return {"commitUrl": f"{str(request.base_url).rstrip('/')}/{repo_id}/commit/{oid}", "commitOid": oid,
                "pullRequestUrl": None}

    return app
