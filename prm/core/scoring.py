"""Step scores from a PRM backbone: P("+") at each assistant answer of the VisualPRM conversation.

`PRMScorer` runs ONE forward pass per batch of solutions, with every assistant answer set to "+"
(the answer tokens themselves never influence the logits that predict them, by causality).
`ReferenceScorer` is the slow, obviously-right version: one pass per step over the conversation cut
after that step, reading the logits at the generation prompt. Tests hold the two equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from prm.core.conversation import (
    collate_conversations,
    encode_conversation,
    label_token_ids,
    load_processor,
    prm_messages,
    render,
)
from prm.core.metrics import AGGREGATIONS, Aggregation, aggregate_step_scores  # noqa: F401 - re-exported
from prm.core.prompts import (
    DEFAULT_QUESTION_FORMAT,
    DEFAULT_SYSTEM_PROMPT,
    POSITIVE_TOKEN,
    system_prompt_text,
)

# A model trained before the prompts were recorded: Stepmark's short system prompt, the bare question.
LEGACY_PROMPTS = {"system_prompt": "stepmark", "prm_question": "question"}


def recorded_prompts(directory: str | Path) -> dict[str, str]:
    """The system prompt and question format a PRM was trained with (its train_config.json), or the
    reference's for a backbone that Stepmark did not train."""
    import json

    path = Path(directory) / "train_config.json"
    if not path.is_file():
        return {"system_prompt": DEFAULT_SYSTEM_PROMPT, "prm_question": DEFAULT_QUESTION_FORMAT}
    recorded = json.loads(path.read_text())
    return {key: recorded.get(key, legacy) for key, legacy in LEGACY_PROMPTS.items()}


class _Backbone:
    """Model, processor and label token ids loaded from a backbone folder."""

    def __init__(
        self,
        directory: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        system_prompt: str | None = None,
        question_format: str | None = None,
    ):
        from transformers import AutoModelForImageTextToText

        self.directory = Path(directory)
        # Scored with the prompts it was trained with unless told otherwise.
        recorded = recorded_prompts(self.directory)
        self.system_prompt = system_prompt_text(system_prompt or recorded["system_prompt"])
        self.question_format = question_format or recorded["prm_question"]
        self.device = torch.device(device)
        self.processor = load_processor(self.directory)
        self.model = AutoModelForImageTextToText.from_pretrained(self.directory, dtype=dtype).to(self.device)
        self.model.eval()
        self.label_ids = label_token_ids(self.processor)
        tokenizer = self.processor.tokenizer
        self.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )

    def positive_probability(self, logits: torch.Tensor) -> torch.Tensor:
        """softmax over the ("+", "-") logits, taking P("+"); logits (..., vocab) -> (...)."""
        pair = logits[..., [self.label_ids.positive, self.label_ids.negative]].float()
        return torch.softmax(pair, dim=-1)[..., 0]

    def to_device(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: value.to(self.device) for key, value in inputs.items()}


class PRMScorer(_Backbone):
    """Scores solutions with one forward pass per batch (Best-of-N: many solutions of one question)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        aggregation: Aggregation = "mean",
        batch_size: int = 8,
        system_prompt: str | None = None,
        question_format: str | None = None,
    ):
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; choose from {AGGREGATIONS}")
        super().__init__(
            directory, device=device, dtype=dtype, system_prompt=system_prompt, question_format=question_format
        )
        self.aggregation = aggregation
        self.batch_size = batch_size

    @torch.inference_mode()
    def score_solutions(
        self,
        *,
        question: str,
        solutions: Sequence[Sequence[str]],
        images: Sequence[Any] = (),
        options: Sequence[str] = (),
    ) -> list[list[float]]:
        """Step scores P("+") for each solution (a list of steps) to `question`."""
        scores: list[list[float]] = []
        for start in range(0, len(solutions), self.batch_size):
            chunk = solutions[start : start + self.batch_size]
            conversations = [
                encode_conversation(
                    self.processor,
                    question=question,
                    steps=steps,
                    images=images,
                    label_ids=self.label_ids,
                    options=options,
                    system_prompt=self.system_prompt,
                    question_format=self.question_format,
                )
                for steps in chunk
            ]
            batch = collate_conversations(conversations, pad_token_id=self.pad_token_id)
            logits = self.model(**self.to_device(batch.model_inputs)).logits
            for row, positions in enumerate(batch.answer_positions):
                probabilities = self.positive_probability(logits[row, positions])
                scores.append(probabilities.cpu().tolist())
        return scores

    def score_steps(
        self, *, question: str, steps: Sequence[str], images: Sequence[Any] = (), options: Sequence[str] = ()
    ) -> list[float]:
        return self.score_solutions(question=question, solutions=[steps], images=images, options=options)[0]

    def score_responses(
        self, *, question: str, solutions: Sequence[Sequence[str]], images: Sequence[Any] = ()
    ) -> list[float]:
        """One response score per solution, aggregated with this scorer's method."""
        return [
            aggregate_step_scores(step_scores, method=self.aggregation)
            for step_scores in self.score_solutions(question=question, solutions=solutions, images=images)
        ]


class ReferenceScorer(_Backbone):
    """One forward pass per step: the conversation up to step i ends in the generation prompt."""

    @torch.inference_mode()
    def score_steps(
        self, *, question: str, steps: Sequence[str], images: Sequence[Any] = (), options: Sequence[str] = ()
    ) -> list[float]:
        scores = []
        for index in range(len(steps)):
            messages = prm_messages(
                question=question,
                steps=steps[: index + 1],
                answers=[POSITIVE_TOKEN] * index,
                num_images=len(images),
                options=options,
                system_prompt=self.system_prompt,
                question_format=self.question_format,
            )
            text = render(self.processor, messages, add_generation_prompt=True)
            inputs = self.processor(
                text=[text], images=list(images) or None, return_tensors="pt", add_special_tokens=False
            )
            logits = self.model(**self.to_device(dict(inputs))).logits
            scores.append(float(self.positive_probability(logits[0, -1])))
        return scores
