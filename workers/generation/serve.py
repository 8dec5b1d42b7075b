"""A minimal OpenAI-compatible server in front of any GenerationBackend (stdlib http.server).

Serves GET /v1/models and POST /v1/chat/completions with `n`, data-URL images and vLLM's
`continue_final_message`. Meant for development and tests: serve a local transformers model to
workers that speak the OpenAI protocol. One request is generated at a time.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from workers.errors import PermanentJobError, TransientJobError
from workers.generation.base import GenerationBackend, GenerationRequest, SamplingParams


class BadRequest(ValueError):
    pass


def request_from_payload(payload: dict) -> GenerationRequest:
    """The GenerationRequest an OpenAI chat body describes (the inverse of chat_payload)."""
    messages, images = [], []
    for message in payload.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = []
        for part in content or []:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                if not url.startswith("data:") or ";base64," not in url:
                    raise BadRequest("only base64 data URLs are accepted for images")
                images.append(base64.b64decode(url.split(",", 1)[1]))
                parts.append({"type": "image"})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
            else:
                raise BadRequest(f"unsupported content part {part.get('type')!r}")
        messages.append({"role": message["role"], "content": parts})
    if not messages:
        raise BadRequest("messages must not be empty")
    continuation = ""
    if payload.get("continue_final_message"):
        if messages[-1]["role"] != "assistant":
            raise BadRequest("continue_final_message needs a final assistant message")
        continuation = "".join(part["text"] for part in messages.pop()["content"] if part["type"] == "text")
    sampling = SamplingParams(
        temperature=float(payload.get("temperature", 1.0)),
        top_p=float(payload.get("top_p", 1.0)),
        # vLLM's extra parameter; absent (as from a plain OpenAI client) means no top-k cut, and
        # vLLM's -1 means the same.
        top_k=max(0, int(payload.get("top_k") or 0)),
        max_new_tokens=int(payload.get("max_tokens") or 256),
        seed=payload.get("seed"),
    )
    response_format = payload.get("response_format")
    if response_format is not None and not isinstance(response_format, dict):
        raise BadRequest("response_format must be an object")
    return GenerationRequest(
        messages=messages,
        images=images,
        continuation=continuation,
        n=int(payload.get("n", 1)),
        sampling=sampling,
        response_format=response_format,
    )


def word_count(text: str) -> int:
    return len(text.split())


def usage_of(request: GenerationRequest, completions) -> dict:
    """OpenAI's `usage` block. This server counts words (and one per image), not model tokens."""
    prompt = sum(
        word_count(part.get("text", "")) if part["type"] == "text" else 1
        for message in request.messages
        for part in message["content"]
    ) + word_count(request.continuation)
    completion = sum(word_count(c.text) for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def make_handler(backend: GenerationBackend, model: str, lock: contextlib.AbstractContextManager):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - quiet: tests read their own output
            pass

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
            else:
                self._reply(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._reply(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if payload.get("model") != model:
                    self._reply(404, {"error": {"message": f"model {payload.get('model')!r} does not exist"}})
                    return
                request = request_from_payload(payload)
            except (BadRequest, KeyError, TypeError, ValueError) as exc:
                self._reply(400, {"error": {"message": str(exc)}})
                return
            try:
                with lock:
                    (completions,) = backend.generate([request])
            except TransientJobError as exc:  # overloaded or out of memory: the client should retry
                self._reply(503, {"error": {"message": str(exc)}})
                return
            except PermanentJobError as exc:
                self._reply(400, {"error": {"message": str(exc)}})
                return
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": completion.text},
                    "finish_reason": "length" if completion.truncated else "stop",
                }
                for i, completion in enumerate(completions)
            ]
            self._reply(
                200,
                {
                    "id": f"chatcmpl-{time.monotonic_ns()}",
                    "object": "chat.completion",
                    "model": model,
                    "choices": choices,
                    "usage": usage_of(request, completions),
                },
            )

    return Handler


class OpenAICompatibleServer:
    """Serve `backend` as `model` on host:port (port 0 picks a free one) in a background thread."""

    def __init__(
        self, backend: GenerationBackend, *, model: str, host: str = "127.0.0.1", port: int = 0, concurrent: bool = False
    ):
        # One request at a time suits a local model; `concurrent` serves requests in parallel, as vLLM does.
        lock = contextlib.nullcontext() if concurrent else threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), make_handler(backend, model, lock))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="openai-compatible-server", daemon=True
        )
        self.model = model

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAICompatibleServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Serve a local model folder as an OpenAI-compatible API.")
    parser.add_argument("model_path", nargs="?", help="A local transformers model folder (not with --scripted-judge).")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--scripted-judge", action="store_true",
        help="Serve the deterministic test judge (workers.generation.scripted_judge) as model 'scripted-judge'.",
    )
    parser.add_argument("--concurrent", action="store_true", help="Serve requests in parallel (as vLLM batches them).")
    args = parser.parse_args()
    if args.scripted_judge:
        from workers.generation.scripted_judge import ScriptedJudge

        backend = ScriptedJudge()
    elif args.model_path:
        from workers.generation.transformers_backend import TransformersBackend

        backend = TransformersBackend(model_path=args.model_path)
    else:
        parser.error("give a model folder, or --scripted-judge")
    server = OpenAICompatibleServer(
        backend, model=backend.name, host=args.host, port=args.port, concurrent=args.concurrent
    )
    print(f"serving {backend.name} at {server.base_url}", flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
