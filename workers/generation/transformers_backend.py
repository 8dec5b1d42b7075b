"""A local model folder through transformers `generate` (CPU or GPU), batched.

Prompts sharing sampling parameters and `n` are batched (left padding) with
num_return_sequences=n. Every sampling parameter is passed to `generate` explicitly: transformers
fills whatever is not passed from the model's generation_config.json, which for instruction-tuned
checkpoints is often near-greedy (Qwen2-VL-Instruct: top_k 1, top_p 0.001, temperature 0.01) and
would make every Monte Carlo rollout identical. On CUDA out-of-memory the batch is halved and retried; a single prompt
that still does not fit is a TransientJobError (the chunk retries later, maybe on a freer GPU).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from workers.errors import PermanentJobError, TransientJobError
from workers.generation.base import (
    Completion,
    GenerationBackend,
    GenerationRequest,
    SamplingParams,
    as_pil,
    with_continuation,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


def out_of_memory_errors() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.cuda.OutOfMemoryError,)


def run_halving_on_oom(
    items: Sequence[T],
    *,
    batch_size: int,
    run_batch: Callable[[list[T]], list[R]],
    oom: tuple[type[BaseException], ...],
) -> tuple[list[R], int]:
    """run_batch over consecutive batches, halving the batch size whenever one runs out of memory.

    Returns the results in order and the batch size that worked (callers keep it for later calls).
    """
    results: list[R] = []
    start = 0
    while start < len(items):
        batch = list(items[start : start + batch_size])
        try:
            results.extend(run_batch(batch))
        except oom as exc:
            _free_cuda_cache()
            if batch_size == 1:
                raise TransientJobError(f"out of GPU memory even for one prompt: {exc}") from exc
            batch_size = max(1, batch_size // 2)
            logger.warning("out of GPU memory; retrying with batches of %d", batch_size)
            continue
        start += len(batch)
    return results, batch_size


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# Sampling knobs a generation_config.json may set that the job does not name: held at their neutral
# values so that the job's parameters are exactly what shapes the distribution.
NEUTRAL_SAMPLING = {"repetition_penalty": 1.0, "typical_p": 1.0, "no_repeat_ngram_size": 0}


def generate_kwargs(sampling: SamplingParams) -> dict:
    """The keyword arguments of `model.generate` for `sampling`, every one given explicitly."""
    if not sampling.do_sample:
        return {"do_sample": False, "max_new_tokens": sampling.max_new_tokens, "temperature": None,
                "top_p": None, "top_k": None, **NEUTRAL_SAMPLING}
    return {
        "do_sample": True,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "max_new_tokens": sampling.max_new_tokens,
        **NEUTRAL_SAMPLING,
    }


class TransformersBackend(GenerationBackend):
    def __init__(self, *, model_path: str, device: str = "auto", dtype: str = "auto", batch_size: int = 8):
        directory = Path(model_path)
        if not (directory / "config.json").is_file():
            raise PermanentJobError(f"model path {model_path!r} is not a model folder (no config.json there)")
        import torch  # after the cheap check: a bad path fails at once, without loading torch first
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        self.name = directory.name
        self.device = device
        self.batch_size = max(1, int(batch_size))
        try:
            from prm.core.conversation import load_processor

            self.processor = load_processor(directory)
            self.model = self._load_model(directory, getattr(torch, dtype)).to(device).eval()
        except (OSError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
            raise PermanentJobError(
                f"cannot load the model in {model_path!r}: {type(exc).__name__}: {exc}"
            ) from exc
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @staticmethod
    def _load_model(directory: Path, dtype):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

        config = AutoConfig.from_pretrained(directory)
        model_class = (
            AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
        )
        return model_class.from_pretrained(directory, dtype=dtype)

    def prompt_text(self, request: GenerationRequest) -> str:
        if request.continuation:
            messages = with_continuation(request.messages, request.continuation)
            return self.processor.apply_chat_template(messages, tokenize=False, continue_final_message=True)
        return self.processor.apply_chat_template(
            request.messages, tokenize=False, add_generation_prompt=True
        )

    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        results: list[list[Completion]] = [[] for _ in requests]
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            # The seed does not split groups: a batch is seeded with its first request's seed.
            groups.setdefault((replace(request.sampling, seed=None), request.n), []).append(index)
        for (sampling, n), indices in groups.items():
            # batch_size counts sequences, so a prompt with n=16 takes 16 places in a batch.
            prompts_per_batch = max(1, self.batch_size // n)
            completions, prompts_per_batch = run_halving_on_oom(
                indices,
                batch_size=prompts_per_batch,
                run_batch=lambda batch, s=sampling, k=n: self._generate_batch(
                    [requests[i] for i in batch], s, k
                ),
                oom=out_of_memory_errors(),
            )
            self.batch_size = max(1, min(self.batch_size, prompts_per_batch * n))
            for index, texts in zip(indices, completions, strict=True):
                results[index] = texts
        return results

    def _generate_batch(self, batch: list[GenerationRequest], sampling: SamplingParams, n: int) -> list[list[Completion]]:
        import torch

        texts = [self.prompt_text(request) for request in batch]
        images = [as_pil(image) for request in batch for image in request.images]
        if images:
            inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        else:
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        if batch[0].sampling.seed is not None:
            torch.manual_seed(batch[0].sampling.seed)
        # Greedy decoding gives one answer however many are asked for: decode once, repeat it.
        per_prompt = n if sampling.do_sample else 1
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                **generate_kwargs(sampling),
                num_return_sequences=per_prompt,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        if per_prompt != n:
            output = output.repeat_interleave(n, dim=0)
        generated = output[:, inputs["input_ids"].shape[1] :]
        decoded = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        # No end-of-sequence token among the new ones: the token limit cut the completion.
        ended = torch.isin(generated, torch.tensor(self.eos_token_ids, device=generated.device)).any(dim=1).tolist()
        completions = [Completion(text=text, truncated=not end) for text, end in zip(decoded, ended, strict=True)]
        return [completions[i * n : (i + 1) * n] for i in range(len(batch))]

    @property
    def eos_token_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return [eos] if isinstance(eos, int) else list(eos)

    def close(self) -> None:
        del self.model
        _free_cuda_cache()
