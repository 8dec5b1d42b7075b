"""vLLM offline inference: `LLM.generate` with `multi_modal_data`, `n` and prefix caching (GPU).

Monte Carlo requests are prefixes of one solution ("s0", "s0\\n\\ns1", ...) over the same
question and images; sending them sorted by (prompt, continuation) puts every prefix right after
the one it extends, so the prefix cache serves the shared part. vllm is imported inside the class
only: this module imports, and its plumbing is tested, where vllm is not installed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from workers.errors import PermanentJobError, TransientJobError
from workers.generation.base import (
    Completion,
    GenerationBackend,
    GenerationRequest,
    as_pil,
    as_png_bytes,
    with_continuation,
)

T = TypeVar("T")


def _prompt_identity(request: GenerationRequest) -> str:
    digest = hashlib.sha256(json.dumps(request.messages, sort_keys=True).encode())
    for image in request.images:
        digest.update(as_png_bytes(image)[0])
    return digest.hexdigest()


def prefix_cache_order(requests: list[GenerationRequest]) -> list[int]:
    """Indices of `requests` in the order to submit them: same prompt together, prefixes ascending."""
    identities = [_prompt_identity(request) for request in requests]
    first_seen = {}
    for index, identity in enumerate(identities):
        first_seen.setdefault(identity, index)
    # Grouped by prompt in first-seen order; within a prompt a continuation sorts right before its extensions.
    return sorted(range(len(requests)), key=lambda i: (first_seen[identities[i]], requests[i].continuation))


def vllm_inputs(
    requests: list[GenerationRequest], render: Callable[[GenerationRequest], str]
) -> tuple[list[int], list[dict], list[dict]]:
    """(submission order, vLLM prompt dicts, sampling keyword dicts) for `requests`."""
    order = prefix_cache_order(requests)
    prompts, sampling = [], []
    for index in order:
        request = requests[index]
        prompt = {"prompt": render(request)}
        if request.images:
            prompt["multi_modal_data"] = {"image": [as_pil(image) for image in request.images]}
        prompts.append(prompt)
        params = request.sampling
        # Every parameter explicit (vLLM's own defaults, not the model's generation_config.json,
        # fill a SamplingParams built here); top_k -1 is "off" in every vLLM version.
        sampling.append(
            {
                "n": request.n,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "top_k": params.top_k or -1,
                "max_tokens": params.max_new_tokens,
                "repetition_penalty": 1.0,
                "seed": params.seed,
            }
        )
    return order, prompts, sampling


def render_prompt(processor, request: GenerationRequest) -> str:
    """The prompt text vLLM is given: the chat template, continuing the partial answer when there is one."""
    if request.continuation:
        messages = with_continuation(request.messages, request.continuation)
        return processor.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return processor.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)


def restore_order(order: list[int], outputs: list[list[T]]) -> list[list[T]]:
    """Outputs produced in submission order, put back in request order."""
    restored: list[list[T]] = [[] for _ in order]
    for position, index in enumerate(order):
        restored[index] = outputs[position]
    return restored


class VLLMBackend(GenerationBackend):
    def __init__(
        self,
        *,
        model_path: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        max_images_per_prompt: int = 4,
    ):
        directory = Path(model_path)
        if not (directory / "config.json").is_file():
            raise PermanentJobError(f"model path {model_path!r} is not a model folder (no config.json there)")
        try:
            from vllm import LLM
        except ImportError as exc:
            raise PermanentJobError(f"the vllm back end needs vllm installed in the worker: {exc}") from exc
        from prm.core.conversation import load_processor

        self.name = directory.name
        self.processor = load_processor(directory)
        try:
            self.llm = LLM(
                model=str(directory),
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                enable_prefix_caching=True,
                limit_mm_per_prompt={"image": max_images_per_prompt},
            )
        except (OSError, ValueError) as exc:
            raise PermanentJobError(f"vLLM cannot load {model_path!r}: {exc}") from exc

    def render(self, request: GenerationRequest) -> str:
        return render_prompt(self.processor, request)

    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        import torch
        from vllm import SamplingParams

        order, prompts, sampling = vllm_inputs(requests, self.render)
        try:
            outputs = self.llm.generate(
                prompts, [SamplingParams(**params) for params in sampling], use_tqdm=False
            )
        except torch.cuda.OutOfMemoryError as exc:
            raise TransientJobError(f"vLLM ran out of GPU memory: {exc}") from exc
        completions = [
            [Completion(text=c.text, truncated=c.finish_reason == "length") for c in output.outputs]
            for output in outputs
        ]
        return restore_order(order, completions)
