"""A scripted stand-in for vLLM's OpenAI-compatible server (vLLM needs CUDA; it is not installable
here). It takes the command-line flags ftagent passes to `vllm.entrypoints.openai.api_server` (an
unknown flag exits with an error, as vLLM's parser does) and answers the endpoints ftagent uses the
way vLLM does: /health, /v1/models (the served model name and every LoRA module), and, only when
VLLM_ALLOW_RUNTIME_LORA_UPDATING is true, /v1/load_lora_adapter (400 for a name already loaded or
a path without adapter_config.json) and /v1/unload_lora_adapter (404 for an unknown name).
Every call is appended as a JSON line to $STANDIN_LOG. No model runs: answers are not generated."""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vllm-standin")
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name", nargs="+")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--enable-lora", action="store_true")
    parser.add_argument("--max-loras", type=int, default=1)
    parser.add_argument(
        "--max-lora-rank", type=int, default=16, choices=(1, 8, 16, 32, 64, 128, 256, 320, 512)
    )
    parser.add_argument("--lora-modules", nargs="+", default=[])
    parser.add_argument("--gpu-memory-utilization", type=float)
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.lora_modules and not args.enable_lora:
        raise SystemExit("--lora-modules needs --enable-lora")
    if not (Path(args.model) / "config.json").is_file():
        raise SystemExit(f"no model config in {args.model}")
    modules = dict(module.split("=", 1) for module in args.lora_modules)
    runtime = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() in ("1", "true")
    log = Path(os.environ["STANDIN_LOG"])
    _note(
        log,
        {
            "call": "start",
            "modules": modules,
            "max_loras": args.max_loras,
            "max_lora_rank": args.max_lora_rank,
            "runtime_updates": runtime,
        },
    )
    base_name = (args.served_model_name or [args.model])[0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                return self._reply(200, {})
            if self.path == "/v1/models":
                return self._reply(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": name, "object": "model"} for name in [base_name, *modules]],
                    },
                )
            return self._reply(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            body = json.loads(
                self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"
            )
            if not runtime or self.path not in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
                return self._reply(404, {"detail": "Not Found"})
            _note(log, {"call": self.path.rsplit("/", 1)[1], **body})
            name = body.get("lora_name")
            if self.path.endswith("/load_lora_adapter"):
                if name in modules:
                    return self._error(400, f"The lora adapter '{name}' has already been loaded.")
                if not (Path(body.get("lora_path", "")) / "adapter_config.json").is_file():
                    return self._error(
                        400,
                        f"Loading lora {name} failed: no adapter found for {body.get('lora_path')}",
                    )
                modules[name] = body["lora_path"]
                return self._text(f"Success: LoRA adapter '{name}' added successfully.")
            if name not in modules:
                return self._error(404, f"The lora adapter '{name}' cannot be found.")
            del modules[name]
            return self._text(f"Success: LoRA adapter '{name}' removed successfully.")

        def _error(self, status: int, message: str) -> None:
            self._reply(
                status,
                {"object": "error", "message": message, "type": "BadRequestError", "code": status},
            )

        def _text(self, text: str) -> None:
            data = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


def _note(log: Path, entry: dict) -> None:
    with log.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    main()
