"""Any OpenAI-compatible /v1/chat/completions server (vLLM's `vllm serve`, SGLang, ...).

Images travel as data URLs. A partial assistant message is continued with vLLM's extra
parameters `continue_final_message: true, add_generation_prompt: false`; top_k travels as vLLM's
extra sampling parameter. A server fills what a request leaves out from its own defaults (`vllm
serve` reads the model's generation_config.json unless started with `--generation-config vllm`),
so every sampling parameter is sent. A choice with finish_reason "length" is a truncated
completion. Requests run concurrently so the server can batch them. Stdlib urllib only.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

from workers.errors import PermanentJobError, TransientJobError
from workers.generation.base import Completion, GenerationBackend, GenerationRequest, as_png_bytes

# Worth a retry: the server is overloaded, restarting or timed out.
TRANSIENT_HTTP_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}


def generation_servers() -> dict[str, dict[str, str]]:
    """The operator's servers (STEPMARK_GENERATION_SERVERS), name -> base_url, model, api_key."""
    return settings.STEPMARK_GENERATION_SERVERS


def server_options(params: dict) -> dict:
    """OpenAIBackend options for job parameters naming a server; a job never brings its own URL."""
    params = dict(params)
    if "base_url" in params or "api_key" in params:
        raise PermanentJobError("a job names its server from STEPMARK_GENERATION_SERVERS; it cannot give a URL")
    name = params.pop("server", None)
    params.pop("model", None)  # the listed server says which model it serves
    entry = generation_servers().get(name) if isinstance(name, str) else None
    if entry is None:
        raise PermanentJobError(f"no generation server named {name!r} is configured (STEPMARK_GENERATION_SERVERS)")
    return {**params, "base_url": entry["base_url"], "model": entry["model"], "api_key": entry.get("api_key", "")}


def chat_payload(request: GenerationRequest, *, model: str) -> dict:
    """The /v1/chat/completions body for one request."""
    images = iter(request.images)
    messages = []
    for message in request.messages:
        content = message["content"]
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                try:
                    data, media_type = as_png_bytes(next(images))
                except StopIteration:
                    raise PermanentJobError("a request has more image parts than images") from None
                url = f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
                parts.append({"type": "image_url", "image_url": {"url": url}})
            else:
                parts.append({"type": "text", "text": part["text"]})
        messages.append({"role": message["role"], "content": parts})
    sampling = request.sampling
    payload = {
        "model": model,
        "messages": messages,
        "n": request.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        # vLLM's extra parameter (the OpenAI client's extra_body): -1 turns top-k off.
        "top_k": sampling.top_k or -1,
        "max_tokens": sampling.max_new_tokens,
        "repetition_penalty": 1.0,
    }
    if sampling.seed is not None:
        payload["seed"] = sampling.seed
    if request.response_format is not None:
        payload["response_format"] = request.response_format
    if request.continuation:
        payload["messages"].append({"role": "assistant", "content": request.continuation})
        payload["continue_final_message"] = True
        payload["add_generation_prompt"] = False
    return payload


class OpenAIBackend(GenerationBackend):
    def __init__(
        self, *, base_url: str, model: str, api_key: str = "", timeout: float = 600.0, concurrency: int = 8
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model.rstrip("/").rsplit("/", 1)[-1]
        self.api_key = api_key
        self.timeout = timeout
        self.concurrency = max(1, int(concurrency))
        self._check_model()

    def _check_model(self) -> None:
        try:
            listing = self._call("GET", "/models", None, timeout=min(self.timeout, 30.0))
        except TransientJobError as exc:
            raise PermanentJobError(f"generation server {self.base_url} is unreachable: {exc}") from exc
        data = listing.get("data", []) if isinstance(listing, dict) else []
        served = [entry.get("id") for entry in data if isinstance(entry, dict)]
        if self.model not in served:
            raise PermanentJobError(f"server {self.base_url} does not serve model {self.model!r}")

    def _call(self, method: str, path: str, body: dict | None, *, timeout: float) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        http_request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(http_request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # Status and reason phrase only: the body is the server's, and may be anyone's page.
            reason = str(exc.reason or "")[:80]
            message = f"{method} {path}: HTTP {exc.code} {reason}".rstrip()
            if exc.code in TRANSIENT_HTTP_STATUSES:
                raise TransientJobError(message) from exc
            raise PermanentJobError(message) from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as exc:
            raise TransientJobError(f"{method} {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise TransientJobError(f"{method} {path}: the reply is not JSON") from exc

    def chat(self, request: GenerationRequest) -> dict:
        """The server's raw /chat/completions reply to one request (choices, usage, ...)."""
        return self._call("POST", "/chat/completions", chat_payload(request, model=self.model), timeout=self.timeout)

    def _complete(self, request: GenerationRequest) -> list[Completion]:
        reply = self.chat(request)
        choices = sorted(reply.get("choices", []), key=lambda choice: choice.get("index", 0))
        if len(choices) != request.n:
            raise TransientJobError(f"asked for {request.n} completions, the server returned {len(choices)}")
        return [
            Completion(text=choice["message"].get("content") or "", truncated=choice.get("finish_reason") == "length")
            for choice in choices
        ]

    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        if len(requests) <= 1:
            return [self._complete(request) for request in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._complete, requests))
