"""The policy prompt: steps separated by blank lines (how solutions are split into steps) and a
final \\boxed{} answer (how answers are judged). Its text lives in prm.core.prompts, because the PRM
reads the same prompt as its question."""

from __future__ import annotations

from collections.abc import Sequence

from prm.core.prompts import SOLUTION_INSTRUCTION, policy_prompt, question_text

__all__ = ["SOLUTION_INSTRUCTION", "question_text", "solution_messages"]


def solution_messages(*, question: str, options: Sequence[str] = (), num_images: int = 0) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image"} for _ in range(num_images)]
            + [{"type": "text", "text": policy_prompt(question, options)}],
        }
    ]
