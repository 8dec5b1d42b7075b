"""Policy back ends that sample completions: transformers, vLLM offline, OpenAI-compatible servers."""

from workers.generation.base import GenerationBackend, GenerationRequest, SamplingParams, backend_from_params

__all__ = ["GenerationBackend", "GenerationRequest", "SamplingParams", "backend_from_params"]
