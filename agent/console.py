"""The web console: a single page at `/` over the HTTP API (agent/api.py), served by the same FastAPI app.

Decision: plain HTML, CSS and modern JavaScript in agent/web/ (package data), no framework, no build step and
nothing fetched from elsewhere (no CDN, no web fonts): the page is three files a reader can open, it installs
with the wheel, and it works air-gapped. Everything it shows comes from the JSON API and the job's SSE
events (read with fetch, since EventSource cannot send the bearer token); the token is typed into the
sign-in box or given as `/#token=…` (a fragment never reaches the server), kept in sessionStorage and sent
as `Authorization: Bearer`. A strict Content-Security-Policy keeps the page to its own origin.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB = Path(str(files("agent").joinpath("web")))
CONSOLE_PATH = "/console"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def install_console(app: FastAPI) -> None:
    """Serve the console page at `/` and its assets under /console (no token needed to load the page
    itself; every call it makes to the API sends one)."""
    if not (WEB / "index.html").is_file():
        raise FileNotFoundError(f"the web console's files are missing from {WEB} (a broken install?)")
    app.mount(CONSOLE_PATH, StaticFiles(directory=WEB), name="console")

    @app.get("/", include_in_schema=False)
    def console_page() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html")

    @app.middleware("http")
    async def console_headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith(CONSOLE_PATH + "/"):
            response.headers.update(SECURITY_HEADERS)
        return response
