"""The generation interface every policy back end implements, and the factory that picks one.

A request is a chat (neutral message format: content parts {"type": "text", "text": ...} and
{"type": "image"} placeholders, the images themselves in `images`, in order), optionally a partial
assistant message to continue, and how many completions to sample. `generate` returns, per
request, its `n` completions: only the newly generated text, never the prompt or the prefix.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from workers.errors import PermanentJobError

# VisualPRM's released pipeline samples Monte Carlo rollouts with these (temperature 1.0, top_k 50,
# top_p 1.0, 4096 new tokens).
REFERENCE_TOP_K = 50
REFERENCE_MAX_NEW_TOKENS = 4096


@dataclass(frozen=True)
class SamplingParams:
    """Exactly how to sample. Every back end passes all of these explicitly, so a model's own
    generation_config.json (Qwen2-VL-Instruct ships top_k 1, top_p 0.001, temperature 0.01) never
    replaces them. temperature <= 0 is greedy decoding; top_k 0 keeps every token."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = REFERENCE_TOP_K
    max_new_tokens: int = REFERENCE_MAX_NEW_TOKENS
    seed: int | None = None

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    @classmethod
    def from_dict(cls, params: dict | None) -> SamplingParams:
        params = params or {}
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise PermanentJobError(f"unknown sampling parameters: {sorted(unknown)}; known: {sorted(known)}")
        sampling = cls(**params)
        problems = []
        if not 0 < sampling.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {sampling.top_p}")
        if sampling.top_k < 0:
            problems.append(f"top_k must be 0 (off) or positive, got {sampling.top_k}")
        if sampling.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be at least 1, got {sampling.max_new_tokens}")
        if problems:
            raise PermanentJobError("; ".join(problems))
        return sampling


@dataclass(frozen=True)
class Completion:
    """One sampled continuation: its new text, and whether the token limit cut it (no end of sequence):
    a truncated rollout has no final answer to judge."""

    text: str
    truncated: bool = False


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[dict]
    images: Sequence[Any] = ()  # PIL images or encoded bytes, in the order of the image parts
    continuation: str = ""  # a partial assistant message the completions continue
    n: int = 1
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # OpenAI's structured-output request (a JSON schema); servers that support it constrain decoding.
    response_format: dict | None = None


class GenerationBackend(ABC):
    name: str = "backend"

    @abstractmethod
    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        """For each request, its `n` completions (new text only, and whether each was truncated)."""

    def close(self) -> None:  # noqa: B027 - optional hook: back ends holding a GPU free it here
        pass


def as_pil(image):
    """A PIL image in RGB from a PIL image or encoded bytes."""
    from PIL import Image

    if isinstance(image, bytes | bytearray | memoryview):
        image = Image.open(io.BytesIO(bytes(image)))
        image.load()
    return image.convert("RGB") if image.mode != "RGB" else image


def as_png_bytes(image) -> tuple[bytes, str]:
    """Encoded bytes and their media type (bytes are passed through; PIL images become PNG)."""
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        if data.startswith(b"\xff\xd8"):
            return data, "image/jpeg"
        if data.startswith(b"GIF8"):
            return data, "image/gif"
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return data, "image/webp"
        return data, "image/png"
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


def with_continuation(messages: list[dict], continuation: str) -> list[dict]:
    """The chat with the partial assistant message appended (as the last, open turn)."""
    return [*messages, {"role": "assistant", "content": [{"type": "text", "text": continuation}]}]


BACKENDS = ("transformers", "openai", "vllm")


def backend_from_params(params: dict) -> GenerationBackend:
    """Build a back end from job parameters: {"backend": "transformers"|"openai"|"vllm", ...}.

    Construction checks what can be checked at once (the model folder exists and loads, the server
    answers and serves the model) and raises PermanentJobError, so a bad job fails before any work.
    """
    params = dict(params)
    kind = params.pop("backend", None)
    params.pop("name", None)  # the label source name, not a back-end option
    if kind == "transformers":
        from workers.generation.transformers_backend import TransformersBackend

        return TransformersBackend(**_options(TransformersBackend, params))
    if kind == "openai":
        from workers.generation.openai_backend import OpenAIBackend, server_options

        return OpenAIBackend(**_options(OpenAIBackend, server_options(params)))
    if kind == "vllm":
        from workers.generation.vllm_backend import VLLMBackend

        return VLLMBackend(**_options(VLLMBackend, params))
    raise PermanentJobError(f"unknown generation back end {kind!r}; known: {', '.join(BACKENDS)}")


def backend_label(params: dict) -> str:
    """A short name of the policy for label sources and solution keys: params["name"] or the model."""
    if params.get("name"):
        return str(params["name"])
    model = str(params.get("model") or params.get("model_path") or params.get("backend") or "policy")
    return model.rstrip("/").rsplit("/", 1)[-1]


def _options(backend_class: type, params: dict) -> dict:
    import inspect

    accepted = {
        name
        for name, parameter in inspect.signature(backend_class.__init__).parameters.items()
        if parameter.kind == parameter.KEYWORD_ONLY
    }
    unknown = set(params) - accepted
    if unknown:
        raise PermanentJobError(
            f"{backend_class.__name__} does not take {sorted(unknown)}; it takes {sorted(accepted)}"
        )
    return params
